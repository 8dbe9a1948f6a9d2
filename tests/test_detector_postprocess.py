"""Detector inference on hand-made outputs: candidates and decoding, Gaussian Soft-NMS, the cut."""

from __future__ import annotations

import math

import numpy as np

from detector.config import InferenceConfig
from detector.postprocess import decode_candidates, merge_detections, soft_nms, video_detections, vote_boundaries


def test_soft_nms_decays_scores_by_hand():
    """sigma 0.5, decay exp(-tIoU^2 / 0.5). Segments (score):
    0 [0, 10] (0.9), 1 [1, 10] (0.8), 2 [20, 30] (0.7), 3 [5, 25] (0.6).
    Select 0: tIoU with 1 = 9/10, with 3 = 5/25 = 0.2, with 2 = 0
        -> 1: 0.8 e^-1.62, 3: 0.6 e^-0.08, 2: 0.7.
    Select 2 (0.7): tIoU with 3 = 5 / (10 + 20 - 5) = 0.2 -> 3: 0.6 e^(-0.08 - 0.08); with 1: 0.
    Select 3 (0.6 e^-0.16 = 0.511): tIoU with 1 = 5 / (9 + 20 - 5) = 5/24
        -> 1: 0.8 e^(-1.62 - 2 (5/24)^2).
    Select 1."""
    segments = np.array([[0, 10], [1, 10], [20, 30], [5, 25]], dtype=float)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    index, decayed = soft_nms(segments, scores, sigma=0.5, min_score=0.0, max_keep=10)
    np.testing.assert_array_equal(index, [0, 2, 3, 1])
    expected = [0.9, 0.7, 0.6 * math.exp(-0.16), 0.8 * math.exp(-1.62 - 2 * (5 / 24) ** 2)]
    np.testing.assert_allclose(decayed, expected, rtol=1e-12)
    # min_score drops segment 1 (0.158 before its last decay), max_keep stops early
    index, decayed = soft_nms(segments, scores, sigma=0.5, min_score=0.2, max_keep=10)
    np.testing.assert_array_equal(index, [0, 2, 3])
    index, _ = soft_nms(segments, scores, sigma=0.5, min_score=0.0, max_keep=2)
    np.testing.assert_array_equal(index, [0, 2])


def test_decoding_keeps_the_top_candidates_of_each_level():
    """Level 0: locations at 0.5 and 1.5 (stride 1); level 1: location at 1.0 (stride 2); T = 4.
    Level 0's candidates above 0.001: (loc 0, class 0) 0.9, (loc 1, class 1) 0.3, (loc 1, class 0)
    0.2; the top 2 decode to [0.5 - 0.5, 0.5 + 2] = [0, 2.5] and [1.5 - 1, 1.5 + 1] = [0.5, 2.5].
    Level 1: (class 0) 0.6 and (class 1) 0.05 decode to [1 - 0.25 * 2, 1 + 3 * 2] = [0.5, 7],
    clipped to [0.5, 4]."""
    probs = np.array([[0.9, 0.0005], [0.2, 0.3], [0.6, 0.05]])
    distances = np.array([[0.5, 2.0], [1.0, 1.0], [0.25, 3.0]])
    config = InferenceConfig(pre_nms_topk=2)
    classes, scores, segments = decode_candidates(
        probs,
        distances,
        np.array([0.5, 1.5, 1.0]),
        np.array([1.0, 1.0, 2.0]),
        np.array([0, 0, 1]),
        length=4,
        config=config,
    )
    np.testing.assert_array_equal(classes, [0, 1, 0, 1])
    np.testing.assert_allclose(scores, [0.9, 0.3, 0.6, 0.05])
    np.testing.assert_allclose(segments, [[0, 2.5], [0.5, 2.5], [0.5, 4], [0.5, 4]])


def test_decoding_drops_segments_too_short():
    classes, _, _ = decode_candidates(
        np.array([[0.9]]),
        np.array([[0.0, 0.04]]),
        np.array([0.5]),
        np.array([1.0]),
        np.array([0]),
        length=4,
        config=InferenceConfig(),
    )
    assert classes.size == 0  # 0.04 snippets <= min_length 0.05


def test_video_detections_run_soft_nms_per_class_and_keep_the_best():
    """Class 0's two segments overlap with tIoU 0.5 (decay e^(-0.5^2 / 0.5) = e^-0.5); class 1's
    segment, identical to class 0's best, is not decayed by it. max_segments 2 keeps the two best over both classes."""
    classes = np.array([0, 0, 1])
    scores = np.array([0.8, 0.7, 0.5])
    segments = np.array([[0.0, 2.0], [0.0, 1.0], [0.0, 2.0]])  # [0, 1] inside [0, 2]: tIoU 1/2
    labels, decayed, kept = video_detections(classes, scores, segments, config=InferenceConfig(max_segments=3))
    np.testing.assert_array_equal(labels, [0, 1, 0])
    np.testing.assert_allclose(decayed, [0.8, 0.5, 0.7 * math.exp(-0.25 / 0.5)])
    np.testing.assert_allclose(kept, [[0, 2], [0, 2], [0, 1]])
    labels, decayed, _ = video_detections(classes, scores, segments, config=InferenceConfig(max_segments=2))
    np.testing.assert_array_equal(labels, [0, 1])


