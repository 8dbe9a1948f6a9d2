"""The detector's inputs: checked features, padded batches, instances on the snippet grid.

Why not `lacp.batching.collate`: it pads LACP's point matrices and video-level labels beside
the features (a `VideoSample` holds both), which the detector has none of, and it pads to the
batch's longest video, whereas the detector's pyramid needs a length that 2**(L-1) divides
(each level halves it). `pad_features` is that small generic padding; the feature source
(a mapping such as `features.store.FeatureStore`, or a callable) is `lacp.batching`'s.

Instances: (start_s, end_s, class_index) in seconds, the ActivityNet convention of the
evaluator. On the snippet grid, snippet t spans [t, t + 1) (`features.timegrid`: it starts
at t * stride / fps seconds), so an instance becomes [start_s, end_s] / seconds_per_snippet,
clipped to the video's [0, T].
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from features.timegrid import TimeGrid

__all__ = ["Instance", "instances_to_snippets", "pad_features", "read_features"]

Instance = tuple[float, float, int]  # (start_s, end_s, class_index)


def read_features(get_features: Callable[[str], np.ndarray], video_id: str, *, feature_dim: int) -> np.ndarray:
    """One video's features, checked.

    Args:
        get_features: video_id -> (T, D) features (`lacp.batching.feature_getter`).
        video_id: the video.
        feature_dim: D expected.

    Returns:
        (T, D) float32.

    Raises:
        ValueError: features of the wrong shape or with NaN / inf values, naming the video.
    """
    features = np.asarray(get_features(video_id), dtype=np.float32)
    if features.ndim != 2 or features.shape[0] < 1 or features.shape[1] != feature_dim:
        raise ValueError(
            f"video '{video_id}': features must have shape (T >= 1, {feature_dim}), "
            f"got {features.shape}; check the feature store and detector feature_dim"
        )
    if not np.isfinite(features).all():
        raise ValueError(f"video '{video_id}': features contain NaN or inf; re-extract the video")
    return features


def pad_features(videos: Sequence[np.ndarray], *, multiple: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pads videos into one batch whose length is a multiple of `multiple`.

    Args:
        videos: B >= 1 arrays (T_b, D), equal D.
        multiple: the padded length is the smallest multiple of this >= max T_b.

    Returns:
        features (B, T, D) float32, zero beyond each video's end, and mask (B, T) bool, True at
        valid snippets (CPU tensors).

    Raises:
        ValueError: no videos, or videos of different widths.
    """
    if not videos:
        raise ValueError("pad_features needs at least one video")
    dim = videos[0].shape[1]
    if any(v.ndim != 2 or v.shape[1] != dim for v in videos):
        raise ValueError(f"pad_features: every video must be (T, {dim}), got {[v.shape for v in videos]}")
    lengths = np.array([v.shape[0] for v in videos], dtype=np.int64)  # (B,)
    padded = int(math.ceil(lengths.max() / multiple) * multiple)
    features = np.zeros((len(videos), padded, dim), dtype=np.float32)  # (B, T, D)
    for b, video in enumerate(videos):
        features[b, : lengths[b]] = video
    mask = np.arange(padded)[None, :] < lengths[:, None]  # (B, T)
    return torch.from_numpy(features), torch.from_numpy(mask)


def instances_to_snippets(
    instances: Sequence[Instance], *, length: int, grid: TimeGrid, num_classes: int, video_id: str
) -> np.ndarray:
    """A video's instances on its snippet grid.

    Args:
        instances: (start_s, end_s, class_index) each.
        length: T, the video's snippets.
        grid: the features' time grid.
        num_classes: C.
        video_id: named in errors.

    Returns:
        (M, 3) float64 rows [start, end, class] in snippets, clipped to [0, T], in input order.

    Raises:
        ValueError: a non-finite or reversed segment, a class outside [0, C), or an instance
            that lies entirely past the video's end (naming the video and the instance).
    """
    rows = np.zeros((len(instances), 3), dtype=np.float64)
    for number, instance in enumerate(instances):
        where = f"video '{video_id}' instance {number} {tuple(instance)!r}"
        try:
            start_s, end_s, label = instance
        except (TypeError, ValueError):
            raise ValueError(f"{where}: expected (start_s, end_s, class_index)") from None
        if not (math.isfinite(start_s) and math.isfinite(end_s) and 0 <= start_s < end_s):
            raise ValueError(f"{where}: expected 0 <= start_s < end_s, in seconds")
        if int(label) != label or not 0 <= label < num_classes:
            raise ValueError(f"{where}: class_index must be an integer in [0, {num_classes})")
        start = start_s / grid.seconds_per_snippet
        end = min(end_s / grid.seconds_per_snippet, float(length))
        if start >= end:
            raise ValueError(
                f"{where}: starts at or after the video's end ({length} snippets = "
                f"{length * grid.seconds_per_snippet:.2f} s); fix the instance or the features"
            )
        rows[number] = (start, end, int(label))
    return rows
