"""Annotation files: ActivityNet-style ground truth in, the project's ``annotations.json`` out.

Input (``gt.json``, e.g. THUMOS'14, or GTEA/BEOID/ActivityNet as published)::

    {"database": {vid: {"subset": "train" | "test" | "training" | ..., "duration"?: s,
                        "fps"?: f, "num_frames"?: n,
                        "annotations": [{"segment": [s, e], "label": name}, ...]}}}

Segment bounds may be numbers or numeric strings (THUMOS'14 stores strings). Subsets other
than ``train``/``test`` are mapped onto them (GTEA/BEOID: ``training`` -> train, ``validation``
-> test), or onto ``skip`` to leave their videos out (ActivityNet's unannotated ``testing``).
A video's ``num_frames`` (GTEA, BEOID) gives its duration as num_frames / fps when the file
has no ``duration``. Other keys of the file (``version``, ``taxonomy``, ``url``, ...) are
ignored. Output (the prepare artifact, docs/ARCHITECTURE.md)::

    {"database": {vid: {"subset": "train" | "test", "duration": s, "fps": f,
                        "annotations": [{"segment": [s, e], "label": name,
                                         "salient"?: s}]}},
     "classes": [sorted names]}

Every problem raises `AnnotationError` (a `ValueError`) naming the file, the video and the key.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.files import TMP_PREFIX, write_json

log = logging.getLogger(__name__)

SUBSETS = ("train", "test")
"""Subsets of the project's annotations; other gt subsets must be mapped onto these."""

SKIP = "skip"
"""Mapping target that leaves a gt subset's videos out (e.g. ActivityNet's unannotated ``testing``)."""

STAGE_MANIFEST = "manifest.json"
"""The manifest of a per-video stage (decode, flow), beside its `<vid>.<ext>` outputs and
`<vid>.json` sidecars: so no video id may be its stem (`check_video_id`)."""

MAX_ID_BYTES = 200
"""Longest video id in UTF-8 bytes: an id becomes file names (`.tmp-<id>-<12 hex>.json` too,
while it is written), and file systems refuse names over 255 bytes."""

_FORBIDDEN_ID_PARTS = ("/", "\\", "\x00", "..")
_UNSAFE_ID_CHARS = frozenset('<>:"|?*')  # refused in file names by Windows file systems and many tools


class AnnotationError(ValueError):
    """Bad annotation input; the message names the file, video and key."""


@dataclass(frozen=True)
class ClippedSegment:
    """One segment changed by `clip_segments`.

    Attributes:
        video_id: the video.
        label: the segment's class.
        segment: the segment before clipping, (start, end) in seconds.
        clipped: the segment after clipping, or None when it was dropped (it starts at or
            after the end of the video).
    """

    video_id: str
    label: str
    segment: tuple[float, float]
    clipped: tuple[float, float] | None


class _JsonObject(dict):
    """A decoded JSON object that remembers the keys it held more than once."""

    duplicates: list[str]


def _collect_pairs(pairs: list[tuple[str, Any]]) -> _JsonObject:
    """`json` object hook: build the object and record duplicate keys (the last value wins)."""
    obj = _JsonObject()
    obj.duplicates = []
    for key, value in pairs:
        if key in obj:
            obj.duplicates.append(key)
        obj[key] = value
    return obj


def _load_json(path: Path, *, what: str) -> Any:
    """Read a JSON file whose objects record their duplicate keys.

    Args:
        path: the file.
        what: what the file is, for error messages.

    Returns:
        The decoded document.
    """
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_collect_pairs)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise AnnotationError(f"{path}: not a valid JSON {what}: {err}") from err


def _reject_duplicates(obj: Any, where: str, *, what: str = "key") -> None:
    """Raise when a decoded JSON object held a key twice."""
    duplicates = getattr(obj, "duplicates", [])
    if duplicates:
        names = ", ".join(repr(k) for k in sorted(set(duplicates)))
        raise AnnotationError(f"{where}: duplicate {what}(s) {names}")


