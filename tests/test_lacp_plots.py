"""Tests of lacp.plots.evaluation: every picture is a non-empty PNG written atomically."""

from __future__ import annotations

import numpy as np
import pytest

from lacp.plots.analysis import ModelView, plot_comparison, plot_score_scatter, plot_search_sequence
from lacp.plots.canvas import plain_text
from lacp.plots.evaluation import plot_map_vs_tiou, plot_per_class_ap, plot_timeline

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
    assert_png(
        plot_timeline(
            "empty", gt_segments=[], predictions=[], cas=np.zeros(5), snippet_seconds=0.64, path=tmp_path / "empty.png"
        )
    )


# Class names, video ids and run names that matplotlib would read as mathtext: the first two fail
# to parse ("$x^$": a superscript of nothing; "\foo": no such symbol), the third would draw "5 - "
# in math italics instead of the text.
MATHTEXT_LABELS = ["lift $x^$", "a $\\foo$ b", "cost $5 - $10"]


def test_plain_text_is_drawn_as_written():
    from matplotlib import cbook

    for label in [*MATHTEXT_LABELS, "a \\$ b", "plain"]:
        shown = plain_text(label)
        assert not cbook.is_math_text(shown)
        assert shown.replace(r"\$", "$") == label  # what matplotlib draws for non-math text


def test_labels_with_dollar_signs_draw_every_evaluate_and_analyze_picture(tmp_path):
    """Each picture of the evaluate and analyze stages (and of detect and qualitative), with every
    class, the video id and the run name taken from MATHTEXT_LABELS: a PNG, where matplotlib's
    mathtext parser used to raise ValueError."""
    classes = MATHTEXT_LABELS
    video = "video $\\foo$"
    table = {"mAP@0.1": 75.7, "mAP@0.5": 45.3}
    assert_png(plot_map_vs_tiou({classes[0]: table, classes[1]: table}, tmp_path / "map.png", title=classes[1]))
    assert_png(plot_per_class_ap(classes, np.array([0.2, 0.5, 0.9]), tmp_path / "ap.png", title=classes[0]))
    assert_png(
        plot_timeline(
            video,
            gt_segments=[[1.0, 2.0]],
            predictions=[],
            cas=np.zeros(5),
            snippet_seconds=0.64,
            path=tmp_path / "timeline.png",
        )
    )
    rng = np.random.default_rng(0)
    m = 30
    assert_png(
        plot_score_scatter(
            tiou=rng.random(m),
            inner=rng.random(m),
            oic=rng.random(m),
            label_index=np.arange(m) % 3,
            classes=classes,
            pearson={"inner": 0.1, "oic": 0.5},
            overlapping={"inner": 0.2, "oic": 0.6},
            paper={"inner": 0.0, "oic": 0.4},
            path=tmp_path / "scatter.png",
        )
    )
    q = rng.random((20, 4))  # (T, C+1)
    labels = np.zeros((20, 3), dtype=np.uint8)
    labels[3:8, 1] = 1
    assert_png(
        plot_search_sequence(
            video,
            instances=[(0, 1.0, 3.0), (2, 5.0, 7.0)],
            points=[(0, 2.0), (2, 6.0)],
            first=labels,
            first_step=10,
            final=labels,
            final_step=100,
            q=q,
            q_seconds=0.64,
            snippet_seconds=0.64,
            classes=classes,
            path=tmp_path / "sequence.png",
        )
    )
    view = ModelView(
        name="run $\\foo$", detections=[{"label_index": 1, "score": 0.9, "segment": [1.0, 4.0]}], q=q, q_seconds=0.64
    )
    for instances in ([(0, 1.0, 3.0)], None):
        assert_png(
            plot_comparison(
                video,
                instances=instances,
                views=[view, view],
                classes=classes,
                threshold=0.1,
                path=tmp_path / f"comparison_{instances is None}.png",
            )
        )


def test_detections_share_a_lane_only_where_they_do_not_overlap():
    from lacp.plots.evaluation import detection_lanes

    # best first: the second overlaps the first, the third fits beside the first, the fourth overlaps both lanes
    segments = [(2.0, 5.0), (4.0, 6.0), (5.0, 7.0), (4.5, 5.5)]
    assert detection_lanes(segments) == [0, 1, 0, 2]
    assert detection_lanes([]) == []
