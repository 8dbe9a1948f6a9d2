"""Training instances as parallel arrays: the rows every point sampler works on.

`train_instances` validates an annotations dict (docs/ARCHITECTURE.md) and collects each
training instance with its frames at the source fps, `rint(seconds * fps)` (the convention of
the released THUMOS'14 points file, except that it writes 1 for a segment starting at 0.0 s).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from lacp.points.formats import PointLabelError

__all__ = ["InstanceError", "Instances", "finite", "order_rows", "train_instances"]


class InstanceError(PointLabelError):
    """An annotation that cannot carry a point (names the video, class and what was expected)."""

    def __init__(self, video_id: str, reason: str, class_name: str | None = None):
        what = f"video '{video_id}'" + (f" class '{class_name}'" if class_name else "")
        super().__init__(f"annotations: {what}: {reason}")
        self.video_id = video_id
        self.class_name = class_name


@dataclass(frozen=True)
class Instances:
    """Training instances as parallel arrays, ordered by video, start frame, class, stop frame."""

    video_id: np.ndarray  # (N,) str
    class_name: np.ndarray  # (N,) str
    class_index: np.ndarray  # (N,) int64
    start_s: np.ndarray  # (N,) float64
    end_s: np.ndarray  # (N,) float64
    fps: np.ndarray  # (N,) float64
    duration: np.ndarray  # (N,) float64, NaN when unknown
    salient: np.ndarray  # (N,) float64, NaN when absent
    start_frame: np.ndarray  # (N,) int64
    stop_frame: np.ndarray  # (N,) int64

    def __len__(self) -> int:
        return len(self.video_id)

    def take(self, idx: np.ndarray) -> Instances:
        """The instances at `idx` (an index or boolean array)."""
        return Instances(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def name(self, i: int) -> str:
        """A human-readable name of instance `i` for reports."""
        return f"{self.video_id[i]}/{self.class_name[i]} [{self.start_s[i]:g}, {self.end_s[i]:g}] s"


def finite(value: Any) -> bool:
    return (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def train_instances(annotations: Mapping[str, Any]) -> Instances:
    """Collect and validate every instance of the training videos (frames: see the module docstring).

    Args:
        annotations: the annotations dict (`database`, `classes`).

    Returns:
        The instances, ordered by video id, start frame, class index, stop frame.

    Raises:
        InstanceError: a missing key, an unknown subset or class, a bad fps or segment.
    """
    if "database" not in annotations or "classes" not in annotations:
        raise InstanceError("*", "the annotations dict needs the keys 'database' and 'classes'")
    classes = list(annotations["classes"])
    if len(set(classes)) != len(classes):
        raise InstanceError("*", f"'classes' must not repeat a name: {classes}")
    index_of = {name: i for i, name in enumerate(classes)}
    cols: dict[str, list[Any]] = {
        k: [] for k in ("video_id", "class_name", "class_index", "start_s", "end_s", "fps", "duration", "salient")
    }
    for vid, entry in annotations["database"].items():
        subset = entry.get("subset")
        if subset not in ("train", "test"):
            raise InstanceError(vid, f"subset must be 'train' or 'test', got {subset!r}")
        if subset != "train":
            continue
        fps = entry.get("fps")
        if not finite(fps) or fps <= 0:
            raise InstanceError(vid, f"'fps' (source frame rate) must be a number > 0, got {fps!r}")
        duration = entry.get("duration")
        duration = float(duration) if finite(duration) else math.nan
        for ann in entry.get("annotations", []):
            label = ann.get("label")
            if label not in index_of:
                raise InstanceError(vid, f"label not in 'classes' {classes}", label)
            start, end = _segment(vid, label, ann.get("segment"))
            salient = ann.get("salient")
            cols["video_id"].append(vid)
            cols["class_name"].append(label)
            cols["class_index"].append(index_of[label])
            cols["start_s"].append(start)
            cols["end_s"].append(end)
            cols["fps"].append(float(fps))
            cols["duration"].append(duration)
            cols["salient"].append(float(salient) if finite(salient) else math.nan)
    arrays = {
        "video_id": np.array(cols["video_id"], dtype=str),
        "class_name": np.array(cols["class_name"], dtype=str),
        "class_index": np.array(cols["class_index"], dtype=np.int64),
        **{k: np.array(cols[k], dtype=np.float64) for k in ("start_s", "end_s", "fps", "duration", "salient")},
    }
    arrays["start_frame"] = np.rint(arrays["start_s"] * arrays["fps"]).astype(np.int64)
    arrays["stop_frame"] = np.rint(arrays["end_s"] * arrays["fps"]).astype(np.int64)
    inst = Instances(**arrays)
    return inst.take(order_rows(inst.video_id, inst.start_frame, inst.class_index, inst.stop_frame))


def _segment(vid: str, label: str, segment: Any) -> tuple[float, float]:
    """A validated `(start, end)` in seconds: finite, `0 <= start < end`."""
    try:
        start, end = float(segment[0]), float(segment[1])
    except (TypeError, ValueError, IndexError):
        raise InstanceError(vid, f"'segment' must be [start, end] in seconds, got {segment!r}", label) from None
    if not (math.isfinite(start) and math.isfinite(end) and 0 <= start < end):
        raise InstanceError(vid, f"segment must satisfy 0 <= start < end, got [{start}, {end}]", label)
    return start, end


def order_rows(video_id: np.ndarray, *keys: np.ndarray) -> np.ndarray:
    """Indices sorting rows by video id, then by each of `keys` in turn."""
    _, video_rank = np.unique(video_id, return_inverse=True)
    return np.lexsort(tuple(reversed(keys)) + (video_rank,)) if len(video_id) else np.zeros(0, np.int64)
