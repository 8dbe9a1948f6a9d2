"""SF-Net human clicks onto training instances: which click labels which instance.

One annotator file is used per video, drawn by the seed (`annotator="random"`) or fixed. Each
click goes to the instance of its class, in its video, that contains it, else to the nearest
one (distance to the interval, in seconds); the click keeps its own frame, which may lie
outside that instance. When several clicks reach one instance, the nearest (then the
earliest) is kept. Clicks on videos missing from the annotations, on test videos, or for a
class absent from the video are counted and left out; a class that is not an annotation class
at all is an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lacp.points.formats import Click, PointFileError, read_sfnet_clicks
from lacp.points.instances import Instances

__all__ = ["EXAMPLES", "ManualStats", "assign_clicks"]

EXAMPLES = 5  # named examples kept per reported issue


@dataclass(frozen=True)
class ManualStats:
    """How human (or emulated) clicks mapped onto the ground truth.

    Attributes:
        source: "files" (SF-Net click files) or "salient" (emulated from `salient` times).
        files: the click files, in `manual_files` order.
        annotator: "random" or the fixed 0-based file index.
        videos_per_file: how many training videos used each file.
        clicks: clicks of the chosen files on training videos.
        assigned: clicks given to an instance of their class.
        inside: assigned clicks inside their instance.
        outside: assigned clicks outside their instance.
        inside_share: inside / assigned.
        outside_mean_s: mean distance of outside clicks to their instance (seconds).
        outside_max_s: largest such distance.
        duplicate_clicks: assigned clicks discarded because a nearer one took the instance.
        absent_class_clicks: clicks naming a class with no instance in that video.
        unknown_video_clicks: clicks (in the files in use) on videos not in the annotations.
        test_video_clicks: clicks (in the files in use) on test videos.
        unclicked_instances: training instances that received no click.
        jitter_s: emulation jitter (source "salient" only).
    """

    source: str
    files: list[str] = field(default_factory=list)
    annotator: str | int = "random"
    videos_per_file: list[int] = field(default_factory=list)
    clicks: int = 0
    assigned: int = 0
    inside: int = 0
    outside: int = 0
    inside_share: float = 1.0
    outside_mean_s: float = 0.0
    outside_max_s: float = 0.0
    duplicate_clicks: int = 0
    absent_class_clicks: int = 0
    unknown_video_clicks: int = 0
    test_video_clicks: int = 0
    unclicked_instances: int = 0
    jitter_s: float | None = None


@dataclass
class _ClickTally:
    """Running counts while clicks are mapped onto instances."""

    clicks: int = 0
    absent_class: list[str] = field(default_factory=list)
    distances: list[float] = field(default_factory=list)
    duplicates: int = 0


def assign_clicks(
    inst: Instances,
    annotations: Mapping[str, Any],
    rng: np.random.Generator,
    *,
    manual_files: Sequence[str | Path],
    annotator: str | int,
) -> tuple[np.ndarray, np.ndarray, ManualStats, dict[str, list[str]]]:
    """Map one annotator's clicks per video onto the instances.

    Returns:
        frames (N,) int64 (meaningful where clicked), clicked (N,) bool, the click statistics,
        and named examples of absent-class / unknown-video clicks.
    """
    files = [Path(f) for f in manual_files]
    classes = set(annotations["classes"])
    database = annotations["database"]
    by_file: list[dict[str, list[Click]]] = []
    for path in files:
        grouped: dict[str, list[Click]] = {}
        for click in read_sfnet_clicks(path):
            if click.class_name not in classes:
                raise PointFileError(
                    path,
                    click.line,
                    f"class '{click.class_name}' (video '{click.video_id}') "
                    f"is not one of the annotation classes {sorted(classes)}",
                )
            grouped.setdefault(click.video_id, []).append(click)
        by_file.append(grouped)
    videos = np.unique(inst.video_id)  # sorted training videos
    if annotator == "random":
        choice = rng.integers(len(files), size=len(videos))
    else:
        choice = np.full(len(videos), int(annotator))
    files_in_use = sorted(set(choice.tolist()))
    unknown = [
        f"{files[f].name}:{c.line} {v}"
        for f in files_in_use
        for v, cs in by_file[f].items()
        if v not in database
        for c in cs
    ]
    test_clicks = sum(
        len(cs)
        for f in files_in_use
        for v, cs in by_file[f].items()
        if v in database and database[v].get("subset") != "train"
    )

    frames = np.zeros(len(inst), np.int64)
    best = np.full(len(inst), np.inf)  # (N,) distance of the kept click, inf = none yet
    best_time = np.full(len(inst), np.inf)
    tally = _ClickTally()
    for v, f in zip(videos, choice):
        rows = np.flatnonzero(inst.video_id == v)
        for click in by_file[f].get(str(v), []):
            tally.clicks += 1
            cand = rows[inst.class_name[rows] == click.class_name]
            if cand.size == 0:
                tally.absent_class.append(f"{files[f].name}:{click.line} {v}/{click.class_name}")
                continue
            dist = np.maximum(np.maximum(inst.start_s[cand] - click.seconds, click.seconds - inst.end_s[cand]), 0.0)
            j = int(cand[np.argmin(dist)])
            d = float(dist.min())
            tally.distances.append(d)
            if best[j] < np.inf:
                tally.duplicates += 1
            if (d, click.seconds) < (best[j], best_time[j]):
                best[j], best_time[j] = d, click.seconds
                frames[j] = int(np.rint(click.seconds * inst.fps[j]))
    clicked = np.isfinite(best)
    dist = np.array(tally.distances)
    outside = dist[dist > 0]
    stats = ManualStats(
        source="files",
        files=[str(p) for p in files],
        annotator=annotator if annotator == "random" else int(annotator),
        videos_per_file=np.bincount(choice, minlength=len(files)).tolist(),
        clicks=tally.clicks,
        assigned=len(dist),
        inside=int((dist == 0).sum()),
        outside=len(outside),
        inside_share=float((dist == 0).mean()) if len(dist) else 1.0,
        outside_mean_s=float(outside.mean()) if len(outside) else 0.0,
        outside_max_s=float(outside.max()) if len(outside) else 0.0,
        duplicate_clicks=tally.duplicates,
        absent_class_clicks=len(tally.absent_class),
        unknown_video_clicks=len(unknown),
        test_video_clicks=test_clicks,
        unclicked_instances=int((~clicked).sum()),
    )
    examples = {"absent_class_clicks": tally.absent_class[:EXAMPLES], "unknown_video_clicks": unknown[:EXAMPLES]}
    return frames, clicked, stats, examples
