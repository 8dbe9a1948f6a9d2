"""Pseudo background / action points on hand-made background curves, one rule at a time."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lacp.seeds import batch_background_seeds, select_seeds


def _points(length: int, num_classes: int, marks: list[tuple[int, int]]) -> np.ndarray:
    points = np.zeros((length, num_classes), dtype=bool)
    for t, c in marks:
        points[t, c] = True
    return points


def _rows(act: np.ndarray) -> dict[int, list[int]]:
    """{snippet: classes} of the non-empty rows."""
    return {int(t): np.flatnonzero(act[t]).tolist() for t in np.flatnonzero(act.any(axis=1))}


def test_every_rule_on_one_curve():
    # points: class 0 at 5, class 1 at 12, class 0 at 13 (adjacent), classes 0+1 at 17
    points = _points(20, 2, [(5, 0), (12, 1), (13, 0), (17, 0), (17, 1)])
    q_bg = np.array(
        [
            0.97,
            0.50,
            0.96,
            0.05,
            0.02,  # 0-4 left: seeds 0, 2 -> bg 0..2; walk takes 4, 3
            0.30,  # 5 point
            0.08,
            0.50,
            0.96,
            0.30,
            0.97,
            0.09,  # 6-11 gap: seeds 8, 10 -> bg 8..10; walks 6 | 11
            0.40,
            0.40,  # 12, 13 adjacent points: nothing between
            0.10,
            0.60,
            0.96,  # 14-16 gap: one seed -> only argmax 16; walk 14
            0.50,  # 17 point of two classes
            0.03,
            0.90,  # 18-19 right: no seed -> argmax 19 to the end
        ]
    )
    bg, act = select_seeds(q_bg, points)
    assert np.flatnonzero(bg).tolist() == [0, 1, 2, 8, 9, 10, 16, 19]
    assert _rows(act) == {
        3: [0],
        4: [0],
        5: [0],  # walk left from the first point, stopped by bg 2
        6: [0],  # walk right from 5 stops at 7 (q_bg 0.5)
        11: [1],  # walk left from 12 stops at bg 10
        12: [1],
        13: [0],
        14: [0],  # q_bg 0.10 <= 0.1 passes; 15 fails
        17: [0, 1],
        18: [0, 1],  # a two-class point passes both classes on
    }


def test_left_without_seed_and_right_with_seeds():
    points = _points(10, 2, [(4, 1)])
    q_bg = np.array([0.3, 0.8, 0.6, 0.05, 0.5, 0.04, 0.5, 0.99, 0.2, 0.96])
    bg, act = select_seeds(q_bg, points)
    # left: no q_bg >= 0.95 -> up to and including argmax (1); right: from the first seed (7)
    assert np.flatnonzero(bg).tolist() == [0, 1, 7, 8, 9]
    assert _rows(act) == {3: [1], 4: [1], 5: [1]}


def test_gap_without_seed_and_points_on_both_ends():
    points = _points(10, 3, [(0, 2), (9, 0)])
    q_bg = np.array([0.5, 0.05, 0.04, 0.50, 0.70, 0.60, 0.30, 0.02, 0.01, 0.5])
    bg, act = select_seeds(q_bg, points)
    assert np.flatnonzero(bg).tolist() == [4]  # argmax of the gap; no left or right region
    assert _rows(act) == {0: [2], 1: [2], 2: [2], 7: [0], 8: [0], 9: [0]}


def test_single_seed_in_gap_is_the_argmax_and_ties_go_left():
    points = _points(8, 1, [(0, 0), (7, 0)])
    q_bg = np.array([0.0, 0.5, 0.8, 0.3, 0.8, 0.2, 0.5, 0.0])
    bg, _ = select_seeds(q_bg, points)
    assert np.flatnonzero(bg).tolist() == [2]
    q_bg[5] = 0.99  # exactly one seed: only it
    bg, _ = select_seeds(q_bg, points)
    assert np.flatnonzero(bg).tolist() == [5]


def test_walk_stops_at_background_even_with_low_score():
    # the left region's last seed is at 2; snippets 0, 1 have low q_bg but are background now
    points = _points(5, 1, [(4, 0)])
    q_bg = np.array([0.01, 0.01, 0.95, 0.02, 0.3])
    bg, act = select_seeds(q_bg, points)
    assert np.flatnonzero(bg).tolist() == [0, 1, 2]
    assert _rows(act) == {3: [0], 4: [0]}


def test_thresholds_are_keyword_arguments():
    points = _points(6, 1, [(0, 0)])
    q_bg = np.array([0.1, 0.2, 0.3, 0.92, 0.93, 0.5])
    bg, act = select_seeds(q_bg, points)
    assert np.flatnonzero(bg).tolist() == [4, 5]  # no seed >= 0.95: argmax 4 to the end
    assert _rows(act) == {0: [0]}
    bg, act = select_seeds(q_bg, points, bg_threshold=0.9, act_threshold=0.25)
    assert np.flatnonzero(bg).tolist() == [3, 4, 5]
    assert _rows(act) == {0: [0], 1: [0]}


def test_no_points_gives_no_seeds_and_shapes_are_checked():
    bg, act = select_seeds(np.full(4, 0.99), np.zeros((4, 2), dtype=bool))
    assert not bg.any() and not act.any()
    with pytest.raises(ValueError, match="q_bg"):
        select_seeds(np.zeros(4), np.zeros((5, 2), dtype=bool))


def test_inputs_are_not_modified():
    points = _points(6, 1, [(2, 0)])
    q_bg = np.array([0.99, 0.0, 0.5, 0.0, 0.0, 0.99])
    saved = points.copy()
    select_seeds(q_bg, points)
    np.testing.assert_array_equal(points, saved)


def test_batch_background_seeds_match_per_video_and_skip_padding():
    q = torch.full((2, 6, 3), 0.5)
    q[0, :, -1] = torch.tensor([0.99, 0.2, 0.3, 0.5, 0.97, 0.1])
    q[1, :4, -1] = torch.tensor([0.3, 0.2, 0.1, 0.96])
    q[1, 4:, -1] = 0.99  # padding: never a seed
    points = torch.zeros(2, 6, 2, dtype=torch.bool)
    points[0, 2, 0] = points[1, 1, 1] = True
    seeds = batch_background_seeds(q, points, torch.tensor([6, 4]))
    for b, length in enumerate([6, 4]):
        alone, _ = select_seeds(q[b, :length, -1].numpy(), points[b, :length].numpy())
        np.testing.assert_array_equal(seeds[b, :length].numpy(), alone)
    assert seeds.tolist() == [
        [True, False, False, False, True, True],  # seed 0; from seed 4
        [True, False, False, True, False, False],
    ]  # argmax 0; seed 3
