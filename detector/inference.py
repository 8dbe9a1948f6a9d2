"""Detections of a trained detector, in seconds, in the proposals format of `lacp.proposals`.

Each video runs alone (padded to a multiple of the coarsest stride; padding never changes a
video's outputs, `detector.model`), in eval mode, through `detector.postprocess`; segments
in snippets become seconds on the features' time grid (snippet t spans
[t, t + 1) * `TimeGrid.seconds_per_snippet`). The result per video is a list of
`{"label_index", "score", "segment": [start_s, end_s]}`, what `lacp.proposals.to_results_json`
turns into the ActivityNet results that `lacp.metrics.evaluate_detection` scores.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from core.device import resolve_device
from detector.batching import pad_features, read_features
from detector.config import DetectorConfig, InferenceConfig
from detector.model import DetectorNet
from detector.postprocess import decode_candidates, video_detections
from detector.targets import pyramid_points
from features.timegrid import TimeGrid
from lacp.batching import FeatureSource, feature_getter

__all__ = ["detect_video", "load_detector", "predict_detector"]


def load_detector(
    state_dict: Mapping[str, torch.Tensor], *, config: DetectorConfig, num_classes: int, device: str = "auto"
) -> DetectorNet:
    """A trained detector in eval mode.

    Args:
        state_dict: its weights (`detector.trainer.DetectorTrainResult.state_dict`).
        config: the sizes it was trained with.
        num_classes: C.
        device: "auto" | "cpu" | "cuda" | "cuda:N".

    Returns:
        The `DetectorNet` on that device.

    Raises:
        RuntimeError: weights of other sizes (torch's message names the tensors).
    """
    model = DetectorNet(config=config, num_classes=num_classes)
    model.load_state_dict(state_dict)
    return model.to(resolve_device(device)).eval()


@torch.no_grad()
def detect_video(
    model: DetectorNet,
    features: np.ndarray,
    *,
    grid: TimeGrid,
    config: DetectorConfig,
    inference: InferenceConfig,
    class_scores: np.ndarray | None = None,
) -> list[dict]:
    """Detections of one video.

    Args:
        model: the detector in eval mode (`load_detector`).
        features: (T, F) float32 features of the video.
        grid: the features' time grid.
        config: the detector's sizes (num_levels).
        inference: decoding and Soft-NMS settings.
        class_scores: (C,) another model's video-level class scores: each location's score for
            class c becomes best^(1 - w) * p_c^w * class_scores[c], with p_c its probability of c,
            best its highest and w `inference.own_class_weight` (0: the detector localises and the
            other model classifies); None: the detector's own probabilities.

    Returns:
        `{"label_index": int, "score": float, "segment": [start_s, end_s]}` by descending score.
    """
    length = features.shape[0]
    padded, mask = pad_features([features], multiple=config.max_stride)  # (1, T', F), (1, T')
    device = next(model.parameters()).device
    out = model(padded.to(device), mask.to(device))
    centres, strides = pyramid_points(padded.shape[1], num_levels=config.num_levels)  # (N,), (N,)
    valid = out.mask[0].cpu().numpy()  # (N,)
    logits = out.cls_logits[0].double().cpu().numpy()[valid]  # (n, C)
    distances = out.regression[0].double().cpu().numpy()[valid]  # (n, 2)
    probs = 1.0 / (1.0 + np.exp(-logits))  # (n, C)
    if class_scores is not None:
        weight = inference.own_class_weight
        best = probs.max(axis=1, keepdims=True)  # (n, 1)
        probs = best ** (1.0 - weight) * probs**weight * np.asarray(class_scores, dtype=np.float64)[None, :]  # (n, C)
    candidates = decode_candidates(
        probs,
        distances,
        centres[valid],
        strides[valid],
        np.log2(strides[valid]).astype(np.int64),
        length=length,
        config=inference,
    )
    labels, scores, segments = video_detections(*candidates, config=inference)
    seconds = segments * grid.seconds_per_snippet  # (k, 2)
    return [
        {"label_index": int(c), "score": float(s), "segment": [float(a), float(b)]}
        for c, s, (a, b) in zip(labels, scores, seconds)
    ]


def predict_detector(
    *,
    state_dict: Mapping[str, torch.Tensor],
    video_ids: Sequence[str],
    get_features: FeatureSource,
    num_classes: int,
    grid: TimeGrid,
    config: DetectorConfig,
    inference: InferenceConfig,
    device: str = "auto",
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, list[dict]]:
    """Detections of a list of videos (features read one video at a time).

    Args:
        state_dict: the trained weights.
        video_ids: the videos.
        get_features: video_id -> (T, F) features (a mapping such as `features.store.FeatureStore`,
            or a callable).
        num_classes: C.
        grid: the features' time grid.
        config: the detector's sizes.
        inference: decoding and Soft-NMS settings.
        device: where the network runs.
        on_progress: called with (videos done, videos) after each video.

    Returns:
        video id -> its detections (`detect_video`), in the order of `video_ids`.

    Raises:
        ValueError: bad features (naming the video).
    """
    model = load_detector(state_dict, config=config, num_classes=num_classes, device=device)
    fetch = feature_getter(get_features)
    detections: dict[str, list[dict]] = {}
    for done, video_id in enumerate(video_ids, start=1):
        features = read_features(fetch, video_id, feature_dim=config.feature_dim)
        detections[video_id] = detect_video(model, features, grid=grid, config=config, inference=inference)
        if on_progress is not None:
            on_progress(done, len(video_ids))
    return detections
