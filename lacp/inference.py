"""Inference: a trained `LACPNet` over stored features -> proposals and predicted classes.

Shared by the evaluate stage and the train stage's periodic test evaluation (`eval_every`).
Features are read one video at a time; only the proposals (and, for a few chosen videos,
the fused scores the timeline pictures need) are kept, so memory does not grow with the
number of videos.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import torch

from features.store import FeatureStore
from lacp.model import LACPNet
from lacp.proposals import generate_proposals, predicted_classes, video_scores

__all__ = ["DetectionConfig", "predict", "video_outputs"]


@dataclass(frozen=True)
class DetectionConfig:
    """How scores become detections; the evaluate stage's params (`EvaluateParams`) take
    their defaults from here.

    Attributes:
        r_act: top-k ratio of the video score (k = max(1, T // r_act)).
        class_threshold: video score a class needs to be predicted.
        nms_tiou: tIoU above which NMS suppresses a proposal.
        faithful: the released inference's quirks (docs/METHOD.md, "Inference").
    """

    r_act: int = 8
    class_threshold: float = 0.5
    nms_tiou: float = 0.7
    faithful: bool = True


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
        config: detection settings (any object with `DetectionConfig`'s attributes).
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
        proposals[vid] = generate_proposals(
            q,
            video_score=vscore,
            r_act=config.r_act,
            class_threshold=config.class_threshold,
            nms_tiou=config.nms_tiou,
            snippet_seconds=snippet_seconds,
            faithful=config.faithful,
        )
        class_sets[vid] = set(int(i) for i in predicted_classes(vscore, threshold=config.class_threshold))
        if vid in keep:
            scores[vid] = q
    return proposals, class_sets, scores