def check_video_id(video_id: Any, *, where: str) -> str:
    """Check that a video id is usable as a file name in every stage's folders.

    The one check of video ids: the gt.json, fps and annotations readers here and
    `stages.artifacts.read_video_paths` call it.

    Args:
        video_id: the id from the file.
        where: location for error messages (file name).

    Returns:
        The id, unchanged.

    Raises:
        AnnotationError: naming the id and `where`: the id is not a non-empty string; holds a
            path separator, '..', a control character or one of ``<>:"|?*``; starts with a dot
            (`core.files.TMP_PREFIX`, the atomic writer's temporary files, included); is the
            stem of a stage's own file (`STAGE_MANIFEST`); or is longer than `MAX_ID_BYTES`.
    """
    if not isinstance(video_id, str) or not video_id or video_id == ".":
        raise AnnotationError(f"{where}: video id {video_id!r} must be a non-empty file name")
    bad = [part for part in _FORBIDDEN_ID_PARTS if part in video_id]
    if bad:
        raise AnnotationError(
            f"{where}: video id {video_id!r} contains {bad[0]!r}; ids become file names, so "
            "path separators, '..' and NUL are not allowed"
        )
    unsafe = sorted({c for c in video_id if c in _UNSAFE_ID_CHARS or not c.isprintable()})
    if unsafe:
        raise AnnotationError(
            f"{where}: video id {video_id!r} contains {', '.join(map(repr, unsafe))}; ids become file names, "
            f"so control characters and {''.join(sorted(_UNSAFE_ID_CHARS))} are not allowed: rename the video"
        )
    if video_id.startswith(TMP_PREFIX):
        raise AnnotationError(
            f"{where}: video id {video_id!r} starts with {TMP_PREFIX!r}, the prefix of the temporary files "
            "that every stage deletes at its start: rename the video"
        )
    if video_id.startswith("."):
        raise AnnotationError(f"{where}: video id {video_id!r} starts with '.' (a hidden file name): rename the video")
    if video_id.lower() == Path(STAGE_MANIFEST).stem:
        raise AnnotationError(
            f"{where}: video id {video_id!r} is the name of the decode and flow stages' {STAGE_MANIFEST}: "
            "rename the video"
        )
    size = len(video_id.encode("utf-8"))
    if size > MAX_ID_BYTES:
        raise AnnotationError(
            f"{where}: video id {video_id[:40]!r}... is {size} bytes long, above the limit of {MAX_ID_BYTES} "
            "(sources.annotations.MAX_ID_BYTES; ids become file names): shorten it"
        )
    return video_id