def test_merging_two_lists_keeps_the_better_bounded_segment_and_decays_the_other():
    """Detector: class 0 [0, 10] (0.9), class 1 [20, 30] (0.5). LACP: class 0 [0, 8] (0.6),
    class 0 [40, 50] (-0.2, a negative OIC score), class 1 [21, 30] (0.7).
    Class 0: select [0, 10] (0.9); [0, 8] has tIoU 8/10 -> 0.6 e^(-0.64 / 0.5); -0.2 < min_score: dropped.
    Class 1: select LACP's [21, 30] (0.7); the detector's [20, 30] has tIoU 9/10 -> 0.5 e^(-0.81 / 0.5).
    All kept by descending score."""
    detector = [
        {"label_index": 0, "score": 0.9, "segment": [0.0, 10.0]},
        {"label_index": 1, "score": 0.5, "segment": [20.0, 30.0]},
    ]
    lacp = [
        {"label_index": 0, "score": 0.6, "segment": [0.0, 8.0]},
        {"label_index": 0, "score": -0.2, "segment": [40.0, 50.0]},
        {"label_index": 1, "score": 0.7, "segment": [21.0, 30.0]},
    ]
    no_voting = InferenceConfig(nms_sigma=0.5, min_score=0.001, voting_tiou=0.0)
    merged = merge_detections(detector, lacp, config=no_voting)
    assert [(d["label_index"], d["segment"]) for d in merged] == [
        (0, [0.0, 10.0]),
        (1, [21.0, 30.0]),
        (0, [0.0, 8.0]),
        (1, [20.0, 30.0]),
    ]
    np.testing.assert_allclose(
        [d["score"] for d in merged], [0.9, 0.7, 0.6 * math.exp(-1.28), 0.5 * math.exp(-1.62)], rtol=1e-12
    )
    # max_segments cuts over all classes; nothing to merge is nothing
    assert len(merge_detections(detector, lacp, config=InferenceConfig(max_segments=2))) == 2
    assert merge_detections([], [], config=InferenceConfig()) == []
    # voting at 0.6: class 0's two kept segments both become (0.9 [0, 10] + 0.6 [0, 8]) / 1.5 =
    # [0, 9.2]; class 1's become (0.7 [21, 30] + 0.5 [20, 30]) / 1.2; the scores are unchanged
    voted = merge_detections(detector, lacp, config=no_voting.model_copy(update={"voting_tiou": 0.6}))
    np.testing.assert_allclose([d["score"] for d in voted], [d["score"] for d in merged], rtol=1e-12)
    np.testing.assert_allclose(
        [d["segment"] for d in voted], [[0, 9.2], [(14.7 + 10) / 1.2, 30], [0, 9.2], [(14.7 + 10) / 1.2, 30]]
    )


def test_voting_weighs_candidates_by_score_within_the_tiou_and_ignores_negative_scores():
    """Kept [0, 10]; candidates [0, 10] (0.9), [0, 8] (0.6, tIoU 0.8), [2, 10] (-0.5, tIoU 0.8),
    [5, 15] (1.0, tIoU 1/3). At 0.6 only the first two vote: end (9 + 4.8) / 1.5 = 9.2; at 0.85
    only the kept segment itself does; at 0.3 [5, 15] joins: (5, 9 + 4.8 + 15) / 2.5."""
    kept = np.array([[0.0, 10.0]])
    segments = np.array([[0.0, 10.0], [0.0, 8.0], [2.0, 10.0], [5.0, 15.0]])
    scores = np.array([0.9, 0.6, -0.5, 1.0])
    np.testing.assert_allclose(vote_boundaries(kept, segments, scores, tiou=0.6), [[0.0, 9.2]])
    np.testing.assert_allclose(vote_boundaries(kept, segments, scores, tiou=0.85), [[0.0, 10.0]])
    np.testing.assert_allclose(vote_boundaries(kept, segments, scores, tiou=0.3), [[2.0, 11.52]])
    # equal bounds stay exactly equal: a weighted mean can round past them (a video's end, say)
    ends = np.array([[0.1, 20.656165337407103]] * 3)
    voted = vote_boundaries(ends[:1], ends, np.array([0.7536032992970298, 0.1023036762691485, 0.3]), tiou=0.6)
    assert voted[0, 1] == 20.656165337407103 and voted[0, 0] == 0.1
