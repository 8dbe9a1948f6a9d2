"""Predictors: a model folder of either kind applied to stored features, as the evaluate stage and
`python -m pipeline detect` use it.

A predictor, called with (store, videos, keep_scores=...), returns (proposals by video, predicted
class sets, kept score curves (T, C+1), seconds per position of each curve); `selection` says how
the weights were chosen (metrics.json's key).
One per model kind (model.json's `kind`, `stages.artifacts.model_kind`).
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import numpy as np
import torch

from detector.config import InferenceConfig
from detector.inference import detect_video, load_detector
from detector.model_io import VIDEO_SCORER, load_detector_weights, read_detector_meta
from detector.postprocess import merge_detections
from features.store import FeatureStore
from lacp.inference import ScoredVideo, predict, resampled_seconds, score_video, video_proposals
from lacp.model_io import load_model, read_model_meta
from lacp.proposals import DetectionConfig
from stages.artifacts import model_kind

__all__ = ["DetectorPredictor", "LacpPredictor", "coverage_scores", "load_predictor"]


class LacpPredictor:
    """LACP (`lacp.inference.predict` with the given detection settings): proposals from the fused
    CAS; the kept curves are the fused scores (T or N, C+1)."""

    def __init__(self, model_dir: Path, config: DetectionConfig, device: torch.device, *, classes: list[str]):
        self.model = load_model(model_dir, device=device)
        meta = read_model_meta(model_dir)
        self.num_segments = meta["num_segments"]  # 0 = every snippet; N = the training's fixed length
        self.selection = meta.get("selection", "final step")
        self.config, self.device = config, device
        if self.model.num_classes != len(classes):
            raise ValueError(
                f"{model_dir}: model has {self.model.num_classes} classes, annotations have {len(classes)}"
            )

    def score(self, features: np.ndarray, snippet_seconds: float) -> ScoredVideo:
        """The network's view of one video's (T, D) features (`lacp.inference.score_video`)."""
        return score_video(
            self.model,
            features,
            self.config,
            self.device,
            num_segments=self.num_segments,
            snippet_seconds=snippet_seconds,
        )

    def __call__(self, store: FeatureStore, videos: list[str], *, keep_scores: Collection[str] = ()):
        snippet_seconds = store.time_grid.seconds_per_snippet
        proposals, class_sets, scores = predict(
            self.model, store, videos, self.config, self.device, keep_scores=keep_scores, num_segments=self.num_segments
        )
        seconds = {
            vid: resampled_seconds(snippet_seconds, store[vid].shape[0], self.num_segments)
            if self.num_segments
            else snippet_seconds
            for vid in scores
        }
        return proposals, class_sets, scores, seconds


class DetectorPredictor:
    """The self-trained detector (`detector.inference`): its detections (Soft-NMS'd) with the given
    post-processing, its class probabilities fused with the video-level scores of the LACP model in
    the folder (`video_scores: lacp`, `stages.selftrain`; with the given LACP settings) before
    decoding (`own_class_weight`, `detector.inference.detect_video`), merged with that
    model's own proposals, scored alike, when `lacp_proposals` (`detector.postprocess.merge_detections`,
    the only step then that votes boundaries, `voting_tiou`); a
    video's predicted classes are those whose video score (else best detection score) is at least
    `class_threshold` (else the best one); the kept curves are `coverage_scores` (the detector has
    no CAS)."""

    def __init__(
        self,
        model_dir: Path,
        config: DetectionConfig,
        device: torch.device,
        *,
        classes: list[str],
        inference: InferenceConfig,
    ):
        meta, self.config, _ = read_detector_meta(model_dir)
        self.inference = inference
        # Boundary voting belongs to the last Soft-NMS: the merge's when LACP's proposals join.
        self.own_inference = (
            inference.model_copy(update={"voting_tiou": 0.0}) if inference.lacp_proposals else inference
        )
        if meta["classes"] != list(classes):
            raise ValueError(f"{model_dir}: model classes {meta['classes']} differ from the annotations' {classes}")
        self.model = load_detector(
            load_detector_weights(model_dir), config=self.config, num_classes=len(classes), device=str(device)
        )
        self.selection = meta.get("weights", "final step")
        self.class_threshold = config.class_threshold
        self.num_classes = len(classes)
        self.scorer = None  # LACP, for the video-level class scores the detections are fused with
        if meta["video_scores"] == "lacp":
            scorer_dir = Path(model_dir) / VIDEO_SCORER
            self.scorer = LacpPredictor(scorer_dir, config, device, classes=classes)
        else:
            needing = inference.settings_needing_lacp()
            if needing:
                raise ValueError(
                    f"{model_dir}: detection.detector {', '.join(needing)} need an LACP model, and the folder"
                    " holds none (selftrain.video_scores: none); set lacp_proposals: false and own_class_weight: 1"
                )

    def __call__(self, store: FeatureStore, videos: list[str], *, keep_scores: Collection[str] = ()):
        grid = store.time_grid
        proposals, class_sets, scores = {}, {}, {}
        for vid in videos:
            features = store[vid]  # (T, F)
            scored = None if self.scorer is None else self.scorer.score(features, grid.seconds_per_snippet)
            found = detect_video(
                self.model,
                features,
                grid=grid,
                config=self.config,
                inference=self.own_inference,
                class_scores=None if scored is None else scored.video_score,  # fused with LACP's (own_class_weight)
            )
            if scored is None:
                best = np.zeros(self.num_classes)  # (C,) best detection score per class
                for d in found:
                    best[d["label_index"]] = max(best[d["label_index"]], d["score"])
            else:
                best = scored.video_score  # (C,) LACP's video scores
                if self.inference.lacp_proposals:  # LACP's proposals, each score times its class's video score
                    lacp = _times_video_score(video_proposals(scored, self.scorer.config), best)
                    found = merge_detections(found, lacp, config=self.inference)
            proposals[vid] = found
            class_sets[vid] = {int(c) for c in np.flatnonzero(best >= self.class_threshold)} or {int(best.argmax())}
            if vid in keep_scores:
                scores[vid] = coverage_scores(found, features.shape[0], self.num_classes, grid.seconds_per_snippet)
        return proposals, class_sets, scores, dict.fromkeys(scores, grid.seconds_per_snippet)


def _times_video_score(detections: list[dict], video_score: np.ndarray) -> list[dict]:
    """Each detection with its score times the (C,) video score of its class."""
    return [{**d, "score": d["score"] * float(video_score[d["label_index"]])} for d in detections]


def coverage_scores(detections: list[dict], length: int, num_classes: int, snippet_seconds: float) -> np.ndarray:
    """(T, C+1) per snippet and class, the best score of a detection whose segment holds the
    snippet's centre; the last column (background) is 1 - the best of them (below 0 where a merged
    LACP proposal's OIC-based score passes 1), so 1 - background is the best over all classes."""
    curves = np.zeros((length, num_classes + 1))  # (T, C+1)
    centres = (np.arange(length) + 0.5) * snippet_seconds  # (T,)
    for d in detections:
        inside = (centres >= d["segment"][0]) & (centres <= d["segment"][1])
        curves[inside, d["label_index"]] = np.maximum(curves[inside, d["label_index"]], d["score"])
    curves[:, -1] = 1.0 - curves[:, :-1].max(axis=1)
    return curves


def load_predictor(
    model_dir: Path, config: DetectionConfig, device: torch.device, *, classes: list[str], inference: InferenceConfig
) -> LacpPredictor | DetectorPredictor:
    """The predictor of the model folder's kind (`stages.artifacts.model_kind`).

    Args:
        model_dir: a train or selftrain output.
        config: LACP's detection settings (the detector uses their class threshold, and the LACP
            model it fuses its scores with all of them).
        device: where the network runs.
        classes: the annotations' class names (the folder's must be the same).
        inference: the self-trained detector's post-processing (unused for an LACP folder).
    """
    if model_kind(model_dir) == "detector":
        return DetectorPredictor(model_dir, config, device, classes=classes, inference=inference)
    return LacpPredictor(model_dir, config, device, classes=classes)
