"""Tests of lacp.proposals: hand-made score curves, both NMS modes, a loop reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.interpolate import interp1d

from lacp.metrics import evaluate_detection, load_ground_truth
from lacp.proposals import (
    ACT_THRESHOLDS,
    CAS_THRESHOLDS,
    DetectionConfig,
    generate_proposals,
    nms_1d,
    predicted_classes,
    to_results_json,
    upsample_linear,
    video_scores,
)

CURVE = [0.1, 0.2, 0.6, 0.8, 0.9, 0.7, 0.6, 0.3, 0.0, 0.55, 0.65, 0.4]
HAND = dict(video_score=np.array([0.9]), upsample=1, snippet_seconds=1.0)
LITERAL, FAITHFUL = DetectionConfig(faithful=False), DetectionConfig(faithful=True)


def as_tuples(proposals):
    return [(p["label_index"], round(p["score"], 10), *np.round(p["segment"], 10)) for p in proposals]


def test_threshold_grids():
    np.testing.assert_allclose(CAS_THRESHOLDS, np.arange(10) * 0.025)
    np.testing.assert_allclose(ACT_THRESHOLDS, 0.5 + np.arange(9) * 0.025)
    assert CAS_THRESHOLDS[-1] == 0.225 and ACT_THRESHOLDS[-1] == 0.7


def test_video_scores_top_k_mean_with_guard():
    p = np.array([[0.1, 0.9], [0.5, 0.2], [0.3, 0.4]] + [[0.0, 0.0]] * 13)  # T = 16 -> k = 2
    np.testing.assert_allclose(video_scores(p, r_act=8), [0.4, 0.65])
    np.testing.assert_allclose(video_scores(p[:3], r_act=8), [0.5, 0.9])  # T = 3 < 8 -> k = 1
    with pytest.raises(ValueError, match="shape"):
        video_scores(np.zeros((0, 2)), r_act=8)


def test_predicted_classes_threshold_or_argmax():
    assert predicted_classes(np.array([0.2, 0.6, 0.5])).tolist() == [1, 2]
    assert predicted_classes(np.array([0.1, 0.3, 0.2])).tolist() == [1]


def test_upsample_linear_interpolates_and_extrapolates():
    np.testing.assert_allclose(upsample_linear(np.array([0.0, 1.0, 3.0]), factor=2), [0, 0.5, 1, 2, 3, 4])
    np.testing.assert_allclose(upsample_linear(np.array([0.4]), factor=3), [0.4] * 3)
    a = np.random.default_rng(0).random((7, 3))
    reference = interp1d(np.arange(7), a, axis=0, kind="linear", fill_value="extrapolate")(np.arange(7 * 24) / 24)
    np.testing.assert_allclose(upsample_linear(a, factor=24), reference, atol=1e-12)


def test_cas_threshold_proposals_on_hand_curve():
    # Runs >= 0.5: A = [2..6] (L 5), B = [9..10] (L 2); video score 0.9 adds 0.18.
    # Default: A inner 0.72, outer {1: 0.2, 7: 0.3} -> OIC 0.47; B outer empty -> 0.6.
    # Faithful: A's left window is ceil(1.25) = 2 wide and the CAS is zeroed below 0.5,
    # so the outer {0, 1, 7} counts 0 -> 0.72; B's left window {8} is 0 too -> 0.6.
    q = np.stack([CURVE, np.ones(12)], axis=1)
    kwargs = dict(HAND, cas_thresholds=[0.5], act_thresholds=[])
    assert as_tuples(generate_proposals(q, config=LITERAL, **kwargs)) == [(0, 0.78, 9.0, 11.0), (0, 0.65, 2.0, 7.0)]
    assert as_tuples(generate_proposals(q, config=FAITHFUL, **kwargs)) == [(0, 0.9, 2.0, 7.0), (0, 0.78, 9.0, 11.0)]


def test_actionness_threshold_proposals_scored_on_class_cas():
    # Actionness 1 - q_bg >= 0.5 on [3..5]; inner CAS mean 0.8. Default: L 3 -> no outer -> 0.98.
    # Faithful: left window ceil(0.75) = 1 -> position 2 (CAS 0.6, not zeroed) -> 0.2 + 0.18.
    background = np.array([1, 1, 1, 0.4, 0.3, 0.3, 1, 1, 1, 1, 1, 1])
    q = np.stack([CURVE, background], axis=1)
    kwargs = dict(HAND, cas_thresholds=[], act_thresholds=[0.5])
    assert as_tuples(generate_proposals(q, config=LITERAL, **kwargs)) == [(0, 0.98, 3.0, 6.0)]
    assert as_tuples(generate_proposals(q, config=FAITHFUL, **kwargs)) == [(0, 0.38, 3.0, 6.0)]


def test_zero_threshold_needs_positive_values_and_nms_merges_duplicates():
    # Threshold 0 takes strictly positive positions: [1..3]; thresholds 0 and 0.2 give the same run
    # [1..3] twice (and 0.2 nothing else) -> NMS keeps one copy.
    q = np.stack([[0.0, 0.3, 0.4, 0.3, 0.0, 0.0], np.ones(6)], axis=1)
    out = generate_proposals(
        q,
        config=LITERAL,
        video_score=np.array([0.0]),
        upsample=1,
        snippet_seconds=0.5,
        cas_thresholds=[0.0, 0.2],
        act_thresholds=[],
    )
    assert as_tuples(out) == [(0, round(1 / 3, 10), 0.5, 2.0)]


def test_times_use_upsampled_step():
    q = np.zeros((4, 2))
    q[1:3, 0] = 1.0
    out = generate_proposals(
        q, config=LITERAL, video_score=np.array([1.0]), cas_thresholds=[0.5], act_thresholds=[], snippet_seconds=16 / 25
    )
    # Upsampled CAS >= 0.5 from x = 0.5 (i = 12) to x = 2.5 (i = 60); u = 16 / 600 s.
    assert len(out) == 1
    np.testing.assert_allclose(out[0]["segment"], [12 * 16 / 600, 61 * 16 / 600])


def test_nms_both_modes():
    segments = np.array([[0.0, 0.2], [0.1, 0.3], [5.0, 6.0]])
    scores = np.array([0.9, 0.8, 0.7])
    # True tIoU of the first two is 0.1 / 0.3 = 1/3 -> both kept. Recipe: lengths 1.2, overlap
    # 0.2 - 0.1 + 1 = 1.1 -> 1.1 / (2.4 - 1.1) = 0.846 >= 0.7 -> the second is suppressed.
    assert nms_1d(segments, scores, tiou=0.7).tolist() == [0, 1, 2]
    assert nms_1d(segments, scores, tiou=0.7, faithful=True).tolist() == [0, 2]
    nested = np.array([[0.0, 10.0], [1.0, 10.0], [20.0, 30.0]])
    assert nms_1d(nested, np.array([0.5, 0.9, 0.7]), tiou=0.7).tolist() == [1, 2]  # tIoU 0.9 suppressed
    assert nms_1d(np.zeros((0, 2)), np.zeros(0), tiou=0.7).tolist() == []


def reference_proposals(q, video_score, *, faithful):
    """Straightforward loop transcription of METHOD section 5 for comparison."""
    n_classes = q.shape[1] - 1
    pred = [c for c in range(n_classes) if video_score[c] >= 0.5] or [int(np.argmax(video_score))]
    x_new = np.arange(q.shape[0] * 24) / 24
    act = interp1d(np.arange(q.shape[0]), 1 - q[:, -1], fill_value="extrapolate")(x_new)
    u = 16 / (24 * 25)
    out = []
    for c in pred:
        cas = interp1d(np.arange(q.shape[0]), q[:, c], fill_value="extrapolate")(x_new)
        found = []
        for curve_for_runs, thresholds, zero in ((cas, CAS_THRESHOLDS, True), (act, ACT_THRESHOLDS, False)):
            for t in thresholds:
                scored = np.where(cas < t, 0, cas) if (faithful and zero) else cas
                positions = [i for i, v in enumerate(curve_for_runs) if v >= t and v > 0]
                runs = []
                for i in positions:
                    if runs and runs[-1][-1] == i - 1:
                        runs[-1].append(i)
                    else:
                        runs.append([i])
                for run in runs:
                    i0, i1, length = run[0], run[-1], len(run)
                    left = math.ceil(0.25 * length) if faithful else math.floor(0.25 * length)
                    outer = list(range(max(0, i0 - left), i0))
                    outer += list(range(i1 + 1, min(len(cas) - 1, i1 + math.floor(0.25 * length)) + 1))
                    oic = np.mean(scored[run]) - (np.mean(scored[outer]) if outer else 0.0)
                    found.append((oic + 0.2 * video_score[c], i0 * u, (i1 + 1) * u))
        found.sort(key=lambda f: -f[0])
        extra = 1.0 if faithful else 0.0
        kept = []
        for score, s, e in found:

            def iou(k, s=s, e=e, extra=extra):
                inter = max(0.0, min(e, k[2]) - max(s, k[1]) + extra)
                return inter / ((e - s + extra) + (k[2] - k[1] + extra) - inter)

            if all(iou(k) < 0.7 for k in kept):
                kept.append((score, s, e))
        out += [(c, round(score, 10), round(s, 10), round(e, 10)) for score, s, e in kept]
    return out


@pytest.mark.parametrize("faithful", [False, True])
def test_matches_loop_reference_on_random_video(faithful):
    rng = np.random.default_rng(11)
    t = 40
    smooth = lambda z: np.convolve(z, np.ones(5) / 5, mode="same")  # noqa: E731
    p = np.stack([smooth(rng.random(t) ** 3) * 1.6 for _ in range(3)], axis=1).clip(0, 1)
    background = 1 - smooth(rng.random(t)).clip(0, 1)
    q = np.concatenate([p * (1 - background[:, None]), background[:, None]], axis=1)
    scores = np.array([0.7, 0.2, 0.55])
    got = as_tuples(
        generate_proposals(q, config=DetectionConfig(faithful=faithful), video_score=scores, snippet_seconds=16 / 25)
    )
    assert len(got) > 10
    assert got == reference_proposals(q, scores, faithful=faithful)


def test_proposals_round_trip_through_metrics():
    q = np.zeros((25, 3))
    q[:, 2] = 1.0
    q[5:10, 0], q[5:10, 2] = 0.9, 0.05
    out = generate_proposals(q, config=LITERAL, video_score=np.array([0.9, 0.1]), snippet_seconds=16 / 25)
    results = to_results_json({"v": out}, classes=["A", "B"])
    assert {d["label"] for d in results["results"]["v"]} == {"A"}
    best = max(results["results"]["v"], key=lambda d: d["score"])
    gt = {"database": {"v": {"subset": "test", "annotations": [{"label": "A", "segment": best["segment"]}]}}}
    np.testing.assert_allclose(evaluate_detection(load_ground_truth(gt), results, tiou=[0.7]).map, [1.0])


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match=r"\(T, C\+1\)"):
        generate_proposals(np.zeros((5,)), config=LITERAL, snippet_seconds=1.0)
    with pytest.raises(ValueError, match="video_score"):
        generate_proposals(np.zeros((5, 3)), config=LITERAL, video_score=np.zeros(3), snippet_seconds=1.0)
