"""Pseudo background points and pseudo action points of one video (METHOD 3.3).

Both are recomputed from the current background score q_bg (no gradient) around the labelled
points. "Points" below are the labelled snippets: the rows of the (T, C) point matrix with at
least one True, in time order (p_1 < ... < p_n).

Rules (thresholds: background >= `bg_threshold` = 0.95, action <= `act_threshold` = 0.1):
- Left of p_1 (snippets [0, p_1)): if some have q_bg >= 0.95, everything from 0 up to and
  including the last of them is background; if none, everything up to and including argmax
  q_bg of that region.
- Right of p_n ((p_n, T)): mirror image: from the first such snippet (or the argmax) to the end.
- Between p_i and p_{i+1} when p_{i+1} - p_i >= 2 (at least one snippet between): if at least
  two snippets have q_bg >= 0.95, the whole span from the first to the last of them is
  background; otherwise only the argmax of the gap (which is the single seed when exactly
  one exists).
- Pseudo action points: walking outward from each point - leftwards from p_1, rightwards from
  p_n, and inside each gap rightwards from p_i and leftwards from p_{i+1} - every snippet with
  q_bg <= 0.1 that is not background takes the classes of the point it was reached from,
  until the first snippet that fails. A walk never crosses a background snippet, and every
  region holds at least one background snippet (its argmax at least), so walks from the two
  ends of a gap never meet.

Edge cases (decided here, as in the released recipe where it defines them):
- Points of several classes in one snippet are one labelled snippet; pseudo action points
  reached from it take all of its classes.
- Adjacent points (p_{i+1} = p_i + 1) leave no gap: nothing is selected between them.
- A point at snippet 0 (or T - 1) leaves no left (right) region.
- Ties for the argmax go to the earliest snippet.
- A video without points gets no seeds at all (the released recipe fails on it).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["batch_background_seeds", "select_seeds"]


def _walk_length(candidate: np.ndarray) -> int:
    """Number of leading True values of a 1-d bool array."""
    failures = np.flatnonzero(~candidate)
    return int(failures[0]) if failures.size else int(candidate.size)


def select_seeds(
    q_bg: np.ndarray,
    points: np.ndarray,
    *,
    bg_threshold: float = 0.95,
    act_threshold: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """Pseudo background points and action seeds (points plus pseudo action points).

    Args:
        q_bg: (T,) background scores of one video (valid snippets only).
        points: (T, C) bool point matrix of the video.
        bg_threshold: q_bg at or above this makes a snippet a background candidate.
        act_threshold: q_bg at or below this lets a walk take a snippet as an action point.

    Returns:
        bg: (T,) bool pseudo background points.
        act: (T, C) bool action seeds: the points plus the pseudo action points.

    Raises:
        ValueError: q_bg and points of different lengths, or inputs of the wrong rank.
    """
    q_bg = np.asarray(q_bg, dtype=np.float64)
    points = np.asarray(points, dtype=bool)
    if q_bg.ndim != 1 or points.ndim != 2 or points.shape[0] != q_bg.shape[0]:
        raise ValueError(f"select_seeds expects q_bg (T,) and points (T, C), got {q_bg.shape} and {points.shape}")
    length = q_bg.shape[0]
    bg = np.zeros(length, dtype=bool)
    act = points.copy()
    labelled = np.flatnonzero(points.any(axis=1))  # (n,) point snippets, increasing
    if labelled.size == 0:
        return bg, act
    high = q_bg >= bg_threshold  # (T,)

    # 1. background seeds, region by region
    first, last = labelled[0], labelled[-1]
    if first > 0:  # left of the first point: [0, first)
        seeds = np.flatnonzero(high[:first])
        end = seeds[-1] if seeds.size else int(np.argmax(q_bg[:first]))
        bg[: end + 1] = True
    if last < length - 1:  # right of the last point: (last, T)
        seeds = np.flatnonzero(high[last + 1 :])
        start = seeds[0] if seeds.size else int(np.argmax(q_bg[last + 1 :]))
        bg[last + 1 + start :] = True
    for left, right in zip(labelled[:-1], labelled[1:]):
        if right - left < 2:
            continue
        seeds = np.flatnonzero(high[left + 1 : right]) + left + 1
        if seeds.size >= 2:
            bg[seeds[0] : seeds[-1] + 1] = True
        else:
            bg[left + 1 + int(np.argmax(q_bg[left + 1 : right]))] = True

    # 2. pseudo action points, walking outward from each point until the first failure
    candidate = (q_bg <= act_threshold) & ~bg  # (T,)
    walks = [(first, -1, first)]  # (point, direction, number of snippets it may visit)
    walks.append((last, 1, length - 1 - last))
    for left, right in zip(labelled[:-1], labelled[1:]):
        walks.append((left, 1, right - left - 1))
        walks.append((right, -1, right - left - 1))
    for point, direction, room in walks:
        if room <= 0:
            continue
        span = point + direction * np.arange(1, room + 1)  # snippets in walking order
        reached = span[: _walk_length(candidate[span])]
        act[reached] = points[point]
    return bg, act


def batch_background_seeds(
    q: torch.Tensor,
    points: torch.Tensor,
    lengths: torch.Tensor,
    *,
    bg_threshold: float = 0.95,
    act_threshold: float = 0.1,
) -> torch.Tensor:
    """Pseudo background points of a padded batch, from its detached q_bg.

    Args:
        q: (B, T, C+1) fused scores (background last).
        points: (B, T, C) bool point matrices.
        lengths: (B,) valid snippets per video.
        bg_threshold, act_threshold: as in `select_seeds`.

    Returns:
        (B, T) bool on q's device, False at padding.
    """
    q_bg = q[..., -1].detach().cpu().numpy()  # (B, T)
    points_np = points.cpu().numpy()  # (B, T, C)
    seeds = np.zeros(q_bg.shape, dtype=bool)
    for b, length in enumerate(lengths.tolist()):
        seeds[b, :length], _ = select_seeds(
            q_bg[b, :length], points_np[b, :length], bg_threshold=bg_threshold, act_threshold=act_threshold
        )
    return torch.from_numpy(seeds).to(q.device)
