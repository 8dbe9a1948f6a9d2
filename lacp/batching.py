"""Training videos, point labels as snippet matrices, and padded batches.

A training video is described by a `VideoItem` (its id, video-level labels and point labels
at the source frame rate). Its features are read only when a step needs them; `load_sample`
turns the item plus its (T, D) features into a `VideoSample` whose point labels are a (T, C)
matrix, and `collate` pads a list of samples into one `Batch`.

Snippet index of a point (docs/METHOD.md, "Points"): a point at frame f of a source video
with frame rate F lies in snippet t = floor(f * fps / (F * stride)) of the features' time grid
(`features.timegrid`; 25 fps and stride 16 in the released recipe), clipped to T - 1
(features may end a snippet early when the last frames were dropped).

Fixed-length training sequences (`train.num_segments` N > 0; the THUMOS'14 recipe uses every
snippet): `segment_positions` cuts a video's T snippets into N bins, bin i = snippets
[floor(i T / N), floor((i + 1) T / N)) (one snippet, floor(i T / N), when T < N, so short
videos are stretched by repetition), and picks one snippet per bin: a uniform random one
("random", the BaS-Net/LACP training loaders' `random_perturb`) or the bin's first
("uniform", their `uniform_sampling`). `resample_sample` keeps those snippets' features and
moves each point label to the position of the bin that holds the point's snippet, so no
point is lost (the released loaders index the point matrix with the picked snippets, which
drops a point whenever its own snippet is not the one picked; they also let a random pick
reach the next bin's first snippet, and LACP's uniform one keeps a video shorter than N as
it is). Dense labels that live on the full grid (the search's
pseudo labels) are indexed with the same positions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from features.timegrid import RELEASED_GRID, TimeGrid

__all__ = [
    "Batch",
    "FeatureSource",
    "VideoItem",
    "VideoSample",
    "collate",
    "feature_getter",
    "load_sample",
    "point_matrix",
    "resample_sample",
    "segment_bins",
    "segment_positions",
    "snippet_index",
]

FeatureSource = Callable[[str], np.ndarray] | Mapping[str, np.ndarray]


@dataclass(frozen=True)
class VideoItem:
    """One training video, without its features.

    Attributes:
        video_id: the id under which `get_features` finds the (T, D) features.
        labels: (C,) 0/1 video-level labels (classes present in the video).
        point_frames: (N,) frame index of each point at the source frame rate.
        point_classes: (N,) class index of each point.
        fps: frame rate of the source video (frames of `point_frames` per second).
        grid: the time grid of the video's features (from the feature store's attributes).
    """

    video_id: str
    labels: np.ndarray
    point_frames: np.ndarray
    point_classes: np.ndarray
    fps: float
    grid: TimeGrid = RELEASED_GRID


@dataclass(frozen=True)
class VideoSample:
    """One video ready to batch.

    Attributes:
        video_id: id of the video.
        features: (T, D) float32 features.
        points: (T, C) bool, True where a point of class c lies in snippet t.
        labels: (C,) float32 video-level labels.
    """

    video_id: str
    features: np.ndarray
    points: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class Batch:
    """Padded videos; positions t >= lengths[b] are padding (features and points zero).

    Attributes:
        video_ids: the B video ids, in batch order.
        features: (B, T, D) float32, T = the longest video.
        mask: (B, T) bool, True at valid snippets.
        points: (B, T, C) bool point matrices.
        labels: (B, C) float32 video-level labels.
        lengths: (B,) int64 number of valid snippets per video.
    """

    video_ids: list[str]
    features: torch.Tensor
    mask: torch.Tensor
    points: torch.Tensor
    labels: torch.Tensor
    lengths: torch.Tensor

    def to(self, device: torch.device | str) -> Batch:
        """Returns the same batch with every tensor on `device`."""
        return Batch(
            video_ids=self.video_ids,
            features=self.features.to(device),
            mask=self.mask.to(device),
            points=self.points.to(device),
            labels=self.labels.to(device),
            lengths=self.lengths.to(device),
        )


def snippet_index(frames: np.ndarray, *, fps: float, grid: TimeGrid = RELEASED_GRID) -> np.ndarray:
    """Snippet index floor(f * grid.fps / (fps * grid.stride)) of each source frame f (not clipped).

    Args:
        frames: (N,) frame indices at the source frame rate, >= 0.
        fps: source frame rate, > 0.
        grid: the features' time grid.

    Returns:
        (N,) int64 snippet indices.
    """
    return grid.snippet_of_frames(frames, source_fps=fps)


def point_matrix(
    *,
    frames: np.ndarray,
    classes: np.ndarray,
    fps: float,
    num_snippets: int,
    num_classes: int,
    video_id: str = "",
    grid: TimeGrid = RELEASED_GRID,
) -> np.ndarray:
    """Point labels of one video as a (T, C) bool matrix.

    Args:
        frames: (N,) point frames at the source frame rate.
        classes: (N,) class index of each point.
        fps: source frame rate.
        num_snippets: T, the number of feature snippets of the video.
        num_classes: C.
        video_id: named in error messages.
        grid: the features' time grid.

    Returns:
        (T, C) bool, True at (snippet of the point, its class); points past the last snippet
        are clipped onto it.

    Raises:
        ValueError: non-positive fps or T, negative frames, classes outside [0, C), or
            frames and classes of different lengths.
    """
    frames = np.asarray(frames)
    classes = np.asarray(classes)
    where = f"video '{video_id}'"
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"{where}: fps must be a positive number, got {fps}")
    if num_snippets < 1:
        raise ValueError(f"{where}: needs at least one snippet, got T={num_snippets}")
    if frames.shape != classes.shape or frames.ndim != 1:
        raise ValueError(
            f"{where}: point frames {frames.shape} and classes {classes.shape} must be 1-d arrays of the same length"
        )
    if frames.size and frames.min() < 0:
        raise ValueError(f"{where}: point frames must be >= 0, got {frames.min()}")
    if classes.size and (classes.min() < 0 or classes.max() >= num_classes):
        raise ValueError(f"{where}: point classes must lie in [0, {num_classes}), got {classes.min()}..{classes.max()}")
    snippets = np.minimum(snippet_index(frames, fps=fps, grid=grid), num_snippets - 1)  # (N,)
    points = np.zeros((num_snippets, num_classes), dtype=bool)
    points[snippets, classes.astype(np.int64)] = True
    return points


def segment_bins(length: int, num_segments: int) -> tuple[np.ndarray, np.ndarray]:
    """The N bins of a video of T snippets: bin i is snippets [start[i], stop[i]).

    start[i] = floor(i T / N), stop[i] = max(floor((i + 1) T / N), start[i] + 1): for T >= N
    the bins partition the video; for T < N a bin holds the one snippet start[i].

    Args:
        length: T >= 1.
        num_segments: N >= 1.

    Returns:
        (start (N,), stop (N,)) int64.
    """
    if length < 1 or num_segments < 1:
        raise ValueError(f"segment bins need T >= 1 snippets and N >= 1 segments, got T={length}, N={num_segments}")
    edges = np.arange(num_segments + 1, dtype=np.int64) * length // num_segments  # (N+1,) floor(i T / N)
    start = edges[:-1]
    return start, np.maximum(edges[1:], start + 1)


def segment_positions(length: int, num_segments: int, *, rng: np.random.Generator | None = None) -> np.ndarray:
    """The snippet picked in each of the N bins of a video (`segment_bins`).

    Args:
        length: T, the video's snippets.
        num_segments: N.
        rng: draw one snippet uniformly inside each bin ("random" sampling); None picks each
            bin's first snippet floor(i T / N) ("uniform" sampling).

    Returns:
        (N,) int64 snippet indices, non-decreasing, in [0, T).
    """
    start, stop = segment_bins(length, num_segments)
    if rng is None:
        return start
    return start + np.floor(rng.random(num_segments) * (stop - start)).astype(np.int64)


def resample_sample(sample: VideoSample, positions: np.ndarray) -> VideoSample:
    """A video resampled to N snippets: the features at `positions`, point labels moved to their bins.

    Args:
        sample: the video on its full grid (T snippets).
        positions: (N,) snippet picked per bin (`segment_positions` with the same T and N).

    Returns:
        The `VideoSample` with (N, D) features and (N, C) points: position i is labelled with
        class c when any snippet of bin i carries a point of c.
    """
    length = sample.features.shape[0]
    start, stop = segment_bins(length, len(positions))
    inside = (positions >= start) & (positions < stop)
    if not inside.all():
        raise ValueError(
            f"video '{sample.video_id}': positions must pick one snippet of each of the "
            f"{len(positions)} bins of its {length} snippets"
        )
    counts = np.concatenate(
        [np.zeros((1, sample.points.shape[1]), np.int64), np.cumsum(sample.points, axis=0, dtype=np.int64)]
    )  # (T+1, C)
    points = (counts[stop] - counts[start]) > 0  # (N, C): a point of c somewhere in bin i
    return VideoSample(
        video_id=sample.video_id, features=sample.features[positions], points=points, labels=sample.labels
    )


def feature_getter(source: FeatureSource) -> Callable[[str], np.ndarray]:
    """A function video_id -> features from a callable or from a mapping (dict, FeatureStore)."""
    if callable(source):
        return source
    return source.__getitem__


def load_sample(
    item: VideoItem,
    *,
    get_features: Callable[[str], np.ndarray],
    num_classes: int,
    feature_dim: int,
) -> VideoSample:
    """Reads one video's features and builds its point matrix.

    Args:
        item: the video.
        get_features: video_id -> (T, D) features.
        num_classes: C.
        feature_dim: D expected of the features.

    Returns:
        The `VideoSample`.

    Raises:
        ValueError: features of the wrong shape or with non-finite values, labels of the
            wrong length, or bad point labels (see `point_matrix`).
    """
    features = np.asarray(get_features(item.video_id), dtype=np.float32)
    if features.ndim != 2 or features.shape[0] < 1 or features.shape[1] != feature_dim:
        raise ValueError(
            f"video '{item.video_id}': features must have shape (T >= 1, {feature_dim}), got {features.shape}"
        )
    if not np.isfinite(features).all():
        raise ValueError(f"video '{item.video_id}': features contain NaN or inf")
    labels = np.asarray(item.labels, dtype=np.float32)
    if labels.shape != (num_classes,):
        raise ValueError(f"video '{item.video_id}': labels must have shape ({num_classes},), got {labels.shape}")
    points = point_matrix(
        frames=item.point_frames,
        classes=item.point_classes,
        fps=item.fps,
        num_snippets=features.shape[0],
        num_classes=num_classes,
        video_id=item.video_id,
        grid=item.grid,
    )
    return VideoSample(video_id=item.video_id, features=features, points=points, labels=labels)


def collate(samples: Sequence[VideoSample]) -> Batch:
    """Pads videos of different lengths into one batch (zeros beyond each video's end).

    Args:
        samples: B >= 1 videos with equal feature dim and class count.

    Returns:
        The `Batch` (CPU tensors).

    Raises:
        ValueError: an empty list, or videos whose feature dims or class counts differ.
    """
    if not samples:
        raise ValueError("collate needs at least one video")
    dim = samples[0].features.shape[1]
    num_classes = samples[0].points.shape[1]
    for sample in samples:
        if sample.features.shape[1] != dim or sample.points.shape[1] != num_classes:
            raise ValueError(
                f"video '{sample.video_id}': features (T, {sample.features.shape[1]}) and "
                f"points (T, {sample.points.shape[1]}) do not match the batch's "
                f"(T, {dim}) and (T, {num_classes})"
            )
    lengths = np.array([s.features.shape[0] for s in samples], dtype=np.int64)  # (B,)
    batch_size, max_len = len(samples), int(lengths.max())
    features = np.zeros((batch_size, max_len, dim), dtype=np.float32)  # (B, T, D)
    points = np.zeros((batch_size, max_len, num_classes), dtype=bool)  # (B, T, C)
    for b, sample in enumerate(samples):
        features[b, : lengths[b]] = sample.features
        points[b, : lengths[b]] = sample.points
    mask = np.arange(max_len)[None, :] < lengths[:, None]  # (B, T)
    return Batch(
        video_ids=[s.video_id for s in samples],
        features=torch.from_numpy(features),
        mask=torch.from_numpy(mask),
        points=torch.from_numpy(points),
        labels=torch.from_numpy(np.stack([s.labels for s in samples]).astype(np.float32)),
        lengths=torch.from_numpy(lengths),
    )
