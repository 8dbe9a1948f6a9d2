"""Tests of lacp.plots: every picture is a non-empty PNG written atomically."""

from __future__ import annotations

import numpy as np
import pytest

from lacp.plots import plot_map_vs_tiou, plot_per_class_ap, plot_timeline

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 2000
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []  # no leftovers


def test_map_vs_tiou_single_and_several_runs(tmp_path):
    table = {"mAP@0.1": 75.7, "mAP@0.3": 64.6, "mAP@0.5": 45.3, "mAP@0.7": 21.8, "mAP@0.1-0.7": 52.8}
    assert_png(plot_map_vs_tiou(table, tmp_path / "map.png"))
    runs = {"gaussian": table, "uniform": {k: v - 5 for k, v in table.items()}}
    assert_png(plot_map_vs_tiou(runs, tmp_path / "sub" / "study.png"))
    with pytest.raises(ValueError, match="mAP@"):
        plot_map_vs_tiou({"mAP@0.1-0.7": 1.0}, tmp_path / "bad.png")


def test_per_class_ap_vector_and_matrix(tmp_path):
    classes = ["A", "B", "C"]
    assert_png(plot_per_class_ap(classes, np.array([0.2, 0.5, 0.9]), tmp_path / "ap.png"))
    matrix = np.random.default_rng(0).random((3, 7))
    assert_png(plot_per_class_ap(classes, matrix, tmp_path / "ap7.png", tiou=np.arange(1, 8) / 10))
    with pytest.raises(ValueError, match="C = 3"):
        plot_per_class_ap(classes, np.zeros(4), tmp_path / "bad.png")


def test_timeline(tmp_path):
    cas = np.clip(np.sin(np.linspace(0, 6, 50)), 0, 1)
    predictions = [{"segment": [1.0, 4.5], "score": 0.9, "label": "A"}, {"segment": [10.0, 12.0], "score": 0.4}]
    out = plot_timeline(
        "video_test_1",
        gt_segments=[[1.2, 4.0], [9.5, 12.5]],
        predictions=predictions,
        cas=cas,
        actionness=1 - cas / 2,
        snippet_seconds=16 / 25,
        path=tmp_path / "timeline.png",
    )
    assert_png(out)
    assert_png(plot_timeline("empty", gt_segments=[], predictions=[], cas=np.zeros(5), snippet_seconds=0.64,
                             path=tmp_path / "empty.png"))