def _number(value: Any, where: str) -> float:
    """Parse a finite number given as int, float or numeric string."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise AnnotationError(f"{where}: expected a number, got {value!r}")
    try:
        number = float(value)
    except ValueError as err:
        raise AnnotationError(f"{where}: expected a number, got {value!r}") from err
    if not math.isfinite(number):
        raise AnnotationError(f"{where}: expected a finite number, got {value!r}")
    return number


def _positive(value: Any, where: str) -> float:
    number = _number(value, where)
    if number <= 0:
        raise AnnotationError(f"{where}: expected a positive number, got {value!r}")
    return number


def _frame_count(value: Any, where: str) -> int:
    """Parse a positive whole number of frames (an int, or a float / numeric string without fraction)."""
    number = _positive(value, where)
    if number != int(number):
        raise AnnotationError(f"{where}: expected a whole number of frames, got {value!r}")
    return int(number)


def _require(entry: Any, key: str, where: str) -> Any:
    if not isinstance(entry, dict):
        raise AnnotationError(f"{where}: expected a JSON object, got {type(entry).__name__}")
    if key not in entry:
        raise AnnotationError(f"{where}: missing key '{key}'")
    return entry[key]


def _segment(value: Any, where: str) -> list[float]:
    """Parse ``[start, end]`` with 0 <= start <= end."""
    if not isinstance(value, list) or len(value) != 2:
        raise AnnotationError(f"{where}: expected [start, end], got {value!r}")
    start = _number(value[0], f"{where} start")
    end = _number(value[1], f"{where} end")
    if start < 0:
        raise AnnotationError(f"{where}: start {start} is negative")
    if end < start:
        raise AnnotationError(f"{where}: end {end} is before start {start}")
    return [start, end]


def _label(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise AnnotationError(f"{where}: expected a non-empty class name, got {value!r}")
    return value


def _subset_map(subsets: Mapping[str, str] | None) -> dict[str, str]:
    """The gt subset -> project subset (or `SKIP`) mapping, identity on train/test by default."""
    mapping = {name: name for name in SUBSETS}
    for source, target in (subsets or {}).items():
        if target not in (*SUBSETS, SKIP):
            raise AnnotationError(f"subset mapping {source!r} -> {target!r}: target must be one of {[*SUBSETS, SKIP]}")
        mapping[source] = target
    return mapping


def _per_video(value: float | Mapping[str, Any] | None, vid: str, key: str, where: str) -> float | None:
    """Resolve a per-video number given as one value for all videos or a {vid: value} dict."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        if vid not in value:
            raise AnnotationError(f"{where}: video '{vid}' has no '{key}' in the given {key} table")
        value = value[vid]
    return _positive(value, f"{where}: video '{vid}' key '{key}'")


