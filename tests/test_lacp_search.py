"""Tests of lacp.search: transcripts, exact DP vs brute force, beam vs exact, parallel runs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lacp.search import (
    SearchInputError,
    _prune,
    build_transcript,
    class_background_seeds,
    dense_pseudo_labels,
    search_class,
    search_videos,
)


def _mask(length: int, indices: list[int]) -> np.ndarray:
    mask = np.zeros(length, dtype=bool)
    mask[indices] = True
    return mask


def _runs(labels: np.ndarray) -> list[tuple[int, int, int]]:
    """(label, start, end inclusive) of every run of equal labels."""
    runs = []
    start = 0
    for t in range(1, len(labels) + 1):
        if t == len(labels) or labels[t] != labels[start]:
            runs.append((int(labels[start]), start, t - 1))
            start = t
    return runs


def _naive_oic(curve: np.ndarray, start: int, end: int, outer: str) -> float:
    """OIC written the way the released recipe writes it (int() of float bounds)."""
    length = end - start + 1
    last = len(curve) - 1
    if outer == "released":
        left, right = max(0, int(start - 0.25 * length)), min(last, int(end + 0.25 * length))
    else:
        left, right = max(0, start - int(0.25 * length)), min(last, end + int(0.25 * length))
    outside = list(range(left, start)) + list(range(end + 1, right + 1))
    outer_mean = float(np.mean(curve[outside])) if outside else 0.0
    return float(np.mean(curve[start : end + 1])) - outer_mean


def _naive_objective(q_c: np.ndarray, labels: np.ndarray, outer: str) -> float:
    scores = [_naive_oic(q_c if label == 1 else 1.0 - q_c, start, end, outer) for label, start, end in _runs(labels)]
    return float(np.mean(scores))


def _seed_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    return [(start, end) for label, start, end in _runs(mask.astype(int)) if label == 1]


def _is_valid(labels: np.ndarray, action_c: np.ndarray, background_c: np.ndarray) -> bool:
    """Independent statement of the transcript rules for a dense labelling."""
    background_c = background_c & ~action_c
    if not (labels[action_c] == 1).all() or not (labels[background_c] == 0).all():
        return False
    seed_runs = _seed_runs(action_c)
    spans = [(start, end) for label, start, end in _runs(labels) if label == 1]
    if len(spans) != len(seed_runs):
        return False
    if any(not (s <= rs and re <= e) for (s, e), (rs, re) in zip(spans, seed_runs)):
        return False
    first_action, last_action = seed_runs[0][0], seed_runs[-1][1]
    starts_background = bool(background_c[:first_action].any())
    ends_background = bool(background_c[last_action + 1 :].any())
    return (labels[0] == 0) == starts_background and (labels[-1] == 0) == ends_background


def _brute_force(q_c: np.ndarray, action_c: np.ndarray, background_c: np.ndarray, outer: str) -> float:
    length = len(q_c)
    free = np.flatnonzero(~action_c & ~background_c)
    best = -np.inf
    for bits in itertools.product((0, 1), repeat=len(free)):
        labels = action_c.astype(int)
        labels[free] = bits
        if _is_valid(labels, action_c, background_c):
            best = max(best, _naive_objective(q_c, labels, outer))
    assert best > -np.inf, f"no valid labelling of length {length}"
    return best


def _random_video(rng: np.random.Generator, length: int, classes: int) -> tuple[np.ndarray, ...]:
    q = rng.uniform(size=(length, classes + 1))
    action = rng.uniform(size=(length, classes)) < 0.15
    background = (rng.uniform(size=length) < 0.2) & ~action.any(axis=1)
    return q, action, background


def _smooth_video(rng: np.random.Generator, length: int, classes: int) -> tuple[np.ndarray, ...]:
    kernel = np.ones(9) / 9
    raw = rng.normal(size=(length + 8, classes + 1))
    logits = np.stack([np.convolve(raw[:, c], kernel, mode="valid") for c in range(classes + 1)], axis=1)
    q = 1.0 / (1.0 + np.exp(-4.0 * logits))
    action = np.zeros((length, classes), dtype=bool)
    for point in rng.choice(length, size=rng.integers(1, 8), replace=False):
        action[point : point + rng.integers(1, 4), rng.integers(classes)] = True
    background = (rng.uniform(size=length) < 0.08) & ~action.any(axis=1)
    return q, action, background


# --- transcripts -------------------------------------------------------------------------


def test_transcript_stretches_first_and_last_action_span_without_background_seeds() -> None:
    transcript = build_transcript(_mask(12, [3, 4, 8]), _mask(12, [6]))
    assert transcript.labels.tolist() == [1, 0, 1]
    assert transcript.lo.tolist() == [0, 5, 7]
    assert transcript.hi.tolist() == [0, 6, 8]


def test_transcript_starts_and_ends_with_background_when_seeds_lie_outside() -> None:
    transcript = build_transcript(_mask(12, [5, 6]), _mask(12, [1, 2, 10]))
    assert transcript.labels.tolist() == [0, 1, 0]
    assert transcript.lo.tolist() == [0, 3, 7]  # background must cover 0..2, action 5..6
    assert transcript.hi.tolist() == [0, 5, 10]


def test_transcript_seedless_gap_between_action_runs_gets_a_free_background_span() -> None:
    transcript = build_transcript(_mask(10, [2, 7]), _mask(10, []))
    assert transcript.labels.tolist() == [1, 0, 1]
    assert transcript.lo.tolist() == [0, 3, 4]
    assert transcript.hi.tolist() == [0, 6, 7]


def test_transcript_merges_adjacent_seeds_and_background_span_covers_all_gap_seeds() -> None:
    transcript = build_transcript(_mask(20, [2, 3, 4, 15]), _mask(20, [7, 11]))
    assert transcript.labels.tolist() == [1, 0, 1]
    assert transcript.lo.tolist() == [0, 5, 12]
    assert transcript.hi.tolist() == [0, 7, 15]


def test_other_class_seeds_are_background_and_own_seeds_take_precedence() -> None:
    action = np.zeros((20, 3), dtype=bool)
    action[[3, 15], 0] = True
    action[10, 1] = True
    action[3, 2] = True  # shares snippet 3 with class 0
    background = _mask(20, [3])  # a pseudo background point on an action seed
    seeds_0 = class_background_seeds(action, background, 0)
    assert np.flatnonzero(seeds_0).tolist() == [10]
    transcript_0 = build_transcript(action[:, 0], seeds_0)
    assert transcript_0.labels.tolist() == [1, 0, 1]
    assert transcript_0.lo.tolist() == [0, 4, 11]
    assert transcript_0.hi.tolist() == [0, 10, 15]
    transcript_1 = build_transcript(action[:, 1], class_background_seeds(action, background, 1))
    assert transcript_1.labels.tolist() == [0, 1, 0]
    assert transcript_1.lo.tolist() == [0, 4, 11]
    assert transcript_1.hi.tolist() == [0, 10, 15]


def test_transcript_needs_an_action_seed() -> None:
    with pytest.raises(SearchInputError, match="no action seed"):
        build_transcript(_mask(5, []), _mask(5, [1]))


# --- objective and search -----------------------------------------------------------------


@pytest.mark.parametrize("method", ["exact", "beam"])
def test_obvious_action_span_is_found(method: str) -> None:
    q = np.full((16, 2), 0.1)
    q[5:10, 0] = 0.9
    action = np.zeros((16, 1), dtype=bool)
    action[7, 0] = True
    sequence = search_class(q[:, 0], action[:, 0], _mask(16, [1, 14]), method=method)
    assert sequence.starts.tolist() == [0, 5, 10]
    # every span: mean 0.9 inside, 0.1 on its one outer snippet per side
    assert sequence.objective == pytest.approx(0.8)
    labels = dense_pseudo_labels(q, action, _mask(16, [1, 14]), method=method)
    assert np.flatnonzero(labels[:, 0]).tolist() == [5, 6, 7, 8, 9]


@pytest.mark.parametrize(("outer", "expected"), [("floor", 0.95 / 3), ("released", 0.25 / 3)])
@pytest.mark.parametrize("method", ["exact", "beam"])
def test_outer_region_conventions_by_hand(method: str, outer: str, expected: float) -> None:
    q_c = np.arange(10) / 10.0
    # spans are forced: background 0..3, action 4..6, background 7..9
    # floor: 0.25 (0.85 - 0.6) + 0.5 (no outer) + 0.2 (no outer)
    # released: left outer ceil(L / 4): 0.25 + (0.5 - 0.3) + (0.2 - 0.4)
    sequence = search_class(q_c, _mask(10, [4, 5, 6]), _mask(10, [3, 7]), method=method, outer=outer)
    assert sequence.starts.tolist() == [0, 4, 7]
    assert sequence.objective == pytest.approx(expected)


@pytest.mark.parametrize("outer", ["floor", "released"])
def test_exact_matches_brute_force_on_small_instances(outer: str) -> None:
    rng = np.random.default_rng(7 if outer == "floor" else 8)
    checked = 0
    for _ in range(60):
        length = int(rng.integers(2, 12))
        q, action, background = _random_video(rng, length, classes=2)
        for c in np.flatnonzero(action.any(axis=0)):
            seeds = class_background_seeds(action, background, c)
            exact = search_class(q[:, c], action[:, c], seeds, outer=outer)
            labels = exact.dense()
            assert _is_valid(labels, action[:, c], seeds)
            assert exact.objective == pytest.approx(_naive_objective(q[:, c], labels, outer), abs=1e-12)
            assert exact.objective == pytest.approx(_brute_force(q[:, c], action[:, c], seeds, outer), abs=1e-12)
            beam = search_class(q[:, c], action[:, c], seeds, method="beam", budget=3, outer=outer)
            assert beam.objective <= exact.objective + 1e-12
            checked += 1
    assert checked > 50


def test_exact_scores_at_least_the_beam_on_longer_curves() -> None:
    rng = np.random.default_rng(3)
    strictly_better = 0
    for length in (50, 120, 300, 80, 200, 60):
        q, action, background = _smooth_video(rng, length, classes=3)
        for c in np.flatnonzero(action.any(axis=0)):
            seeds = class_background_seeds(action, background, c)
            exact = search_class(q[:, c], action[:, c], seeds)
            beam = search_class(q[:, c], action[:, c], seeds, method="beam")
            assert _is_valid(beam.dense(), action[:, c], seeds)
            assert beam.objective == pytest.approx(_naive_objective(q[:, c], beam.dense(), "floor"), abs=1e-12)
            assert exact.objective >= beam.objective - 1e-12
            strictly_better += exact.objective > beam.objective + 1e-9
    assert strictly_better >= 1  # the beam is an approximation


def test_prune_drops_low_scores_keeps_the_best_and_respects_the_budget() -> None:
    scores = np.array([0.05, np.inf, 0.3, 0.2, 0.3])
    assert _prune(scores, budget=2, threshold=0.1).tolist() == [1, 2]
    assert _prune(scores, budget=10, threshold=0.1).tolist() == [1, 2, 4, 3]
    assert _prune(np.array([0.01, 0.05, -1.0]), budget=25, threshold=0.1).tolist() == [1]


# --- videos -------------------------------------------------------------------------------


def test_dense_labels_follow_seeds_and_leave_unseeded_classes_empty() -> None:
    rng = np.random.default_rng(11)
    q, action, background = _smooth_video(rng, 90, classes=4)
    action[:, 3] = False
    labels = dense_pseudo_labels(q.astype(np.float32), action, background)
    assert labels.dtype == np.uint8 and labels.shape == (90, 4)
    assert not labels[:, 3].any()
    for c in range(3):
        assert (labels[action[:, c], c] == 1).all()
        assert (labels[class_background_seeds(action, background, c), c] == 0).all()


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_parallel_search_equals_serial(context: str) -> None:
    rng = np.random.default_rng(5)
    items = [_smooth_video(rng, int(rng.integers(30, 90)), classes=3) for _ in range(7)]
    serial = search_videos(items, workers=1)
    parallel = search_videos(items, workers=2, context=context)
    assert len(parallel) == len(items)
    for one, other, (q, _, _) in zip(serial, parallel, items):
        assert one.shape == (q.shape[0], 3)
        np.testing.assert_array_equal(one, other)
    direct = [dense_pseudo_labels(q.astype(np.float32), a, b) for q, a, b in items]
    for one, other in zip(serial, direct):
        np.testing.assert_array_equal(one, other)


def test_bad_inputs_name_the_item_and_the_expectation() -> None:
    q = np.full((6, 3), 0.5)
    action = np.zeros((6, 2), dtype=bool)
    background = np.zeros(6, dtype=bool)
    with pytest.raises(SearchInputError, match=r"item 1: action_seeds has shape \(6, 3\), expected \(6, 2\)"):
        search_videos([(q, action, background), (q, np.zeros((6, 3), dtype=bool), background)])
    with pytest.raises(SearchInputError, match="bg_seeds must be bool"):
        dense_pseudo_labels(q, action, np.full(6, 0.5))
    with pytest.raises(SearchInputError, match="non-finite"):
        dense_pseudo_labels(np.full((6, 3), np.nan), action, background)
    with pytest.raises(SearchInputError, match="method='greedy'"):
        dense_pseudo_labels(q, action, background, method="greedy")


def test_floor_truncates_a_six_snippet_action_that_released_and_ceil_cover() -> None:
    # a 6-snippet action (4..9) peaking in its middle, one point at 6, background seeds at 1, 14
    q_c = np.full(16, 0.2)
    q_c[4:10] = [0.7, 0.8, 0.9, 0.9, 0.8, 0.7]
    q_c[[3, 10]] = 0.0
    point, background = _mask(16, [6]), _mask(16, [1, 14])
    found = {
        outer: search_class(q_c, point, background, method="exact", outer=outer)
        for outer in ("floor", "released", "ceil")
    }
    # floor: a 2-snippet span has no outer region, so its plain mean 0.9 wins
    assert found["floor"].starts.tolist() == [0, 6, 8]
    assert found["floor"].objective == pytest.approx(0.6792, abs=1e-4)
    # released: ceil(7/4) = 2 snippets on the left, floor(7/4) = 1 on the right -> 3..9
    assert found["released"].starts.tolist() == [0, 3, 10]
    # ceil: the action exactly
    assert found["ceil"].starts.tolist() == [0, 4, 10]
    labels = dense_pseudo_labels(
        q_c[:, None].repeat(2, axis=1), point[:, None], background, method="exact", outer="ceil"
    )
    assert np.flatnonzero(labels[:, 0]).tolist() == [4, 5, 6, 7, 8, 9]
