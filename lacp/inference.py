"""Inference: a trained `LACPNet` over stored features -> proposals and predicted classes.

Shared by the evaluate stage and the train stage's periodic test evaluation (`eval_every`).
Features are read one video at a time; only the proposals (and, for a few chosen videos,
the fused scores the timeline pictures need) are kept, so memory does not grow with the
number of videos.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import torch

from features.store import FeatureStore
from lacp.model import LACPNet
from lacp.proposals import DetectionConfig, generate_proposals, predicted_classes, video_scores

__all__ = ["DetectionConfig", "predict", "video_outputs"]


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

    Returns:
        (proposals by video, predicted class indices by video, fused scores (T, C+1) of the
        `keep_scores` videos).
    """
    proposals, class_sets, scores = {}, {}, {}
    keep = set(keep_scores)
    c = model.num_classes
    snippet_seconds = store.time_grid.seconds_per_snippet
    for vid in videos:
        p, q = video_outputs(model, store[vid], device)  # (T, C+1) each
        vscore = video_scores(p[:, :c], r_act=config.r_act)  # (C,)
        proposals[vid] = generate_proposals(q, config=config, snippet_seconds=snippet_seconds, video_score=vscore)
        class_sets[vid] = set(int(i) for i in predicted_classes(vscore, threshold=config.class_threshold))
        if vid in keep:
            scores[vid] = q
    return proposals, class_sets, scores
