"""lacp.batching's fixed-length resampling (train.num_segments): which snippets each bin picks and
where the point labels go."""

from __future__ import annotations

import numpy as np
import pytest

from lacp.batching import VideoItem, VideoSample, load_sample, resample_sample, segment_bins, segment_positions

D, C = 4, 3


def _sample(length: int, points: dict[int, int]) -> VideoSample:
    """Features whose every value is the snippet index (so a picked row names its snippet)."""
    features = np.repeat(np.arange(length, dtype=np.float32)[:, None], D, axis=1)  # (T, D)
    matrix = np.zeros((length, C), dtype=bool)
    for snippet, cls in points.items():
        matrix[snippet, cls] = True
    return VideoSample("v", features, matrix, np.ones(C, np.float32))


def test_bins_partition_a_long_video_and_repeat_in_a_short_one():
    start, stop = segment_bins(10, 4)  # floor(i * 10 / 4) = 0, 2, 5, 7, 10
    assert start.tolist() == [0, 2, 5, 7] and stop.tolist() == [2, 5, 7, 10]
    start, stop = segment_bins(3, 5)  # floor(i * 3 / 5) = 0, 0, 1, 1, 2, 3: one snippet per bin
    assert start.tolist() == [0, 0, 1, 1, 2] and stop.tolist() == [1, 1, 2, 2, 3]
    start, stop = segment_bins(6, 6)
    assert start.tolist() == list(range(6)) and stop.tolist() == list(range(1, 7))
    with pytest.raises(ValueError, match="T >= 1 snippets and N >= 1"):
        segment_bins(0, 4)


def test_uniform_picks_each_bins_first_snippet():
    assert segment_positions(10, 4).tolist() == [0, 2, 5, 7]
    assert segment_positions(3, 5).tolist() == [0, 0, 1, 1, 2]
    assert segment_positions(750, 750).tolist() == list(range(750))
    assert segment_positions(100, 50).tolist() == list(range(0, 100, 2))


def test_random_picks_one_snippet_inside_each_bin_and_is_seeded():
    draws = np.stack([segment_positions(10, 4, rng=np.random.default_rng([5, k])) for k in range(400)])  # (400, 4)
    for i, allowed in enumerate([{0, 1}, {2, 3, 4}, {5, 6}, {7, 8, 9}]):
        assert set(draws[:, i].tolist()) == allowed  # every snippet of the bin, never the next bin's first
    counts = np.bincount(draws[:, 1], minlength=5)[2:5]
    assert counts.min() > 100  # about 400 / 3 each: uniform inside the bin
    again = segment_positions(10, 4, rng=np.random.default_rng([5, 0]))
    assert again.tolist() == draws[0].tolist()
    assert segment_positions(3, 5, rng=np.random.default_rng(0)).tolist() == [0, 0, 1, 1, 2]  # nothing to draw


def test_points_move_to_the_bin_of_their_snippet():
    sample = _sample(10, {3: 1, 9: 0, 0: 2})
    positions = np.array([1, 4, 5, 9])  # bin 1 (snippets 2-4) picked snippet 4, not the point's 3
    out = resample_sample(sample, positions)
    assert out.features[:, 0].tolist() == [1.0, 4.0, 5.0, 9.0]  # the picked snippets' features
    assert sorted(zip(*np.nonzero(out.points))) == [(0, 2), (1, 1), (3, 0)]  # snippet 0 -> 0, 3 -> 1, 9 -> 3
    assert out.labels.tolist() == [1.0, 1.0, 1.0] and out.video_id == "v"


def test_points_of_a_stretched_short_video_land_on_every_copy():
    out = resample_sample(_sample(3, {1: 0}), segment_positions(3, 5))
    assert out.features[:, 0].tolist() == [0.0, 0.0, 1.0, 1.0, 2.0]
    assert out.points[:, 0].tolist() == [False, False, True, True, False]


def test_points_from_source_frames_through_load_sample():
    """A point at source frame f lands in snippet floor(f * 25 / (fps * 16)), then in that snippet's bin."""
    features = {"v": np.zeros((20, D), np.float32)}
    item = VideoItem(
        "v",
        np.array([1, 0, 1], np.float32),
        point_frames=np.array([100, 250]),
        point_classes=np.array([0, 2]),
        fps=30.0,
    )  # snippets floor(100 * 25 / 480) = 5, 13
    sample = load_sample(item, get_features=features.__getitem__, num_classes=C, feature_dim=D)
    assert sorted(zip(*np.nonzero(sample.points))) == [(5, 0), (13, 2)]
    out = resample_sample(sample, segment_positions(20, 8))  # bins of 2.5 snippets: 0, 2, 5, 7, 10, 12, 15, 17
    assert sorted(zip(*np.nonzero(out.points))) == [(2, 0), (5, 2)]  # 5 in [5, 7), 13 in [12, 15)


def test_positions_outside_their_bins_are_refused():
    with pytest.raises(ValueError, match="video 'v': positions must pick one snippet of each of the 4 bins"):
        resample_sample(_sample(10, {}), np.array([0, 2, 7, 7]))  # bin 2 is [5, 7)
