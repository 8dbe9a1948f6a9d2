"""The ``directory`` source: the user's videos in a folder plus an ActivityNet-style gt.json.

Each annotated video ``<vid>`` is looked up as ``<vid>.<ext>`` anywhere under the folder
(one file per id; the extension is matched case-insensitively). Durations come from the
container headers (PyAV, no decoding). Each video's frame rate (the unit of the points'
frame numbers) is, in this order of precedence: an optional ``{vid: fps}`` file (such as
THUMOS'14 ``fps_dict.json``), the video's ``fps`` in gt.json (GTEA, BEOID), the container's
average rate. The videos are referenced by absolute path, never copied, so a large folder
costs nothing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from sources.annotations import clip_segments, read_fps_dict, read_gt_json

log = logging.getLogger(__name__)

DEFAULT_EXTENSIONS = ("mp4", "avi", "mkv", "webm", "mov")
"""File endings searched when none are given."""

_LISTED = 20  # ids named in an error message before "and N more"


class DatasetError(ValueError):
    """The dataset folder does not match its annotations (missing, ambiguous or unreadable videos)."""


@dataclass(frozen=True)
class ContainerInfo:
    """What the container header says about a video.

    Attributes:
        duration: seconds.
        fps: average frame rate of the video stream.
    """

    duration: float
    fps: float


def _listing(ids: list[str]) -> str:
    """The first ids and a count of the rest, for error messages."""
    shown = ", ".join(ids[:_LISTED])
    more = len(ids) - _LISTED
    return shown + (f" ... and {more} more" if more > 0 else "")


def probe_video(path: Path) -> ContainerInfo:
    """Read a video's duration and frame rate from its container header (no decoding).

    Args:
        path: the video file.

    Returns:
        Its duration and frame rate. The duration is the video stream's, else the
        container's, else frames / fps.

    Raises:
        DatasetError: unreadable file, no video stream, or no duration/frame rate.
    """
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DatasetError(f"{path}: no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            if not rate or rate <= 0:
                raise DatasetError(f"{path}: the container gives no frame rate")
            if stream.duration and stream.time_base:
                duration = float(stream.duration * stream.time_base)
            elif container.duration:
                duration = container.duration / av.time_base
            elif stream.frames:
                duration = stream.frames / float(rate)
            else:
                raise DatasetError(f"{path}: the container gives no duration")
    except (av.error.FFmpegError, OSError) as err:
        raise DatasetError(f"{path}: cannot read the video header: {err}") from err
    if duration <= 0:
        raise DatasetError(f"{path}: duration {duration} s is not positive")
    return ContainerInfo(duration=duration, fps=float(rate))


def _normalise_extensions(extensions: Iterable[str]) -> set[str]:
    """Lower-case endings without the leading dot."""
    endings = {e.lower().lstrip(".") for e in extensions}
    if not endings or "" in endings:
        raise DatasetError(f"extensions: expected non-empty file endings such as 'mp4', got {list(extensions)!r}")
    return endings


def find_videos(
    video_dir: Path, video_ids: Iterable[str], *, extensions: Iterable[str] = DEFAULT_EXTENSIONS
) -> tuple[dict[str, Path], list[str]]:
    """Find ``<vid>.<ext>`` for each id anywhere under a folder.

    Args:
        video_dir: the folder (searched recursively, one listing for all ids).
        video_ids: the ids to find.
        extensions: accepted file endings, with or without the dot, any case.

    Returns:
        (found ``{vid: absolute path}``, missing ids in sorted order).

    Raises:
        DatasetError: the folder does not exist, or an id matches several files.
    """
    root = Path(video_dir)
    if not root.is_dir():
        raise DatasetError(f"video folder not found: {root}")
    endings = _normalise_extensions(extensions)
    wanted = set(video_ids)
    matches: dict[str, list[Path]] = {}
    for folder, _, files in os.walk(root):
        for name in files:
            stem, dot, ending = name.rpartition(".")
            if dot and stem in wanted and ending.lower() in endings:
                matches.setdefault(stem, []).append(Path(folder, name).resolve())
    ambiguous = {vid: paths for vid, paths in matches.items() if len(paths) > 1}
    if ambiguous:
        details = "; ".join(
            f"{vid}: {', '.join(str(p) for p in sorted(paths))}" for vid, paths in sorted(ambiguous.items())
        )
        raise DatasetError(f"{root}: several files for one video id (keep one): {details}")
    found = {vid: paths[0] for vid, paths in sorted(matches.items())}
    return found, sorted(wanted - set(found))


def _probe_all(found: dict[str, Path]) -> tuple[dict[str, ContainerInfo], dict[str, str]]:
    """Probe every found video: (info by id, reason by id for unreadable ones)."""
    infos, failed = {}, {}
    for vid, path in found.items():
        try:
            infos[vid] = probe_video(path)
        except DatasetError as err:
            failed[vid] = str(err)
    return infos, failed


def _check_complete(
    video_dir: Path, extensions: set[str], total: int, missing: list[str], failed: dict[str, str], allow_missing: bool
) -> None:
    """Raise for missing/unreadable videos, or warn about them when they may be dropped."""
    if not missing and not failed:
        return
    parts = []
    if missing:
        pattern = "<video_id>." + "|".join(sorted(extensions))
        parts.append(
            f"{len(missing)} of {total} annotated videos not found (looked for {pattern}): {_listing(missing)}"
        )
    if failed:
        reasons = [failed[vid] for vid in sorted(failed)]
        more = " ..." if len(reasons) > _LISTED else ""
        parts.append(f"{len(failed)} unreadable: " + "; ".join(reasons[:_LISTED]) + more)
    message = f"{video_dir}: " + ". ".join(parts)
    if len(missing) == total:  # an unmounted mount point is an empty folder
        message += (
            ". Not one is there: the folder looks unreachable (an unmounted drive or share, or the wrong folder?)"
        )
    if not allow_missing:
        raise DatasetError(message + ". Add the videos, or set allow_missing to drop them.")
    if len(missing) + len(failed) == total:
        raise DatasetError(message + ". No annotated video is left.")
    log.warning("%s. Dropped (allow_missing).", message)


def prepare_directory(
    video_dir: Path,
    gt_json: Path,
    *,
    fps_json: Path | None = None,
    subsets: Mapping[str, str] | None = None,
    extensions: Iterable[str] = DEFAULT_EXTENSIONS,
    allow_missing: bool = False,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Build the prepare artifacts for a folder of user videos and its gt.json.

    Args:
        video_dir: folder holding ``<video_id>.<ext>`` files (searched recursively).
        gt_json: ActivityNet-style ground truth (e.g. THUMOS'14 gt.json).
        fps_json: optional ``{video_id: fps}`` file; it overrides gt.json's per-video
            ``fps``, which overrides the container's frame rate.
        subsets: maps gt subsets onto train/test (or ``skip``), e.g. ``{"validation": "train"}``.
        extensions: file endings to look for.
        allow_missing: drop (with a warning) annotated videos that are absent or
            unreadable, instead of failing.

    Returns:
        (annotations, videos): project annotations with ``duration`` and ``fps`` of each
        video (segments past a video's end clipped, with a warning), and
        ``{vid: absolute path}``.

    Raises:
        DatasetError: missing or unreadable videos (all listed in one message), ambiguous
            files, or videos absent from ``fps_json``.
        AnnotationError: a bad gt.json or fps file.
    """
    video_dir = Path(video_dir)
    endings = _normalise_extensions(extensions)
    annotations = read_gt_json(gt_json, subsets=subsets)
    database = annotations["database"]
    found, missing = find_videos(video_dir, database, extensions=endings)
    infos, failed = _probe_all(found)
    _check_complete(video_dir, endings, len(database), missing, failed, allow_missing)
    # frame rate: fps_json > gt.json's per-video fps > the container's
    rates = {vid: database[vid].get("fps", info.fps) for vid, info in infos.items()}
    if fps_json is not None:
        table = read_fps_dict(fps_json)
        absent = sorted(set(infos) - set(table))
        if absent:
            raise DatasetError(f"{fps_json}: no frame rate for {len(absent)} video(s): {_listing(absent)}")
        rates = {vid: table[vid] for vid in infos}
    kept = {
        vid: {
            "subset": database[vid]["subset"],
            "duration": infos[vid].duration,
            "fps": rates[vid],
            "annotations": database[vid]["annotations"],
        }
        for vid in sorted(infos)
    }
    annotations, _ = clip_segments({"database": kept, "classes": annotations["classes"]})
    videos = {vid: str(found[vid]) for vid in kept}
    return annotations, videos
