"""The pyramid's locations and their training targets (ActionFormer's label assignment).

Locations: a video padded to T snippets (a multiple of 2**(L-1)) has T / 2**l locations at
level l; location i of level l covers snippets [i s, (i + 1) s), s = 2**l, and stands at its
centre p = (i + 0.5) s (snippet t spans [t, t + 1) of the time grid). Levels are
concatenated, level 0 first: N = sum_l T / 2**l locations.

Assignment of one location (p, stride s, level range [lo, hi)) to the instances [a, b] of
its video (snippet units, `detector.batching.instances_to_snippets`):
1. centre sampling: p lies strictly inside the instance's centre region
   (max(a, c - r s), min(b, c + r s)), c = (a + b) / 2, r = `center_radius` (so p is
   strictly inside the instance, too);
2. scale: the larger distance max(p - a, b - p) lies in the level's range [lo, hi)
   (`detector.config.regression_ranges`);
3. among the instances that pass both, the shortest wins (ties: the first in the given
   order); the location is positive for that instance's class, and its regression target
   is ((p - a) / s, (b - p) / s): distances to the start and the end in units of the stride.
Every other location is background (class -1, regression target 0). Locations past the
video's end are never positive (instances are clipped to [0, T]) and the losses ignore them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detector.config import regression_ranges

__all__ = ["Targets", "assign_targets", "pyramid_points"]


def pyramid_points(length: int, *, num_levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Centres and strides of every location of the pyramid, level 0 first.

    Args:
        length: T, the padded length (a multiple of 2**(num_levels - 1)).
        num_levels: L.

    Returns:
        centres (N,) float64 in snippets and strides (N,) float64.

    Raises:
        ValueError: T not a positive multiple of 2**(L-1).
    """
    coarsest = 2 ** (num_levels - 1)
    if length < 1 or length % coarsest:
        raise ValueError(f"pyramid_points: length must be a positive multiple of {coarsest}, got {length}")
    centres, strides = [], []
    for level in range(num_levels):
        stride = 2**level
        centres.append((np.arange(length // stride) + 0.5) * stride)
        strides.append(np.full(length // stride, float(stride)))
    return np.concatenate(centres), np.concatenate(strides)


@dataclass(frozen=True)
class Targets:
    """Targets of one video's N locations.

    Attributes:
        labels: (N,) int64 class of each location, -1 for background.
        regression: (N, 2) float32 (start, end) distances in units of the location's stride;
            0 at background locations.
    """

    labels: np.ndarray
    regression: np.ndarray

    @property
    def positive(self) -> np.ndarray:
        """(N,) bool, True at locations assigned to an instance."""
        return self.labels >= 0


def assign_targets(
    instances: np.ndarray,
    *,
    length: int,
    num_levels: int,
    range_base: float,
    center_radius: float,
) -> Targets:
    """Assigns the pyramid's locations of one video to its instances (module docstring).

    Args:
        instances: (M, 3) rows [start, end, class] in snippets (M may be 0).
        length: T, the padded length.
        num_levels: L.
        range_base: the regression range base b (snippets).
        center_radius: r, in strides.

    Returns:
        The `Targets` of the N locations.
    """
    centres, strides = pyramid_points(length, num_levels=num_levels)  # (N,), (N,)
    ranges = regression_ranges(num_levels=num_levels, base=range_base)  # (L, 2)
    level = np.log2(strides).astype(np.int64)  # (N,)
    lo, hi = ranges[level, 0][:, None], ranges[level, 1][:, None]  # (N, 1)
    instances = np.asarray(instances, dtype=np.float64).reshape(-1, 3)
    start, end = instances[:, 0][None, :], instances[:, 1][None, :]  # (1, M)
    p, s = centres[:, None], strides[:, None]  # (N, 1)
    left, right = p - start, end - p  # (N, M)
    middle = (start + end) / 2
    region_lo = np.maximum(start, middle - center_radius * s)
    region_hi = np.minimum(end, middle + center_radius * s)
    reach = np.maximum(left, right)
    eligible = (p > region_lo) & (p < region_hi) & (reach >= lo) & (reach < hi)  # (N, M)
    labels = np.full(centres.shape[0], -1, dtype=np.int64)
    regression = np.zeros((centres.shape[0], 2), dtype=np.float32)
    if instances.shape[0] == 0:
        return Targets(labels=labels, regression=regression)
    lengths = np.where(eligible, end - start, np.inf)  # (N, M)
    best = np.argmin(lengths, axis=1)  # (N,) the shortest eligible instance; ties: the first
    positive = eligible.any(axis=1)
    rows = np.flatnonzero(positive)
    labels[rows] = instances[best[rows], 2].astype(np.int64)
    regression[rows] = np.stack([left[rows, best[rows]], right[rows, best[rows]]], axis=1) / strides[rows, None]
    return Targets(labels=labels, regression=regression)