def read_gt_json(
    path: Path,
    *,
    fps: float | Mapping[str, float] | None = None,
    durations: Mapping[str, float] | None = None,
    subsets: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Read ActivityNet-style ground truth into the project's annotations format.

    Args:
        path: the gt.json file.
        fps: source frame rate of every video (one number), per video (``{vid: fps}``;
            every annotated video must be present), or None to keep a ``fps`` field of the
            file where there is one.
        durations: ``{vid: seconds}`` (every annotated video must be present), or None to
            keep a ``duration`` field of the file where there is one, else num_frames / fps
            where the file gives ``num_frames``.
        subsets: maps subsets of the file onto ``train``/``test``, e.g.
            ``{"validation": "train"}`` (THUMOS'14) or ``{"training": "train",
            "validation": "test"}`` (GTEA, BEOID, ActivityNet); ``skip`` leaves a subset's
            videos out (``{"testing": "skip"}``); ``train`` and ``test`` map to themselves.

    Returns:
        ``{"database": {vid: {...}}, "classes": [...]}`` with videos in sorted id order,
        segments as floats and classes sorted (of the videos kept). ``duration``/``fps`` are
        present only where known (`sources.directory` fills them in from the containers).

    Raises:
        AnnotationError: missing keys, non-numeric or reversed segments, unknown subsets,
            a ``num_frames`` that is not a positive integer, duplicate or unsafe video ids,
            or no labels at all.
    """
    path = Path(path)
    where = str(path)
    doc = _load_json(path, what="ground-truth file")
    _reject_duplicates(doc, where)
    database = _require(doc, "database", where)
    if not isinstance(database, dict):
        raise AnnotationError(f"{where}: key 'database' must be an object of videos")
    _reject_duplicates(database, f"{where}: key 'database'", what="video id")
    mapping = _subset_map(subsets)
    out: dict[str, Any] = {}
    for vid in sorted(database):
        check_video_id(vid, where=where)
        video = _read_gt_video(database[vid], vid, where, mapping=mapping, fps=fps, durations=durations)
        if video is not None:
            out[vid] = video
    classes = sorted({a["label"] for v in out.values() for a in v["annotations"]})
    if not classes:
        raise AnnotationError(f"{where}: no labelled segments, so no classes")
    return {"database": out, "classes": classes}


def _read_gt_video(
    entry: Any,
    vid: str,
    where: str,
    *,
    mapping: dict[str, str],
    fps: float | Mapping[str, float] | None,
    durations: Mapping[str, float] | None,
) -> dict[str, Any] | None:
    """Parse one video entry of a gt.json file (None: its subset maps to `SKIP`)."""
    here = f"{where}: video '{vid}'"
    subset = _require(entry, "subset", here)
    _reject_duplicates(entry, here)
    if subset not in mapping:
        raise AnnotationError(
            f"{here} key 'subset': unknown subset {subset!r}; allowed: {sorted(mapping)} "
            "(map other subsets onto train/test/skip, e.g. subsets={'validation': 'train'})"
        )
    if mapping[subset] == SKIP:
        return None
    raw = _require(entry, "annotations", here)
    if not isinstance(raw, list):
        raise AnnotationError(f"{here} key 'annotations': expected a list, got {type(raw).__name__}")
    annotations = []
    for i, ann in enumerate(raw):
        at = f"{here} annotation {i}"
        segment = _segment(_require(ann, "segment", at), f"{at} key 'segment'")
        label = _label(_require(ann, "label", at), f"{at} key 'label'")
        _reject_duplicates(ann, at)
        annotations.append({"segment": segment, "label": label})
    video: dict[str, Any] = {"subset": mapping[subset]}
    rate = _per_video(fps, vid, "fps", where)
    if rate is None and "fps" in entry:
        rate = _positive(entry["fps"], f"{here} key 'fps'")
    frames = _frame_count(entry["num_frames"], f"{here} key 'num_frames'") if "num_frames" in entry else None
    duration = _per_video(durations, vid, "duration", where)
    if duration is None and "duration" in entry:
        duration = _positive(entry["duration"], f"{here} key 'duration'")
    if duration is None and frames is not None and rate is not None:
        duration = frames / rate
    if duration is not None:
        video["duration"] = duration
    if rate is not None:
        video["fps"] = rate
    video["annotations"] = annotations
    return video


def read_fps_dict(path: Path) -> dict[str, float]:
    """Read a ``{video_id: fps}`` JSON file (e.g. THUMOS'14 fps_dict.json).

    Args:
        path: the file.

    Returns:
        The frame rates as floats.

    Raises:
        AnnotationError: not an object, duplicate or unsafe ids, non-positive or
            non-numeric rates.
    """
    path = Path(path)
    where = str(path)
    doc = _load_json(path, what="fps file")
    if not isinstance(doc, dict):
        raise AnnotationError(f"{where}: expected an object {{video_id: fps}}, got {type(doc).__name__}")
    _reject_duplicates(doc, where, what="video id")
    return {check_video_id(vid, where=where): _positive(v, f"{where}: video '{vid}' fps") for vid, v in doc.items()}


def clip_segments(
    annotations: dict[str, Any], durations: Mapping[str, float] | None = None
) -> tuple[dict[str, Any], list[ClippedSegment]]:
    """Clip segments that run past the end of their video; drop those that start after it.

    Args:
        annotations: project annotations (not modified).
        durations: ``{vid: seconds}``; when given, also becomes each video's ``duration``.
            When None, each video's own ``duration`` field is used.

    Returns:
        (a clipped copy of the annotations, every segment that was changed or dropped).
        A ``salient`` time beyond a clipped end moves onto the end. One warning is logged
        when anything was clipped.

    Raises:
        AnnotationError: a video has no duration.
    """
    out = copy.deepcopy(annotations)
    changed: list[ClippedSegment] = []
    for vid, video in out["database"].items():
        if durations is not None:
            if vid not in durations:
                raise AnnotationError(f"clip_segments: no duration given for video '{vid}'")
            video["duration"] = float(durations[vid])
        if "duration" not in video:
            raise AnnotationError(f"clip_segments: video '{vid}' has no 'duration'")
        video["annotations"], clipped = _clip_video(vid, video["annotations"], video["duration"])
        changed.extend(clipped)
    if changed:
        dropped = sum(c.clipped is None for c in changed)
        examples = "; ".join(
            f"{c.video_id} {c.label} {list(c.segment)} -> {list(c.clipped) if c.clipped else 'dropped'}"
            for c in changed[:5]
        )
        log.warning(
            "%d segment(s) extend past the end of their video: %d clipped, %d dropped (start after the end). First: %s",
            len(changed),
            len(changed) - dropped,
            dropped,
            examples,
        )
    return out, changed


def _clip_video(vid: str, annotations: list[dict], duration: float) -> tuple[list[dict], list[ClippedSegment]]:
    """Clip one video's segments to [0, duration]."""
    kept, changed = [], []
    for ann in annotations:
        start, end = ann["segment"]
        if end <= duration:
            kept.append(ann)
            continue
        if start >= duration:
            changed.append(ClippedSegment(vid, ann["label"], (start, end), None))
            continue
        changed.append(ClippedSegment(vid, ann["label"], (start, end), (start, duration)))
        ann = {**ann, "segment": [start, duration]}
        if "salient" in ann:
            ann["salient"] = min(ann["salient"], duration)
        kept.append(ann)
    return kept, changed


def validate_annotations(annotations: Any, *, where: str = "annotations") -> None:
    """Check a complete project annotations dict (the ``annotations.json`` format).

    Args:
        annotations: the dict to check.
        where: name for error messages (usually the file).

    Raises:
        AnnotationError: the first problem found, naming the video and key.
    """
    database = _require(annotations, "database", where)
    classes = _require(annotations, "classes", where)
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) and c for c in classes):
        raise AnnotationError(f"{where}: key 'classes' must be a non-empty list of names")
    if classes != sorted(set(classes)):
        raise AnnotationError(f"{where}: key 'classes' must be sorted and without repeats")
    if not isinstance(database, dict) or not database:
        raise AnnotationError(f"{where}: key 'database' must be a non-empty object of videos")
    known = set(classes)
    for vid, video in database.items():
        check_video_id(vid, where=where)
        here = f"{where}: video '{vid}'"
        subset = _require(video, "subset", here)
        if subset not in SUBSETS:
            raise AnnotationError(f"{here} key 'subset': {subset!r} is not one of {list(SUBSETS)}")
        duration = _positive(_require(video, "duration", here), f"{here} key 'duration'")
        _positive(_require(video, "fps", here), f"{here} key 'fps'")
        for i, ann in enumerate(_require(video, "annotations", here)):
            at = f"{here} annotation {i}"
            start, end = _segment(_require(ann, "segment", at), f"{at} key 'segment'")
            if end > duration:
                raise AnnotationError(f"{at}: end {end} is after the video end {duration}")
            label = _label(_require(ann, "label", at), f"{at} key 'label'")
            if label not in known:
                raise AnnotationError(f"{at}: label {label!r} is not in 'classes'")
            if "salient" in ann and not start <= _number(ann["salient"], f"{at} key 'salient'") <= end:
                raise AnnotationError(f"{at}: salient time {ann['salient']} is outside [{start}, {end}]")


def read_annotations(path: Path) -> dict[str, Any]:
    """Read and validate a project ``annotations.json`` (written by the prepare stage).

    Args:
        path: the file.

    Returns:
        The annotations dict.
    """
    path = Path(path)
    annotations = _load_json(path, what="annotations file")
    _reject_duplicates(annotations, str(path))
    if isinstance(annotations, dict):
        _reject_duplicates(annotations.get("database"), f"{path}: key 'database'", what="video id")
    validate_annotations(annotations, where=str(path))
    return annotations


def write_annotations(path: Path, annotations: dict[str, Any]) -> None:
    """Validate project annotations and write them atomically as JSON.

    Args:
        path: destination (``annotations.json``).
        annotations: the annotations dict.

    Raises:
        AnnotationError: the annotations are incomplete or inconsistent.
    """
    validate_annotations(annotations, where=str(path))
    write_json(path, annotations, indent=1, sort_keys=False)
