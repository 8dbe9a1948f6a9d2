"""The searched pseudo labels of a training run, kept for the analyses (`pseudo_labels.h5`).

The train stage writes, for every training video, the dense pseudo labels of the first
optimal-sequence search (an early one: the model has trained `search_every` steps) and of the
last; the analyze stage draws them against the ground truth and the points. Layout:

    /first/<video_id>   (T, C) uint8, attrs["step"] on the group: the first search's step
    /final/<video_id>   (T, C) uint8, attrs["step"]: the last search's step

A run without searches (the point-only baseline) writes both groups empty, with step 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from core.files import atomic_path

__all__ = ["SearchRecord", "read_search_record", "write_search_record"]

GROUPS = ("first", "final")


@dataclass(frozen=True)
class SearchRecord:
    """Pseudo labels of the first and the last search.

    Attributes:
        first: video id -> (T, C) uint8 labels of the first search.
        first_step: its step (0: no search ran).
        final: video id -> (T, C) uint8 labels of the last search.
        final_step: its step.
    """

    first: dict[str, np.ndarray]
    first_step: int
    final: dict[str, np.ndarray]
    final_step: int


def write_search_record(path: Path, record: SearchRecord) -> Path:
    """Write `record` to `path` atomically (a crash leaves no half-written file)."""
    labels: Mapping[str, Mapping[str, np.ndarray]] = {"first": record.first, "final": record.final}
    steps = {"first": record.first_step, "final": record.final_step}
    with atomic_path(Path(path)) as tmp, h5py.File(tmp, "w") as h5:
        for name in GROUPS:
            group = h5.create_group(name)
            group.attrs["step"] = int(steps[name])
            for vid, dense in sorted(labels[name].items()):
                group.create_dataset(vid, data=np.asarray(dense, dtype=np.uint8), compression="gzip")
    return Path(path)


def read_search_record(path: Path) -> SearchRecord:
    """The record the train stage wrote.

    Raises:
        FileNotFoundError: no such file (run the train stage).
        ValueError: a file without the `first` and `final` groups.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"searched pseudo labels not found: {path} (run the train stage)")
    with h5py.File(path, "r") as h5:
        missing = [g for g in GROUPS if not isinstance(h5.get(g), h5py.Group)]
        if missing:
            raise ValueError(f"{path}: expected groups {list(GROUPS)}, missing {missing} (rerun the train stage)")
        read = {g: {vid: np.asarray(h5[g][vid]) for vid in h5[g]} for g in GROUPS}
        steps = {g: int(h5[g].attrs.get("step", 0)) for g in GROUPS}
    return SearchRecord(first=read["first"], first_step=steps["first"], final=read["final"], final_step=steps["final"])
