"""Each LACP loss on tiny tensors against numbers worked out by hand in the test."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lacp.batching import Batch, VideoSample, collate
from lacp.losses import (
    Spans,
    _sample_snippets,
    background_point_loss,
    feature_contrast,
    focal_bce,
    lacp_loss,
    oic,
    point_loss,
    pseudo_label_spans,
    score_contrast,
    trim_video_end,
    video_loss,
)
from lacp.model import fuse_scores

ln = math.log


def _spans(rows: list[tuple[int, int, int, int, bool]]) -> Spans:
    video, cls, start, end, action = (np.array(col) for col in zip(*rows))
    return Spans(video, cls, start, end, action.astype(bool))


def test_focal_bce_by_hand():
    q = torch.tensor([[[0.8, 0.3], [0.6, 0.1]]])  # (B=1, T=2, K=2)
    target = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    # snippet 0: 0.2^2 * -ln 0.8 + 0.3^2 * -ln 0.7; snippet 1 is weighted out
    expected = 0.04 * -ln(0.8) + 0.09 * -ln(0.7)
    got = focal_bce(q, target, torch.tensor([[1.0, 0.0]]))
    torch.testing.assert_close(got, torch.tensor([expected]))
    # both snippets: + 0.6^2 * -ln 0.4 + 0.9^2 * -ln 0.1
    expected += 0.36 * -ln(0.4) + 0.81 * -ln(0.1)
    torch.testing.assert_close(focal_bce(q, target, torch.ones(1, 2)), torch.tensor([expected]))


def test_video_loss_by_hand():
    got = video_loss(torch.tensor([[0.9, 0.2]]), torch.tensor([[1.0, 0.0]]))
    torch.testing.assert_close(got, torch.tensor([(-ln(0.9) - ln(0.8)) / 2]))


def test_point_loss_divides_by_labelled_snippets():
    q = torch.tensor([[[0.7, 0.2, 0.4], [0.5, 0.5, 0.5], [0.6, 0.9, 0.1]]])  # (1, 3, C+1=3)
    points = torch.tensor([[[True, False], [False, False], [True, True]]])
    # snippet 0: target (1, 0, 0); snippet 2: target (1, 1, 0) - two points, one snippet
    s0 = 0.09 * -ln(0.7) + 0.04 * -ln(0.8) + 0.16 * -ln(0.6)
    s2 = 0.16 * -ln(0.6) + 0.01 * -ln(0.9) + 0.01 * -ln(0.9)
    torch.testing.assert_close(point_loss(q, points), torch.tensor([(s0 + s2) / 2]))
    # a video without points contributes 0 (no division by zero)
    torch.testing.assert_close(point_loss(q, torch.zeros_like(points)), torch.zeros(1))


def test_background_point_loss_by_hand():
    q = torch.tensor([[[0.1, 0.2, 0.9], [0.5, 0.5, 0.5], [0.3, 0.0, 0.6]]])
    seeds = torch.tensor([[True, False, True]])
    s0 = 0.01 * -ln(0.9) + 0.04 * -ln(0.8) + 0.01 * -ln(0.9)
    s2 = 0.09 * -ln(0.7) + 0.0 + 0.16 * -ln(0.6)
    torch.testing.assert_close(background_point_loss(q, seeds), torch.tensor([(s0 + s2) / 2]))
    torch.testing.assert_close(background_point_loss(q, torch.zeros_like(seeds)), torch.zeros(1))


A = [0.1, 0.2, 0.9, 0.8, 0.7, 0.6, 0.3, 0.4, 0.5, 0.0]
OIC_SPANS = [(4, 5), (0, 3), (6, 9), (2, 6), (0, 9)]
OIC_EXPECTED = {
    # "released": ceil(L/4) outer snippets on the left, floor(L/4) on the right
    "released": [
        (0.7 + 0.6) / 2 - 0.8,  # L=2: left {3}, right none
        (0.1 + 0.2 + 0.9 + 0.8) / 4 - 0.7,  # L=4: left clipped away, right {4}
        (0.3 + 0.4 + 0.5 + 0.0) / 4 - 0.6,  # L=4: left {5}, right clipped away
        (0.9 + 0.8 + 0.7 + 0.6 + 0.3) / 5 - (0.1 + 0.2 + 0.4) / 3,  # L=5: {0, 1} and {7}
        sum(A) / 10,  # the whole video: empty outer counts as 0
    ],
    # "floor": floor(L/4) on each side
    "floor": [
        (0.7 + 0.6) / 2,  # L=2: no outer at all
        (0.1 + 0.2 + 0.9 + 0.8) / 4 - 0.7,
        (0.3 + 0.4 + 0.5 + 0.0) / 4 - 0.6,
        (0.9 + 0.8 + 0.7 + 0.6 + 0.3) / 5 - (0.2 + 0.4) / 2,  # L=5: {1} and {7}
        sum(A) / 10,
    ],
}


@pytest.mark.parametrize("outer", ["floor", "released"])
def test_oic_outer_regions_by_hand(outer):
    curve = torch.tensor(A)[None, :, None]  # (B=1, T=10, C=1)
    spans = _spans([(0, 0, s, e, True) for s, e in OIC_SPANS])
    expected = OIC_EXPECTED[outer]
    got = oic(curve, torch.tensor([10]), spans, on_complement=np.zeros(5, dtype=bool), outer=outer)
    torch.testing.assert_close(got, torch.tensor(expected))
    # on 1 - a the inner and outer means flip and the OIC changes sign, except where the
    # outer is empty: there it is 1 - mean(inner)
    got = oic(curve, torch.tensor([10]), spans, on_complement=np.ones(5, dtype=bool), outer=outer)
    empty_outer = {"floor": {0, 4}, "released": {4}}[outer]
    flipped = [1 - e if i in empty_outer else -e for i, e in enumerate(expected)]
    torch.testing.assert_close(got, torch.tensor(flipped))


def test_oic_clips_outer_to_the_video_length_not_the_batch():
    curve = torch.tensor([[0.2, 0.4, 0.6, 0.8], [0.9, 0.1, 9.0, 9.0]])[..., None]
    spans = _spans([(1, 0, 0, 1, True)])  # video 1 has 2 valid snippets
    got = oic(curve, torch.tensor([4, 2]), spans, on_complement=np.zeros(1, dtype=bool))
    torch.testing.assert_close(got, torch.tensor([0.5]))  # outer empty, padding unused


@pytest.mark.parametrize("outer", ["floor", "released"])
def test_oic_gradient_matches_direct_slicing(outer):
    gen = torch.Generator().manual_seed(0)
    values = torch.rand(1, 12, 1, generator=gen, requires_grad=True)
    rows = [(0, 0, s, e, True) for s, e in [(0, 2), (3, 3), (4, 10), (11, 11), (1, 7), (2, 7)]]
    spans = _spans(rows)
    oic(values, torch.tensor([12]), spans, on_complement=np.zeros(len(rows), dtype=bool), outer=outer).sum().backward()
    fast = values.grad.clone()
    values.grad = None
    total = 0
    a = values[0, :, 0]
    for _, _, s, e, _ in rows:
        length = e - s + 1
        left = math.ceil(length / 4) if outer == "released" else length // 4
        lo, hi = max(0, s - left), min(11, e + length // 4)
        outer_values = torch.cat([a[lo:s], a[e + 1 : hi + 1]])
        total = total + a[s : e + 1].mean() - (outer_values.mean() if len(outer_values) else 0)
    total.backward()
    torch.testing.assert_close(fast, values.grad)


def test_pseudo_label_spans_runs_of_present_classes():
    dense = np.array([[0, 1, 1], [1, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=np.uint8)
    spans = pseudo_label_spans([dense, None], np.array([[1, 1, 1], [1, 0, 0]]))
    # class 1 is constant (no label change): no instance; video 1 has no pseudo labels
    got = list(zip(spans.cls.tolist(), spans.start.tolist(), spans.end.tolist(), spans.action.tolist()))
    assert got == [
        (0, 0, 0, False),
        (0, 1, 2, True),
        (0, 3, 3, False),
        (2, 0, 0, True),
        (2, 1, 1, False),
        (2, 2, 2, True),
        (2, 3, 3, False),
    ]
    assert spans.video.tolist() == [0] * 7
    absent = pseudo_label_spans([dense], np.array([[0, 1, 0]]))  # labels gate the classes
    assert len(absent) == 0


@pytest.mark.parametrize("outer", ["floor", "released"])
def test_score_contrast_by_hand(outer):
    qc = [0.2, 0.3, 0.9, 0.7, 0.4, 0.1]
    q = torch.zeros(2, 6, 2)
    q[0, :, 0] = torch.tensor(qc)
    dense = np.array([0, 0, 1, 1, 0, 0], dtype=np.uint8)[:, None]
    spans = pseudo_label_spans([dense, None], np.array([[1], [1]]))
    # spans of length 2: "floor" has no outer snippets; "released" has one on the left:
    # action [2, 3]: outer {1}; background [0, 1]: none (clipped); [4, 5]: outer {3}
    released = outer == "released"
    act = 1 - ((0.9 + 0.7) / 2 - (0.3 if released else 0.0))
    bkg_a = 1 - ((1 - 0.2) + (1 - 0.3)) / 2
    bkg_b = 1 - (((1 - 0.4) + (1 - 0.1)) / 2 - ((1 - 0.7) if released else 0.0))
    bkg = (bkg_a + bkg_b) / 2
    loss_act, loss_bkg, loss_score = score_contrast(q, torch.tensor([6, 6]), spans, outer=outer)
    torch.testing.assert_close(loss_act, torch.tensor([act, 0.0]))
    torch.testing.assert_close(loss_bkg, torch.tensor([bkg, 0.0]))
    torch.testing.assert_close(loss_score, torch.tensor([(act + bkg) ** 2, 0.0]))


def test_trim_video_end_shortens_runs_that_reach_the_last_snippet():
    # video 0 (T = 6): background 0..1, action 2..5 (reaches the end); video 1 (T = 4, in a
    # batch padded to 6): action 0..2, background 3 (a one-snippet run at the end)
    dense_0 = np.array([0, 0, 1, 1, 1, 1], dtype=np.uint8)[:, None]
    dense_1 = np.array([1, 1, 1, 0], dtype=np.uint8)[:, None]
    spans = pseudo_label_spans([dense_0, dense_1], np.array([[1], [1]]))
    trimmed = trim_video_end(spans, np.array([6, 4]))
    got = list(zip(trimmed.video.tolist(), trimmed.start.tolist(), trimmed.end.tolist(), trimmed.action.tolist()))
    # the action ends at 4 instead of 5; the background run {3} of video 1 is gone
    assert got == [(0, 0, 1, False), (0, 2, 4, True), (1, 0, 2, True)]


def test_video_end_released_scores_the_shortened_run_with_the_last_snippet_outside():
    qc = [0.1, 0.2, 0.8, 0.9, 0.6, 0.3]
    q = torch.zeros(1, 6, 2)
    q[0, :, 0] = torch.tensor(qc)
    dense = np.array([0, 0, 1, 1, 1, 1], dtype=np.uint8)[:, None]
    spans = trim_video_end(pseudo_label_spans([dense], np.array([[1]])), np.array([6]))
    loss_act, _, _ = score_contrast(q, torch.tensor([6]), spans, outer="released")
    # action 2..4 (L = 3): outer ceil(3/4) = 1 on the left ({1}), floor(3/4) = 0 on the right
    inner = (0.8 + 0.9 + 0.6) / 3
    torch.testing.assert_close(loss_act, torch.tensor([1 - (inner - 0.2)]))
    spans_ceil = trim_video_end(pseudo_label_spans([dense], np.array([[1]])), np.array([6]))
    loss_ceil, _, _ = score_contrast(q, torch.tensor([6]), spans_ceil, outer="ceil")
    # ceil: one outer snippet each side: {1} and the dropped last snippet {5}
    torch.testing.assert_close(loss_ceil, torch.tensor([1 - (inner - (0.2 + 0.3) / 2)]))


def _feature_case() -> tuple[torch.Tensor, np.ndarray]:
    """Embeddings (1, 5, 3) and pseudo labels (5, 2) with deterministic sampling (L <= 2)."""
    emb = torch.tensor([[[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 0, 2]]])
    dense = np.array([[1, 1], [1, 0], [0, 1], [1, 0], [1, 1]], dtype=np.uint8)
    return emb, dense


def _contrast_by_hand(vectors: list[list[float]], action: list[bool]) -> float:
    unit = [np.array(v) / np.linalg.norm(v) for v in vectors]
    sim = [
        [0.0 if i == j else math.exp(float(unit[i] @ unit[j]) / 0.1) for j in range(len(unit))]
        for i in range(len(unit))
    ]
    logs = [ln(sum(s for s, a in zip(row, action) if a) / sum(row)) for row, a_i in zip(sim, action) if a_i]
    return -sum(logs) / len(logs)


def test_feature_contrast_by_hand():
    emb, dense = _feature_case()
    # class 0: action [0,1], background [2], action [3,4]. A span of length 2 samples
    # (s, s, s+1) (thirds [s,s) widened, [s,s+1), [s+1,s+2)): vectors (2 e0 + e1) / 3, e2,
    # (2 e3 + e4) / 3
    loss0 = _contrast_by_hand([[2, 1, 0], [0, 0, 1], [2, 2, 2]], [True, False, True])
    spans = pseudo_label_spans([dense[:, :1]], np.array([[1]]))
    got = feature_contrast(emb, spans, rng=np.random.default_rng(0))
    torch.testing.assert_close(got, torch.tensor([loss0]))

    # class 1: action [0], background [1], action [2], background [3], action [4]
    loss1 = _contrast_by_hand([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 0, 2]], [True, False, True, False, True])
    spans = pseudo_label_spans([dense], np.array([[1, 1]]))
    default = feature_contrast(emb, spans, rng=np.random.default_rng(0))
    torch.testing.assert_close(default, torch.tensor([(loss0 + loss1) / 2]))
    quirk = feature_contrast(emb, spans, rng=np.random.default_rng(0), last_class_only=True)
    torch.testing.assert_close(quirk, torch.tensor([loss1]))


def test_feature_contrast_needs_two_action_spans():
    emb = torch.rand(2, 6, 4, generator=torch.Generator().manual_seed(0))
    dense = np.array([0, 1, 1, 1, 0, 0], dtype=np.uint8)[:, None]
    spans = pseudo_label_spans([dense, dense], np.array([[1], [1]]))
    got = feature_contrast(emb, spans, rng=np.random.default_rng(0))
    torch.testing.assert_close(got, torch.zeros(2))


def test_sampling_draws_one_snippet_per_third():
    spans = _spans([(0, 0, 10, 18, True), (0, 0, 0, 3, True), (0, 0, 5, 5, True)])
    rng = np.random.default_rng(0)
    draws = np.stack([_sample_snippets(spans, rng) for _ in range(300)])  # (300, 3, 3)
    # L=9: thirds {10,11,12}, {13,14,15}, {16,17,18}; L=4: {0}, {1}, {2,3}; L=1: {5}
    expected = [[{10, 11, 12}, {13, 14, 15}, {16, 17, 18}], [{0}, {1}, {2, 3}], [{5}, {5}, {5}]]
    for i, parts in enumerate(expected):
        for k, values in enumerate(parts):
            assert set(draws[:, i, k].tolist()) == values


def _tiny_batch() -> tuple[dict, Batch]:
    gen = torch.Generator().manual_seed(0)
    samples = []
    for i, length in enumerate([6, 4]):
        points = np.zeros((length, 2), dtype=bool)
        points[1, i] = True
        samples.append(VideoSample(f"v{i}", np.zeros((length, 3), np.float32), points, np.eye(2, dtype=np.float32)[i]))
    batch = collate(samples)
    cas = torch.randn(2, 6, 3, generator=gen)
    p = torch.sigmoid(cas)
    out = {"p": p, "q": fuse_scores(p), "embeddings": torch.rand(2, 6, 4, generator=gen)}
    return out, batch


def test_lacp_loss_total_is_weighted_sum_and_completeness_gates():
    out, batch = _tiny_batch()
    seeds = torch.zeros(2, 6, dtype=torch.bool)
    seeds[0, 4] = seeds[1, 3] = True
    pseudo = [
        np.array([[1, 0], [1, 0], [0, 0], [1, 0], [1, 0], [0, 0]], np.uint8),
        np.array([[0, 1], [0, 1], [0, 0], [0, 1]], np.uint8),
    ]
    terms = lacp_loss(out, batch, seeds, pseudo, rng=np.random.default_rng(0), r_act=8)
    weighted = terms.vid + 0.5 * terms.point + terms.bkg_point + terms.score + terms.feat
    torch.testing.assert_close(terms.total, weighted)
    assert terms.score > 0 and terms.feat > 0
    other = lacp_loss(out, batch, seeds, pseudo, rng=np.random.default_rng(0), lambdas=(2.0, 0.0, 0.0, 3.0, 0.0))
    torch.testing.assert_close(other.total, 2 * terms.vid + 3 * terms.score)

    before_search = lacp_loss(out, batch, seeds, None, rng=np.random.default_rng(0))
    assert before_search.score == 0 and before_search.feat == 0
    torch.testing.assert_close(before_search.total, terms.vid + 0.5 * terms.point + terms.bkg_point)
    score_only = lacp_loss(out, batch, seeds, pseudo, rng=np.random.default_rng(0), feature_contrast_on=False)
    assert score_only.feat == 0
    torch.testing.assert_close(score_only.score, terms.score)
    with pytest.raises(ValueError, match="lambdas"):
        lacp_loss(out, batch, seeds, None, rng=np.random.default_rng(0), lambdas=(1.0,))


@pytest.mark.parametrize("outer", ["floor", "released"])
def test_score_contrast_agrees_with_the_search_objective(outer):
    """The losses score the search's spans with the search's OIC: the mean over a class's
    spans of OIC equals the objective `lacp.search` maximised."""
    search = pytest.importorskip("lacp.search")
    rng = np.random.default_rng(0)
    q_c = rng.random(40)
    action = np.zeros(40, dtype=bool)
    action[[8, 9, 25]] = True
    background = np.zeros(40, dtype=bool)
    background[[2, 17, 18, 35]] = True
    sequence = search.search_class(q_c, action, background, outer=outer)
    dense = sequence.dense()[:, None]
    spans = pseudo_label_spans([dense], np.array([[1]]))
    values = oic(
        torch.tensor(q_c, dtype=torch.float64)[None, :, None],
        torch.tensor([40]),
        spans,
        on_complement=~spans.action,
        outer=outer,
    )
    assert len(spans) == len(sequence.labels)
    assert float(values.mean()) == pytest.approx(sequence.objective, abs=1e-12)


def test_absent_class_score_topk_pushes_down_the_peaks_of_absent_classes():
    # one video, T = 8, r_act 8 -> k = 1; class 0 present, class 1 absent with one peak of 0.9
    p = torch.full((1, 8, 3), 0.1)
    p[0, 2, 0] = 0.8
    p[0, 5, 1] = 0.9
    out = {"p": p, "q": fuse_scores(p), "embeddings": torch.zeros(1, 8, 2)}
    sample = VideoSample("v", np.zeros((8, 4), np.float32), np.zeros((8, 2), bool), np.array([1.0, 0.0], np.float32))
    batch = collate([sample])
    seeds = torch.zeros(1, 8, dtype=torch.bool)
    mean = lacp_loss(out, batch, seeds, None, rng=np.random.default_rng(0))
    topk = lacp_loss(out, batch, seeds, None, rng=np.random.default_rng(0), absent_class_score="topk")
    absent_mean = (0.9 + 7 * 0.1) / 8  # 0.2: the peak is averaged away
    torch.testing.assert_close(mean.vid, torch.tensor((-ln(0.8) - ln(1 - absent_mean)) / 2))
    torch.testing.assert_close(topk.vid, torch.tensor((-ln(0.8) - ln(1 - 0.9)) / 2))
