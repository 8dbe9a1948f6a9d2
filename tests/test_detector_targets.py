"""Detector targets: the pyramid's locations, regression ranges, and label assignment on a
hand-made video; instances from seconds to snippets."""

from __future__ import annotations

import numpy as np
import pytest

from detector.batching import instances_to_snippets, pad_features
from detector.config import regression_ranges
from detector.targets import assign_targets, pyramid_points
from features.timegrid import TimeGrid

ONE_SECOND = TimeGrid(fps=16.0, snippet=16, stride=16)  # one snippet per second: exact arithmetic


def test_pyramid_points_are_the_centres_of_each_levels_cells():
    centres, strides = pyramid_points(8, num_levels=3)
    # level 0: t + 0.5; level 1 (stride 2): cells [0, 2), [2, 4), ... centred at 1, 3, ...; level 2: 2, 6
    np.testing.assert_array_equal(centres, [0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5, 1, 3, 5, 7, 2, 6])
    np.testing.assert_array_equal(strides, [1] * 8 + [2] * 4 + [4] * 2)
    with pytest.raises(ValueError, match="multiple of 4"):
        pyramid_points(10, num_levels=3)


def test_regression_ranges_double_per_level_and_the_last_is_open():
    np.testing.assert_array_equal(regression_ranges(num_levels=4, base=4.0), [[0, 4], [4, 8], [8, 16], [16, np.inf]])
    np.testing.assert_array_equal(regression_ranges(num_levels=1, base=4.0), [[0, np.inf]])


def test_assignment_on_a_hand_made_video():
    """T = 16, 2 levels (strides 1 and 2; ranges [0, 4) and [4, inf)), centre radius 1.5.

    A = [2, 5] class 0 (centre 3.5): level 0 region (max(2, 3.5 - 1.5), min(5, 3.5 + 1.5)) = (2, 5)
        holds centres 2.5, 3.5, 4.5, farthest boundaries 2.5, 1.5, 2.5 < 4: positive at t = 2, 3, 4.
        Level 1 region (2, 5) holds centre 3 only, farthest boundary 2 < 4: not in [4, inf).
    B = [6, 16] class 1 (given as 6-17.5 s, clipped to T = 16; centre 11): level 0 region
        (9.5, 12.5) holds 10.5 and 11.5, farthest boundaries 5.5 and 5.5: not in [0, 4).
        Level 1 region (max(6, 11 - 3), min(16, 11 + 3)) = (8, 14) holds centres 9, 11, 13
        (locations 4, 5, 6 of level 1 = 20, 21, 22 overall), farthest 7, 5, 7: all in [4, inf);
        targets (9 - 6, 16 - 9) / 2 = (1.5, 3.5), (2.5, 2.5), (3.5, 1.5).
    C = [3, 4] class 2 (centre 3.5): level 0 region (3, 4) holds 3.5 (distances 0.5, 0.5), where
        A is eligible too: the shorter C wins location 3.
    """
    rows = instances_to_snippets(
        [(2.0, 5.0, 0), (6.0, 17.5, 1), (3.0, 4.0, 2)], length=16, grid=ONE_SECOND, num_classes=3, video_id="hand"
    )
    np.testing.assert_array_equal(rows, [[2, 5, 0], [6, 16, 1], [3, 4, 2]])
    targets = assign_targets(rows, length=16, num_levels=2, range_base=4.0, center_radius=1.5)
    assert targets.labels.shape == (16 + 8,)
    positive = np.flatnonzero(targets.positive)
    np.testing.assert_array_equal(positive, [2, 3, 4, 20, 21, 22])
    np.testing.assert_array_equal(targets.labels[positive], [0, 2, 0, 1, 1, 1])
    np.testing.assert_array_equal(
        targets.regression[positive], [[0.5, 2.5], [0.5, 0.5], [2.5, 0.5], [1.5, 3.5], [2.5, 2.5], [3.5, 1.5]]
    )
    assert (targets.labels[~targets.positive] == -1).all()
    assert (targets.regression[~targets.positive] == 0).all()


def test_a_video_without_instances_is_all_background():
    targets = assign_targets(np.zeros((0, 3)), length=8, num_levels=2, range_base=4.0, center_radius=1.5)
    assert (targets.labels == -1).all() and targets.regression.shape == (12, 2)


def test_bad_instances_name_the_video():
    with pytest.raises(ValueError, match="video 'v7' instance 0.*after the video's end"):
        instances_to_snippets([(20.0, 21.0, 0)], length=16, grid=ONE_SECOND, num_classes=2, video_id="v7")
    with pytest.raises(ValueError, match="video 'v7' instance 1.*start_s < end_s"):
        instances_to_snippets([(1.0, 2.0, 0), (3.0, 3.0, 1)], length=16, grid=ONE_SECOND, num_classes=2, video_id="v7")
    with pytest.raises(ValueError, match=r"video 'v7' instance 0.*\[0, 2\)"):
        instances_to_snippets([(1.0, 2.0, 2)], length=16, grid=ONE_SECOND, num_classes=2, video_id="v7")


def test_padding_rounds_up_to_the_coarsest_stride():
    features, mask = pad_features([np.ones((5, 2), np.float32), np.full((9, 2), 2, np.float32)], multiple=4)
    assert features.shape == (2, 12, 2)
    np.testing.assert_array_equal(mask.sum(dim=1).numpy(), [5, 9])
    assert features[0, 5:].abs().sum() == 0 and features[1, 9:].abs().sum() == 0
    assert (features[1, :9] == 2).all()
