"""stages/analyze.py: the scoring-variants analysis on hand-made scores with known tIoU, and the
whole stage on the tiny test dataset (metrics, DVC plot files, pictures, report)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from features.store import FeatureStore, FeatureStoreWriter
from features.timegrid import RELEASED_GRID
from lacp.inference import score_video, video_candidates
from lacp.proposals import DetectionConfig
from lacp.score_analysis import ScoredProposals, pearson, spearman
from stages import analyze

SS = RELEASED_GRID.seconds_per_snippet  # 0.64 s


class TwoClassScores(torch.nn.Module):
    """A stand-in network: features channels 0 and 1 are the CAS of classes 0 and 1, channel 2 the background."""

    num_classes = 2

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"p": x[..., :3], "q": x[..., :3]}


def _video(length: int, runs: dict[int, tuple[int, int]]) -> np.ndarray:
    feats = np.zeros((length, 2048), dtype=np.float32)
    feats[:, 2] = 1.0
    for c, (a, b) in runs.items():
        feats[a:b, c], feats[a:b, 2] = 1.0, 0.0
    return feats


def _tiou(a, b) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / (max(a[1], b[1]) - min(a[0], b[0]))


def test_score_proposals_pairs_each_candidate_with_its_best_same_class_tiou(tmp_path: Path) -> None:
    # v1: class 0 active on snippets 10..19, ground truth class 0 at exactly those snippets and
    # class 1 elsewhere; v2: class 1 active, but its only instance is of class 0 (tIoU 0)
    videos = {"v1": _video(40, {0: (10, 20)}), "v2": _video(30, {1: (5, 15)})}
    writer = FeatureStoreWriter(
        tmp_path / "f.h5",
        attrs={
            "crop": 112,
            "backbone": "t",
            "weights_sha256": "-",
            "flow_method": "-",
            "flow_init": "-",
            **RELEASED_GRID.as_attrs(),
        },
    )
    for vid, feats in videos.items():
        writer.write(vid, rgb=feats[:, :1024], flow=feats[:, 1024:], frames=16 * len(feats), source_fps=25.0)
    writer.finalize()
    annotations = {
        "classes": ["a", "b"],
        "database": {
            "v1": {
                "subset": "test",
                "fps": 25.0,
                "annotations": [
                    {"label": "a", "segment": [10 * SS, 20 * SS]},
                    {"label": "b", "segment": [30 * SS, 35 * SS]},
                ],
            },
            "v2": {"subset": "test", "fps": 25.0, "annotations": [{"label": "a", "segment": [5 * SS, 15 * SS]}]},
        },
    }
    detection = DetectionConfig()
    model, cpu = TwoClassScores(), torch.device("cpu")
    with FeatureStore(tmp_path / "f.h5") as store:
        got = analyze.score_proposals(model, store, ["v1", "v2"], annotations, detection, cpu, num_segments=0)
        found = {
            vid: video_candidates(
                score_video(model, store[vid], detection, cpu, num_segments=0, snippet_seconds=SS), detection
            )
            for vid in videos
        }
    m1 = len(found["v1"].inner)
    assert len(got.tiou) == m1 + len(found["v2"].inner) and m1 > 1
    assert set(got.label_index[:m1].tolist()) == {0} and set(got.label_index[m1:].tolist()) == {1}
    expected = [_tiou(seg, (10 * SS, 20 * SS)) for seg in found["v1"].segments]
    np.testing.assert_allclose(got.tiou[:m1], expected, rtol=1e-12)
    assert max(expected) > 0.9  # the CAS run itself, cut at the low thresholds: almost the instance
    np.testing.assert_array_equal(got.tiou[m1:], 0.0)  # class b proposals, no class b instance in v2
    np.testing.assert_allclose(got.oic[:m1], found["v1"].inner - found["v1"].outer)
    np.testing.assert_allclose(got.inner[:m1], found["v1"].inner)


def test_metrics_table_and_report_on_hand_made_proposals(tmp_path: Path) -> None:
    proposals = ScoredProposals(
        label_index=np.array([0, 0, 0, 1, 1, 1]),
        tiou=np.array([0.1, 0.5, 0.9, 0.2, 0.6, 0.8]),
        inner=np.array([0.5, 0.4, 0.6, 0.3, 0.3, 0.35]),
        oic=np.array([0.0, 0.2, 0.4, 0.1, 0.3, 0.5]),
    )
    from lacp.score_analysis import correlations

    found = correlations(proposals, classes=["a", "b"])
    quality = {
        "iou": {10: 0.25, 20: 0.5},
        "coverage": {10: 0.4, 20: 0.7},
        "precision": {10: 0.9, 20: 0.8},
        "length_ratio": {10: 0.5, 20: 0.9},
    }
    metrics = analyze.metrics_table(found, quality)
    # oic: 0, .2, .4, .1, .3, .5 against tIoU .1, .5, .9, .2, .6, .8
    assert metrics["pearson_oic"] == pytest.approx(pearson(proposals.oic, proposals.tiou), abs=1e-15)
    # by hand: sums of products of deviations 57/200, of squares 7/40 (oic) and 61/120 (tIoU)
    assert metrics["pearson_oic"] == pytest.approx(57 / 200 / np.sqrt(7 / 40 * 61 / 120), abs=1e-12)
    assert metrics["spearman_oic"] == pytest.approx(0.9428571428571428, abs=1e-12)  # ranks 1 3 5 2 4 6 vs 1 3 6 2 4 5
    assert metrics["spearman_inner"] == pytest.approx(spearman(proposals.inner, proposals.tiou))
    assert metrics["paper_pearson_oic"] == 0.68 and metrics["paper_pearson_inner"] == 0.38
    assert (metrics["first_search_step"], metrics["last_search_step"]) == (10, 20)
    assert metrics["pseudo_iou_first_search"] == 0.25 and metrics["pseudo_iou_last_search"] == 0.5
    assert metrics["per_class"]["a"]["pearson_oic"] == pytest.approx(1.0)
    analyze.write_report(tmp_path, metrics, found, ["t1"], faithful=True, sampled=0, has_quality=True)
    report = (tmp_path / "report.md").read_text()
    assert "| outer-inner contrast (OIC) | 0.956 | 0.68 | 0.943 | 0.956 | 0.943 |" in report
    assert "| first search | 0.250 | 0.400 | 0.900 | 0.500 |" in report
    assert "ceil(L/4)" in report and "![t1](sequences/t1.png)" in report


def test_sample_and_sequence_videos_are_seeded_and_spread() -> None:
    proposals = ScoredProposals(*(np.arange(10.0) for _ in range(4)))
    assert analyze.sample(proposals, 0, seed=0) is proposals and analyze.sample(proposals, 20, seed=0) is proposals
    drawn = analyze.sample(proposals, 4, seed=1)
    assert len(drawn.tiou) == 4 and np.all(np.diff(drawn.tiou) > 0)
    np.testing.assert_array_equal(drawn.tiou, analyze.sample(proposals, 4, seed=1).tiou)
    assert analyze.sequence_videos([f"v{i}" for i in range(9)], 3) == ["v0", "v4", "v8"]
    assert analyze.sequence_videos(["b", "a"], 5) == ["a", "b"] and analyze.sequence_videos(["a"], 0) == []


def test_the_stage_on_the_tiny_dataset(tmp_path: Path) -> None:
    from stages import train
    from stages.artifacts import LacpRun
    from tests.test_lacp_splits import write_tiny_inputs

    inputs = write_tiny_inputs(tmp_path)
    train.run(
        train.TrainParams(steps=4, batch=2, search_every=2, checkpoint_every=0, device="cpu"),
        detection=DetectionConfig(),
        **inputs,
        model_dir=tmp_path / "model",
        log_dir=tmp_path / "log",
        pseudo_labels_path=tmp_path / "pseudo_labels.h5",
    )
    out = tmp_path / "analysis"
    summary = analyze.run(
        analyze.AnalyzeParams(sequence_videos=2, device="cpu"),
        detection=DetectionConfig(),
        lacp_run=LacpRun(
            dataset_dir=inputs["dataset_dir"],
            features=inputs["features"],
            model_dir=tmp_path / "model",
            points_dir=inputs["points_dir"],
            pseudo_labels=tmp_path / "pseudo_labels.h5",
        ),
        train_log=tmp_path / "log",
        out_dir=out,
    )
    metrics = json.loads((out / "metrics.json").read_text())
    with (out / "scatter_oic.csv").open() as fh:  # every proposal drawn (fewer than scatter_points)
        rows = list(csv.DictReader(fh))
    assert len(rows) == metrics["proposals"] == summary["proposals"] > 0
    tiou, oic = (np.array([float(r[k]) for r in rows]) for k in ("tiou", "oic"))
    assert metrics["pearson_oic"] == pytest.approx(pearson(oic, tiou), abs=1e-5)  # csv values rounded to 1e-6
    log = json.loads((tmp_path / "log" / "metrics.json").read_text())
    assert metrics["pseudo_iou_last_search"] == pytest.approx(log["pseudo_iou"], abs=1e-6)
    assert (metrics["first_search_step"], metrics["last_search_step"]) == (2, 4)
    assert sorted(p.name for p in (out / "sequences").iterdir()) == [
        f"{v}.png"
        for v in analyze.sequence_videos(json.loads((tmp_path / "model" / "split.json").read_text())["train"], 2)
    ]
    for name in ("scoring_variants.png", "pseudo_quality.png", "scatter_inner.csv", "correlations.csv", "report.md"):
        assert (out / name).stat().st_size > 0, name
    assert summary["report"] == str(out / "report.md")
