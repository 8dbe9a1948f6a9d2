"""Pseudo-label quality against ground truth, on labels worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lacp.pseudo_quality import pseudo_label_quality


def test_quality_by_hand():
    # u = 1 s per snippet; video a: class 0 instance [2, 8] s -> snippets 2..7 (centres 2.5..7.5)
    dense_a = np.zeros((10, 2), dtype=np.uint8)
    dense_a[4:6, 0] = 1  # the search cut the 6-snippet action to 2 snippets
    dense_a[9, 0] = 1  # and labelled a stray snippet
    # video b: class 1 instance [0, 3] s -> snippets 0..2, found exactly
    dense_b = np.zeros((5, 2), dtype=np.uint8)
    dense_b[0:3, 1] = 1
    got = pseudo_label_quality(
        {"a": dense_a, "b": dense_b, "c": dense_a}, {"a": [(0, 2.0, 8.0)], "b": [(1, 0.0, 3.0)]}, snippet_seconds=1.0
    )
    assert got["pseudo_instances"] == 2
    # a: best run [4, 6) s -> tIoU 2 / 6, length ratio 2 / 6; b: tIoU 1, ratio 1
    assert got["pseudo_iou"] == pytest.approx((2 / 6 + 1) / 2)
    assert got["pseudo_length_ratio"] == pytest.approx((2 / 6 + 1) / 2)
    assert got["pseudo_coverage"] == pytest.approx((2 + 3) / (6 + 3))
    assert got["pseudo_precision"] == pytest.approx((2 + 3) / (3 + 3))


def test_a_class_without_pseudo_action_scores_zero_and_no_videos_is_nan():
    got = pseudo_label_quality({"a": np.zeros((4, 1))}, {"a": [(0, 0.0, 2.0)]}, snippet_seconds=1.0)
    assert got["pseudo_iou"] == 0.0 and got["pseudo_coverage"] == 0.0
    assert math.isnan(pseudo_label_quality({}, {}, snippet_seconds=1.0)["pseudo_iou"])
