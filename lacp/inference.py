"""Inference: a trained `LACPNet` over stored features -> proposals and predicted classes.

Shared by the evaluate stage and the train stage's periodic test evaluation (`eval_every`).
Features are read one video at a time; only the proposals (and, for a few chosen videos,
the fused scores the timeline pictures need) are kept, so memory does not grow with the
number of videos.

Fixed-length models (`num_segments` N > 0 in model.json, `lacp.model_io`): a network trained on
sequences resampled to N snippets (`train.num_segments`) is run on each video resampled the
same way, by the training's uniform rule (`lacp.batching.segment_positions` without a random
generator: the first snippet of each of the N bins of T/N snippets), so its temporal
convolutions meet the time scale they were trained on (the BaS-Net lineage's ActivityNet
protocol). Position i of the resampled grid stands for bin i, which spans T/N snippets, so the
proposals are made with `snippet_seconds * T / N` seconds per position (`resampled_seconds`)
and land at the video's seconds. N = 0 runs the network on every snippet.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import torch

from features.store import FeatureStore
from lacp.batching import segment_positions
from lacp.model import LACPNet
from lacp.proposals import (
    Candidates,
    DetectionConfig,
    candidate_proposals,
    generate_proposals,
    predicted_classes,
    video_scores,
)

__all__ = [
    "DetectionConfig",
    "ScoredVideo",
    "predict",
    "resample_for_inference",
    "resampled_seconds",
    "score_video",
    "video_candidates",
    "video_outputs",
    "video_proposals",
]


def resampled_seconds(snippet_seconds: float, length: int, num_segments: int) -> float:
    """Seconds per position of a video of `length` snippets seen at `num_segments` positions.

    Args:
        snippet_seconds: seconds per snippet of the features' time grid.
        length: T, the video's snippets.
        num_segments: N (0 = every snippet: the grid's own seconds).

    Returns:
        snippet_seconds * T / N (snippet_seconds itself when N is 0).
    """
    if not num_segments:
        return snippet_seconds
    return snippet_seconds * length / num_segments


def resample_for_inference(features: np.ndarray, num_segments: int, snippet_seconds: float) -> tuple[np.ndarray, float]:
    """A video's features as the network sees them at test time, and their seconds per position.

    Args:
        features: (T, D) on the full grid.
        num_segments: N > 0: the first snippet of each of the N bins (the training's "uniform"
            rule, `lacp.batching.segment_positions`); 0: unchanged.
        snippet_seconds: seconds per snippet of the full grid.

    Returns:
        ((N, D) or the unchanged (T, D) features, `resampled_seconds`).
    """
    if not num_segments:
        return features, snippet_seconds
    length = features.shape[0]
    positions = segment_positions(length, num_segments)  # uniform: no generator
    return features[positions], resampled_seconds(snippet_seconds, length, num_segments)


@torch.no_grad()
def video_outputs(model: LACPNet, features: np.ndarray, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """(p, q) of one video: (T, C+1) sigmoid scores and fused scores."""
    x = torch.from_numpy(features).to(device)[None]  # (1, T, D)
    out = model(x)
    return out["p"][0].float().cpu().numpy(), out["q"][0].float().cpu().numpy()


def predict(
    model: LACPNet,
    store: FeatureStore,
    videos: list[str],
    config: DetectionConfig,
    device: torch.device,
    *,
    keep_scores: Collection[str] = (),
    num_segments: int = 0,
) -> tuple[dict[str, list[dict]], dict[str, set[int]], dict[str, np.ndarray]]:
    """Proposals and predicted class sets of every video, fused scores of the chosen ones.

    Args:
        model: the trained network (in eval mode).
        store: the feature store the videos are read from.
        videos: the videos to predict.
        config: detection settings (`lacp.proposals.DetectionConfig`, or any object with its
            attributes such as the evaluate stage's params).
        device: where the network runs.
        keep_scores: videos whose fused scores are returned too.
        num_segments: the model's training sequence length (model.json, `lacp.model_io`):
            0 = every snippet; N > 0 = each video resampled to N snippets (module docstring).

    Returns:
        (proposals by video, segments in the video's seconds; predicted class indices by
        video; fused scores of the `keep_scores` videos on the grid the network saw: (T, C+1),
        or (N, C+1) with `num_segments`, `resampled_seconds` apart).
    """
    proposals, class_sets, scores = {}, {}, {}
    keep = set(keep_scores)
    snippet_seconds = store.time_grid.seconds_per_snippet
    for vid in videos:
        scored = score_video(
            model, store[vid], config, device, num_segments=num_segments, snippet_seconds=snippet_seconds
        )
        proposals[vid] = video_proposals(scored, config)
        class_sets[vid] = {int(i) for i in predicted_classes(scored.video_score, threshold=config.class_threshold)}
        if vid in keep:
            scores[vid] = scored.q
    return proposals, class_sets, scores


@dataclass(frozen=True)
class ScoredVideo:
    """The network's view of one video.

    Attributes:
        q: (T or N, C+1) fused scores on the grid the network saw.
        video_score: (C,) video-level class scores (top-k mean of the sigmoid scores).
        seconds: seconds per position of `q` (`resampled_seconds`).
    """

    q: np.ndarray
    video_score: np.ndarray
    seconds: float


def score_video(
    model: LACPNet,
    features: np.ndarray,
    config: DetectionConfig,
    device: torch.device,
    *,
    num_segments: int,
    snippet_seconds: float,
) -> ScoredVideo:
    """Run the network on one video's (T, D) features as `predict` does (resampled to
    `num_segments` when the model was trained so); what the proposal step starts from."""
    features, seconds = resample_for_inference(features, num_segments, snippet_seconds)  # (T or N, D)
    p, q = video_outputs(model, features, device)  # (T or N, C+1) each
    return ScoredVideo(q=q, video_score=video_scores(p[:, : model.num_classes], r_act=config.r_act), seconds=seconds)


def video_proposals(scored: ScoredVideo, config: DetectionConfig) -> list[dict]:
    """The proposals of one video after NMS (`lacp.proposals.generate_proposals`), made from the
    network outputs `score_video` gave: what `predict` returns for it."""
    return generate_proposals(scored.q, config=config, snippet_seconds=scored.seconds, video_score=scored.video_score)


def video_candidates(scored: ScoredVideo, config: DetectionConfig) -> Candidates:
    """Every proposal of one video before NMS (`lacp.proposals.candidate_proposals`), made from
    the network outputs `score_video` gave and the same settings as `predict`'s detections."""
    return candidate_proposals(scored.q, config=config, snippet_seconds=scored.seconds, video_score=scored.video_score)
