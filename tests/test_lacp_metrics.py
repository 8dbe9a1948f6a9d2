"""Tests of lacp.metrics: hand-computed AP values, protocol edge cases, a loop reference."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lacp.metrics import (
    classification_accuracy,
    evaluate_detection,
    format_table,
    load_ground_truth,
    load_results,
    parse_tiou,
    segment_tiou,
    summary_table,
)

SHARED = Path(__file__).parents[2] / "shared"
THUMOS_GT = SHARED / "datasets" / "thumos14" / "gt.json"


def gt_doc(videos: dict[str, list[tuple[str, float, float]]], subset: str = "test") -> dict:
    return {
        "database": {
            vid: {"subset": subset, "annotations": [{"label": lab, "segment": [s, e]} for lab, s, e in rows]}
            for vid, rows in videos.items()
        }
    }


def results_doc(videos: dict[str, list[tuple[str, float, float, float]]]) -> dict:
    return {
        "results": {
            vid: [{"label": lab, "score": score, "segment": [s, e]} for lab, score, s, e in rows]
            for vid, rows in videos.items()
        }
    }


def evaluate(gt: dict, res: dict, tiou=(0.5,)):
    return evaluate_detection(load_ground_truth(gt), load_results(res), tiou=tiou)


def test_perfect_predictions_score_one_at_every_threshold():
    gt = gt_doc({"v1": [("A", 1.0, 5.0), ("B", 7.0, 9.5)], "v2": [("A", 0.0, 2.0)]})
    res = results_doc({"v1": [("A", 0.9, 1.0, 5.0), ("B", 0.8, 7.0, 9.5)], "v2": [("A", 0.7, 0.0, 2.0)]})
    result = evaluate(gt, res, tiou=np.arange(0.1, 0.75, 0.1))
    np.testing.assert_allclose(result.ap, 1.0)
    np.testing.assert_allclose(result.map, 1.0)
    assert result.classes == ("A", "B")
    np.testing.assert_allclose(result.tiou, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    assert result.n_ground_truth.tolist() == [2, 1] and result.n_predictions.tolist() == [2, 1]


def test_duplicate_detection_is_a_false_positive():
    # Ranked: TP (gt 1), duplicate of gt 1 (FP), TP (gt 2). Precision 1, 1/2, 2/3; recall .5, .5, 1.
    # Interpolated: 0.5 * 1 + 0.5 * max(2/3) = 5/6.
    gt = gt_doc({"v": [("A", 0.0, 10.0), ("A", 20.0, 30.0)]})
    res = results_doc({"v": [("A", 0.9, 0.0, 10.0), ("A", 0.8, 0.0, 10.0), ("A", 0.7, 20.0, 30.0)]})
    np.testing.assert_allclose(evaluate(gt, res).ap, [[5 / 6]])


def test_true_positive_after_false_positives_exact_interpolated_ap():
    # 3 GT; ranked TP, FP, FP, TP, FP, TP: precision 1, 1/2, 1/3, 1/2, 2/5, 1/2.
    # Interpolated at the TPs: 1, 1/2, 1/2 -> AP = (1 + 1/2 + 1/2) / 3 = 2/3.
    gt = gt_doc({"v": [("A", 0.0, 10.0), ("A", 20.0, 30.0), ("A", 40.0, 50.0)]})
    res = results_doc(
        {
            "v": [
                ("A", 0.9, 0.0, 10.0),
                ("A", 0.8, 60.0, 70.0),
                ("A", 0.7, 80.0, 90.0),
                ("A", 0.6, 20.0, 30.0),
                ("A", 0.5, 100.0, 110.0),
                ("A", 0.4, 40.0, 50.0),
            ]
        }
    )
    np.testing.assert_allclose(evaluate(gt, res).ap, [[2 / 3]])


def test_one_prediction_overlapping_two_ground_truths_at_several_thresholds():
    # GT1 [0, 10], GT2 [8, 20]. P1 [5, 15] (0.9): tIoU 5/15 with GT1, 7/15 with GT2.
    # P2 [9, 19] (0.8): tIoU 1/19 with GT1, 10/12 with GT2.
    # t=0.05: P1 -> GT2, P2 -> GT1 (GT2 taken, 1/19 >= 0.05): AP 1.
    # t=0.3 : P1 -> GT2, P2 finds GT2 taken and GT1 too weak: TP, FP -> AP 0.5.
    # t=0.5 : P1 misses both (7/15 < 0.5), P2 -> GT2: FP, TP -> AP 0.5 * 1/2 = 0.25.
    gt = gt_doc({"v": [("A", 0.0, 10.0), ("A", 8.0, 20.0)]})
    res = results_doc({"v": [("A", 0.9, 5.0, 15.0), ("A", 0.8, 9.0, 19.0)]})
    result = evaluate(gt, res, tiou=[0.05, 0.3, 0.5])
    np.testing.assert_allclose(result.ap, [[1.0, 0.5, 0.25]])
    np.testing.assert_allclose(result.map, [1.0, 0.5, 0.25])


def test_ties_in_score_keep_document_order():
    # Same score: the FP listed first ranks first -> FP, TP -> AP 0.5; swapped -> 1.
    gt = gt_doc({"v": [("A", 0.0, 10.0)]})
    first_fp = results_doc({"v": [("A", 0.5, 50.0, 60.0), ("A", 0.5, 0.0, 10.0)]})
    first_tp = results_doc({"v": [("A", 0.5, 0.0, 10.0), ("A", 0.5, 50.0, 60.0)]})
    assert evaluate(gt, first_fp).ap[0, 0] == pytest.approx(0.5)
    assert evaluate(gt, first_tp).ap[0, 0] == pytest.approx(1.0)


def test_empty_predictions_and_class_without_predictions_score_zero():
    gt = gt_doc({"v1": [("A", 0.0, 4.0)], "v2": [("B", 1.0, 3.0)]})
    empty = evaluate(gt, {"results": {}}, tiou=[0.3, 0.7])
    np.testing.assert_array_equal(empty.ap, np.zeros((2, 2)))
    half = evaluate(gt, results_doc({"v1": [("A", 0.3, 0.0, 4.0)]}), tiou=[0.3, 0.7])
    np.testing.assert_allclose(half.ap, [[1, 1], [0, 0]])
    np.testing.assert_allclose(half.map, [0.5, 0.5])


def test_prediction_in_video_lacking_the_class_and_in_unknown_video_are_false_positives():
    gt = gt_doc({"v1": [("A", 0.0, 4.0)], "v2": [("B", 1.0, 3.0)]})
    # B ranked: v1 (no B there: FP), v2 (TP) -> AP 0.5. A ranked: v9 (not in subset: FP), v1 TP.
    res = results_doc(
        {"v1": [("B", 0.9, 1.0, 3.0), ("A", 0.5, 0.0, 4.0)], "v2": [("B", 0.8, 1.0, 3.0)], "v9": [("A", 0.95, 0, 4)]}
    )
    result = evaluate(gt, res)
    np.testing.assert_allclose(result.ap, [[0.5], [0.5]])
    assert result.extra_videos == ("v9",)


def test_unknown_label_raises_naming_label_and_video():
    gt = gt_doc({"v1": [("A", 0.0, 4.0)]})
    res = results_doc({"v1": [("A", 0.9, 0.0, 4.0)], "v7": [("Juggling", 0.5, 1.0, 2.0)]})
    with pytest.raises(ValueError, match=r"'v7'.*'Juggling'"):
        evaluate(gt, res)


def test_label_known_from_another_subset_is_ignored():
    gt = gt_doc({"v1": [("A", 0.0, 4.0)]})
    gt["database"]["t1"] = {"subset": "train", "annotations": [{"label": "B", "segment": [0, 1]}]}
    result = evaluate(gt, results_doc({"v1": [("B", 0.99, 0.0, 4.0), ("A", 0.5, 0.0, 4.0)]}))
    assert result.classes == ("A",)
    np.testing.assert_allclose(result.ap, [[1.0]])


def test_string_segments_are_converted_and_bad_segments_rejected():
    gt = {"database": {"v": {"subset": "test", "annotations": [{"label": "A", "segment": ["18.6", "24.8"]}]}}}
    loaded = load_ground_truth(gt)
    np.testing.assert_allclose(loaded.segments, [[18.6, 24.8]])
    bad = {"database": {"v": {"subset": "test", "annotations": [{"label": "A", "segment": [5, 1]}]}}}
    with pytest.raises(ValueError, match=r"'v' annotation 0.*start <= end"):
        load_ground_truth(bad)
    entries = [{"label": "A", "score": 1, "segment": [0, 1]}, {"label": "A", "segment": [0, 1]}]
    with pytest.raises(ValueError, match=r"'v' detection 1.*score"):
        load_results({"results": {"v": entries}})
    with pytest.raises(ValueError, match=r"subsets present: \['test'\]"):
        load_ground_truth(gt, subset="validation")


def test_segment_tiou_continuous_seconds_without_plus_one():
    a = np.array([[0.0, 10.0], [0.0, 1.0], [2.0, 2.0]])
    b = np.array([[5.0, 15.0], [1.0, 2.0], [2.0, 2.0]])
    np.testing.assert_allclose(segment_tiou(a, b), [5 / 15, 0.0, 0.0])


def reference_ap(gt: dict, res: dict, thresholds: list[float]) -> np.ndarray:
    """A direct, loop-based transcription of the protocol, for comparison."""
    gts = [(vid, a["label"], *map(float, a["segment"])) for vid, e in gt["database"].items() for a in e["annotations"]]
    preds = [(vid, d["label"], d["score"], *d["segment"]) for vid, ds in res["results"].items() for d in ds]
    classes = sorted({g[1] for g in gts})
    out = np.zeros((len(classes), len(thresholds)))
    for ci, label in enumerate(classes):
        cls_gt = [g for g in gts if g[1] == label]
        cls_pred = sorted((p for p in preds if p[1] == label), key=lambda p: -p[2])
        for ti, thr in enumerate(thresholds):
            used = [False] * len(cls_gt)
            tp = []
            for vid, _, _, s, e in cls_pred:
                cands = [(j, g) for j, g in enumerate(cls_gt) if g[0] == vid]
                ious = [float(segment_tiou(np.array([s, e]), np.array(g[2:]))) for _, g in cands]
                hit = False
                for k in sorted(range(len(cands)), key=lambda k: -ious[k]):
                    if ious[k] < thr:
                        break
                    if not used[cands[k][0]]:
                        used[cands[k][0]] = hit = True
                        break
                tp.append(hit)
            prec = np.cumsum(tp) / np.arange(1, len(tp) + 1)
            out[ci, ti] = sum(max(prec[i:]) for i in range(len(tp)) if tp[i]) / len(cls_gt)
    return out


def test_matches_loop_reference_on_random_problem():
    rng = np.random.default_rng(3)
    gt_videos: dict = {}
    res_videos: dict = {}
    for v in range(6):
        starts = rng.uniform(0, 90, 8)
        gt_videos[f"v{v}"] = [(f"C{rng.integers(3)}", s, s + rng.uniform(1, 12)) for s in starts]
        rows = []
        for _ in range(40):
            if rng.random() < 0.6:
                lab, s, e = gt_videos[f"v{v}"][rng.integers(8)]
                s, e = s + rng.normal(0, 2), e + rng.normal(0, 2)
                s, e = min(s, e), max(s, e)
            else:
                lab, s = f"C{rng.integers(3)}", rng.uniform(0, 90)
                e = s + rng.uniform(0.5, 15)
            rows.append((lab, round(float(rng.random()), 2), float(s), float(e)))  # rounded: many ties
        res_videos[f"v{v}"] = rows
    gt, res = gt_doc(gt_videos), results_doc(res_videos)
    thresholds = [0.1, 0.3, 0.5, 0.7]
    result = evaluate(gt, res, tiou=thresholds)
    np.testing.assert_allclose(result.ap, reference_ap(gt, res, thresholds), atol=1e-12)
    assert 0.05 < result.map.min() < result.map.max() < 0.95


def test_summary_and_text_tables():
    gt = gt_doc({"v": [("A", 0.0, 10.0), ("A", 20.0, 30.0)]})
    res = results_doc({"v": [("A", 0.9, 0.0, 10.0), ("A", 0.8, 0.0, 10.0), ("A", 0.7, 20.0, 30.0)]})
    result = evaluate(gt, res, tiou=np.arange(0.1, 0.75, 0.1))
    table = summary_table(result)
    assert list(table) == [f"mAP@0.{i}" for i in range(1, 8)] + ["mAP@0.1-0.5", "mAP@0.3-0.7", "mAP@0.1-0.7"]
    assert table["mAP@0.3"] == pytest.approx(500 / 6) and table["mAP@0.1-0.7"] == pytest.approx(500 / 6)
    assert summary_table(result, percent=False)["mAP@0.7"] == pytest.approx(5 / 6)
    only_half = evaluate(gt, res, tiou=[0.5])
    assert list(summary_table(only_half)) == ["mAP@0.5"]
    text = format_table(result, per_class=True)
    lines = text.splitlines()
    assert lines[0].split()[:2] == ["tIoU", "0.1"] and "avg 0.1:0.7" in lines[0]
    assert lines[1].startswith("mAP (%)") and "83.33" in lines[1] and lines[2].startswith("A ")


def test_activitynet_thresholds_and_their_average():
    """ActivityNet protocol: tIoU 0.5:0.05:0.95, reported with the average over all ten as mAP@0.5-0.95."""
    gt = gt_doc({"v": [("A", 0.0, 10.0), ("B", 20.0, 30.0)]})
    res = results_doc({"v": [("A", 0.9, 0.0, 8.2), ("B", 0.8, 20.7, 30.0)]})  # tIoU 0.82 and 0.93
    tiou = parse_tiou("0.5:0.95:0.05")
    np.testing.assert_allclose(tiou, np.arange(10) * 0.05 + 0.5)
    table = summary_table(evaluate(gt, res, tiou=tiou), percent=False)
    names = ["0.5", "0.55", "0.6", "0.65", "0.7", "0.75", "0.8", "0.85", "0.9", "0.95"]
    assert list(table) == [f"mAP@{n}" for n in names] + ["mAP@0.5-0.95"]  # no 0.1-spaced average applies
    # A is found up to 0.8, B up to 0.9: mAP 1 at 0.5 ... 0.8, 0.5 at 0.85 and 0.9, 0 at 0.95
    assert [table[f"mAP@{n}"] for n in names] == pytest.approx([1.0] * 7 + [0.5, 0.5, 0.0])
    assert table["mAP@0.5-0.95"] == pytest.approx(0.8)
    assert "avg 0.5:0.95" in format_table(evaluate(gt, res, tiou=tiou)).splitlines()[0]
    # the average needs all ten thresholds; the 0.1-spaced ranges still come from the usual ones
    assert "mAP@0.5-0.95" not in summary_table(evaluate(gt, res, tiou=tiou[:-1]))
    mixed = summary_table(evaluate(gt, res, tiou=parse_tiou("0.1:0.95:0.05")), percent=False)
    assert mixed["mAP@0.5-0.95"] == pytest.approx(0.8) and mixed["mAP@0.3-0.7"] == pytest.approx(1.0)


def test_parse_tiou():
    np.testing.assert_allclose(parse_tiou("0.1:0.7:0.1"), [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    assert parse_tiou("0.1:0.7:0.1")[2] == 0.3
    np.testing.assert_allclose(parse_tiou("0.3,0.5"), [0.3, 0.5])
    np.testing.assert_allclose(parse_tiou("0.5"), [0.5])
    for bad in ("0.1:0.7", "x", "0:0.5:0.1", "0.5:0.1:0.1", "1.5"):
        with pytest.raises(ValueError, match="tIoU"):
            parse_tiou(bad)


def test_classification_accuracy():
    truth = {"a": {"X"}, "b": {"X", "Y"}, "c": {"Y"}, "d": {"Z"}}
    predicted = {"a": ["X"], "b": ["Y", "X"], "c": ["X"], "d": ["Z", "Y"], "extra": ["X"]}
    assert classification_accuracy(predicted, truth) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="'d'"):
        classification_accuracy({"a": ["X"], "b": [], "c": []}, truth)


def test_results_file_round_trip(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results_doc({"v": [("A", 0.9, 1, 2)]})))
    loaded = load_results(path)
    assert loaded.source == str(path) and loaded.labels == ("A",)
    np.testing.assert_allclose(loaded.segments, [[1.0, 2.0]])
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="broken.json"):
        load_results(tmp_path / "broken.json")


@pytest.mark.skipif(not THUMOS_GT.exists(), reason="shared THUMOS'14 data absent")
def test_real_thumos_ground_truth_loads_and_scores_itself_perfectly():
    gt = load_ground_truth(THUMOS_GT, subset="test")
    assert len(gt.video_ids) == 210 and len(gt.classes) == 20 and gt.segments.shape == (3311, 2)
    assert gt.video_ids[0] == "video_test_0000896"
    np.testing.assert_allclose(gt.segments[0], [18.6, 24.8])
    raw = json.loads(THUMOS_GT.read_text())["database"]
    res = {
        "results": {
            vid: [{"label": a["label"], "score": 1.0, "segment": a["segment"]} for a in raw[vid]["annotations"]]
            for vid in gt.video_ids
        }
    }
    result = evaluate_detection(gt, res)
    np.testing.assert_allclose(result.map, 1.0)
    labels = gt.label_sets()
    assert labels["video_test_0000896"] == {"HighJump"}
    assert classification_accuracy(labels, labels) == 1.0
