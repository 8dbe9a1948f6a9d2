"""Detections of one video (`detector.inference.detect_video`): the detector's own class
probabilities, or fused with another model's video-level class scores (`own_class_weight`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from detector.config import DetectorConfig, InferenceConfig
from detector.inference import detect_video, load_detector
from detector.model import DetectorNet
from features.timegrid import RELEASED_GRID

NUM_CLASSES = 3
VIDEO_SCORES = np.array([0.5, 0.25, 0.0])  # (C,) another model's class scores


def _detect(class_scores=None, own_class_weight: float = 1.0) -> list[dict]:
    """An untrained detector's detections of random features, nothing dropped and no voting: the
    scores are the candidates' decayed by Soft-NMS alone."""
    torch.manual_seed(0)
    config = DetectorConfig(feature_dim=6, embed_dim=16, num_levels=3, dropout=0.0, device="cpu", seed=0)
    weights = DetectorNet(config=config, num_classes=NUM_CLASSES).state_dict()
    model = load_detector(weights, config=config, num_classes=NUM_CLASSES, device="cpu")
    features = np.random.default_rng(0).standard_normal((40, 6)).astype(np.float32)  # (T, F)
    inference = InferenceConfig(
        score_threshold=0.0,
        pre_nms_topk=10_000,
        min_length=0.0,
        min_score=0.0,
        max_segments=10_000,
        voting_tiou=0.0,
        own_class_weight=own_class_weight,
    )
    return detect_video(
        model, features, grid=RELEASED_GRID, config=config, inference=inference, class_scores=class_scores
    )


def _of_class(detections: list[dict], label: int) -> list[dict]:
    return [d for d in detections if d["label_index"] == label]


def test_weight_one_scales_each_classs_own_detections_by_its_score():
    """own_class_weight 1: class c's detections are the detector's own of class c, segment for
    segment, each score times VIDEO_SCORES[c] (Soft-NMS's decay does not depend on the scale);
    class 2 (score 0, not above score_threshold 0) has none."""
    own = _detect()
    fused = _detect(VIDEO_SCORES, own_class_weight=1.0)
    assert {d["label_index"] for d in own} == set(range(NUM_CLASSES)) and _of_class(fused, 2) == []
    for label in (0, 1):
        want, got = _of_class(own, label), _of_class(fused, label)
        assert len(got) > 10
        assert [d["segment"] for d in got] == [d["segment"] for d in want]
        np.testing.assert_allclose(
            [d["score"] for d in got], [VIDEO_SCORES[label] * d["score"] for d in want], rtol=1e-12, atol=0
        )


def test_weight_zero_scores_every_class_by_the_locations_best_probability():
    """own_class_weight 0: class 0's detections are class 1's, segment for segment, at exactly twice
    the score; class 0's best is half the detector's own best detection (the video's highest class
    probability, which no Soft-NMS decays)."""
    own = _detect()
    fused = _detect(VIDEO_SCORES, own_class_weight=0.0)
    first, second = _of_class(fused, 0), _of_class(fused, 1)
    assert len(first) > 10 and _of_class(fused, 2) == []
    assert [d["segment"] for d in first] == [d["segment"] for d in second]
    np.testing.assert_allclose([d["score"] for d in first], [2 * d["score"] for d in second], rtol=1e-12, atol=0)
    assert first[0]["score"] == pytest.approx(0.5 * own[0]["score"], rel=1e-12)
