"""What every stage shares: the params base class, and the per-video plan.

Atomic writes and JSON files are `core.files`.

A per-video stage (decode, flow, extract) is described by a `VideoPlan`: the videos still to
do, a picklable function that processes one of them, and a function that writes the stage's
final outputs from all per-video results. `run_plan` executes a plan serially (tests, plain
Python); `pipeline.flows` executes the same plan as one Prefect task per video.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from core.config import Config

log = logging.getLogger(__name__)


class StageParams(Config):
    """Base of every params section: unknown keys are errors, values are immutable (`core.config`)."""

    def fingerprint(self) -> str:
        """A short hash of these params, stored beside per-video outputs so that a rerun
        with other params redoes the video instead of skipping it."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


class VideoError(ValueError):
    """A video that cannot be processed (corrupt, too short, no video stream...).

    Reported by video id and reason; the other videos of the stage go on.
    """

    def __init__(self, video_id: str, reason: str):
        super().__init__(f"video '{video_id}': {reason}")
        self.video_id = video_id
        self.reason = reason


@dataclass
class VideoResult:
    """Outcome of one video: `ok` with a metadata row, or failed with a reason."""

    video_id: str
    ok: bool
    info: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    skipped: bool = False  # finished by an earlier run, not redone


@dataclass
class VideoPlan:
    """A per-video stage, ready to execute.

    Attributes:
        stage: stage name (also the Prefect flow name).
        videos: every video id of the stage, in a deterministic order.
        process: processes one video id; raises `VideoError` for a bad video. Must be
            picklable (a module-level function or `functools.partial` of one) so that
            Dask workers can run it.
        finish: writes the stage's final outputs from all results; returns the summary.
        max_workers: how many videos may run at once (1 for stages that use every core).
    """

    stage: str
    videos: list[str]
    process: Callable[[str], VideoResult]
    finish: Callable[[list[VideoResult]], dict[str, Any]]
    max_workers: int | None = None


def code_fingerprint(*modules: ModuleType) -> str:
    """A short hash of the source files of `modules`.

    Stored beside per-video outputs together with the params fingerprint, so that a change
    of the code that produced them (which makes DVC rerun the stage) also redoes the videos
    instead of skipping them as finished.
    """
    digest = hashlib.sha256()
    for module in modules:
        digest.update(Path(inspect.getsourcefile(module)).read_bytes())
    return digest.hexdigest()[:16]


def guarded(process: Callable[[str], VideoResult], video_id: str) -> VideoResult:
    """Run `process`, turning a `VideoError` into a failed result; other errors propagate."""
    try:
        return process(video_id)
    except VideoError as err:
        log.error("%s", err)
        return VideoResult(video_id=video_id, ok=False, reason=err.reason)


def run_plan(plan: VideoPlan, *, on_progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Execute a plan serially, without Prefect (tests and plain-Python use).

    Args:
        plan: the stage's plan.
        on_progress: called with (done, total) after each video.

    Returns:
        The stage summary returned by `plan.finish`.
    """
    results = []
    for i, vid in enumerate(plan.videos):
        results.append(guarded(plan.process, vid))
        if on_progress is not None:
            on_progress(i + 1, len(plan.videos))
    return plan.finish(results)
