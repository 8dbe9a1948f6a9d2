"""lacp.score_analysis and lacp.proposals.candidate_proposals: the scoring-variants analysis on
hand-made proposals with known tIoU and scores (exact values)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lacp.proposals import DetectionConfig, candidate_proposals, generate_proposals
from lacp.score_analysis import ScoredProposals, best_tiou, correlations, pearson, spearman

CURVE = [0.1, 0.2, 0.6, 0.8, 0.9, 0.7, 0.6, 0.3, 0.0, 0.55, 0.65, 0.4]
HAND = dict(video_score=np.array([0.9]), upsample=1, snippet_seconds=1.0, cas_thresholds=[0.5], act_thresholds=[])


def test_candidates_carry_inner_and_outer_of_each_run() -> None:
    # runs >= 0.5: A = [2..6] inner 0.72, outer {1: 0.2, 7: 0.3} = 0.25; B = [9..10] inner 0.6, no outer
    q = np.stack([CURVE, np.ones(12)], axis=1)
    found = candidate_proposals(q, config=DetectionConfig(faithful=False), **HAND)
    np.testing.assert_allclose(found.segments, [[2.0, 7.0], [9.0, 11.0]])
    np.testing.assert_allclose(found.inner, [0.72, 0.6])
    np.testing.assert_allclose(found.outer, [0.25, 0.0])
    np.testing.assert_allclose(found.oic, [0.47, 0.6])
    np.testing.assert_allclose(found.score, [0.47 + 0.18, 0.6 + 0.18])  # + 0.2 x video score 0.9
    assert found.label_index.tolist() == [0, 0]


@pytest.mark.parametrize("faithful", [False, True])
def test_generate_proposals_is_nms_over_the_candidates(faithful: bool) -> None:
    rng = np.random.default_rng(3)
    q = np.clip(rng.random((40, 3)) * np.linspace(0.2, 1.0, 40)[:, None], 0, 1)  # (T, C+1)
    config = DetectionConfig(faithful=faithful, class_threshold=0.0)
    found = candidate_proposals(q, config=config, snippet_seconds=0.64)
    kept = generate_proposals(q, config=config, snippet_seconds=0.64)
    assert len(found.score) > len(kept) > 0
    pairs = {(c, round(s, 12)) for c, s in zip(found.label_index.tolist(), found.score.tolist())}
    assert all((p["label_index"], round(p["score"], 12)) in pairs for p in kept)


def test_best_tiou_takes_the_same_class_only() -> None:
    segments = np.array([[0.0, 2.0], [5.0, 6.0], [0.0, 2.0]])
    labels = np.array([0, 0, 1])
    gt = np.array([[1.0, 3.0], [5.0, 7.0], [0.0, 2.0]])
    gt_labels = np.array([0, 0, 2])
    # [0, 2] vs [1, 3]: 1 / 3; [5, 6] vs [5, 7]: 1 / 2; class 1 has no instance
    np.testing.assert_allclose(best_tiou(segments, labels, gt, gt_labels), [1 / 3, 1 / 2, 0.0])
    assert best_tiou(segments, labels, np.zeros((0, 2)), np.zeros(0)).tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="3 segments with 2 labels"):
        best_tiou(segments, labels[:2], gt, gt_labels)


def test_pearson_and_spearman_exact() -> None:
    assert pearson([1, 2, 3], [2, 4, 7]) == pytest.approx(15 / math.sqrt(228), abs=1e-15)
    # ties share their mean rank: x ranks 1, 2.5, 2.5, 4 against 1, 3, 2, 4
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(math.sqrt(0.9), abs=1e-15)
    assert spearman([3, 1, 2], [30, 10, 20]) == pytest.approx(1.0)
    assert math.isnan(pearson([1, 1, 1], [1, 2, 3])) and math.isnan(spearman([1], [2]))


def test_correlations_overall_and_per_class() -> None:
    proposals = ScoredProposals(
        label_index=np.array([0, 0, 0, 1, 1]),
        tiou=np.array([0.1, 0.5, 0.9, 0.2, 0.8]),
        inner=np.array([0.5, 0.4, 0.6, 0.3, 0.3]),
        oic=np.array([0.0, 0.2, 0.4, 0.1, 0.5]),
    )
    out = correlations(proposals, classes=["a", "b"])
    assert out["proposals"] == 5
    assert out["pearson_oic"] == pytest.approx(pearson(proposals.oic, proposals.tiou))
    assert out["per_class"]["a"]["pearson_oic"] == pytest.approx(1.0)  # 0, .2, .4 against .1, .5, .9
    assert out["per_class"]["a"]["spearman_inner"] == pytest.approx(0.5)  # ranks 2, 1, 3 against 1, 2, 3
    assert out["per_class"]["b"]["proposals"] == 2 and math.isnan(out["per_class"]["b"]["pearson_inner"])


def test_overlapping_correlations_leave_out_the_proposals_at_tiou_zero() -> None:
    proposals = ScoredProposals(
        label_index=np.zeros(5, dtype=np.int64),
        tiou=np.array([0.0, 0.0, 0.2, 0.5, 0.8]),
        inner=np.array([0.9, 0.1, 0.3, 0.2, 0.4]),
        oic=np.array([0.5, 0.0, 0.1, 0.2, 0.3]),
    )
    out = correlations(proposals, classes=["a"])
    assert out["overlapping"] == 3 and out["per_class"]["a"]["overlapping"] == 3
    assert out["pearson_oic_overlapping"] == pytest.approx(pearson([0.1, 0.2, 0.3], [0.2, 0.5, 0.8]))
    assert out["pearson_oic_overlapping"] == pytest.approx(1.0)
    assert out["spearman_inner_overlapping"] == pytest.approx(0.5)  # ranks 2, 1, 3 against 1, 2, 3
    assert out["pearson_inner"] == pytest.approx(pearson(proposals.inner, proposals.tiou))
