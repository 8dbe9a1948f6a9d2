"""Every stage as a Prefect flow on the tiny parameter set: summaries, artifacts, reruns."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from pipeline.flows import run_stage
from pipeline.params import load_params
from tests.conftest import tiny_params_file

STAGES = ["prepare", "decode", "flow", "weights", "extract", "points", "train", "evaluate"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, prefect_harness):
    """Run the whole tiny pipeline once through the stage flows; returns (params, summaries)."""
    root = tmp_path_factory.mktemp("tiny")
    params = load_params(tiny_params_file(root))
    summaries = {name: run_stage(name, params) for name in STAGES}
    return params, summaries


def test_every_stage_runs_and_reports(tiny_run):
    params, summaries = tiny_run
    assert summaries["prepare"]["train_videos"] == 4 and summaries["prepare"]["test_videos"] == 2
    assert summaries["decode"]["decoded"] == 6 and summaries["decode"]["failed"] == 0
    assert summaries["flow"]["computed"] == 6
    assert summaries["extract"]["extracted"] == 6
    assert summaries["train"]["steps"] == 6
    metrics = json.loads((params.paths.evaluation / "metrics.json").read_text())
    for t in ("0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7"):
        assert 0.0 <= metrics[f"mAP@{t}"] <= 1.0
    assert (params.paths.evaluation / "map_vs_tiou.png").stat().st_size > 0


def test_feature_store_schema(tiny_run):
    params, _ = tiny_run
    with h5py.File(params.paths.features, "r") as h5:
        assert set(h5.keys()) == {"rgb", "flow"}
        assert len(h5["rgb"]) == 6
        for key in ("fps", "snippet", "stride", "crop", "backbone", "weights_sha256", "flow_method", "flow_init"):
            assert key in h5.attrs, key
        assert h5.attrs["flow_init"] == "cross_modality"
        vid = sorted(h5["rgb"])[0]
        rgb = h5["rgb"][vid]
        assert rgb.dtype == np.float32 and rgb.shape[1] == 1024
        assert h5["flow"][vid].shape == rgb.shape
        frames = int(rgb.attrs["frames"])
        assert rgb.shape[0] == -(-frames // 16)  # ceil(frames / 16) snippets


def test_artifacts_are_published(tiny_run):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(like_="-")))
    keys = {a.key for a in artifacts}
    for stage in STAGES:
        assert f"{stage}-summary" in keys
    for stage in ("decode", "flow", "extract", "train"):
        assert f"{stage}-progress" in keys
    # the report shows in the UI with its pictures: mAP curve, per-class AP, timelines inside the text
    report = next(a.data for a in artifacts if a.key == "evaluate-report")
    assert "mAP (%)" in report
    assert report.count("](data:image/png;base64,") == 2 + tiny_run[0].evaluate.timelines


def test_rerun_skips_finished_videos(tiny_run):
    params, _ = tiny_run
    again = run_stage("decode", params)
    assert again["skipped"] == 6 and again["decoded"] == 0


def test_training_log_and_metrics_files(tiny_run):
    """What DVC reads: every loss term at every step, metrics keys `dvc exp show --sort-by` takes,
    per-class AP in its own file whose mean column is the mean over the thresholds."""
    import csv

    from lacp.pseudo_quality import PSEUDO_COLUMNS
    from stages.artifacts import LOSS_COLUMNS, read_training_log

    params, summaries = tiny_run
    log = read_training_log(params.paths.train_log)
    losses = sorted(f"loss/{k}" for k in LOSS_COLUMNS)
    pseudo = sorted(f"pseudo/{k}" for k in PSEUDO_COLUMNS)
    assert sorted(log) == sorted(losses + pseudo)
    assert all(sorted(log[name]) == list(range(1, params.train.steps + 1)) for name in losses)
    every = params.train.search_every  # the pseudo-label quality: at search steps only
    searches = list(range(every, params.train.steps + 1, every))
    assert searches and all(sorted(log[name]) == searches for name in pseudo)
    assert json.loads((params.paths.train_log / "metrics.json").read_text())["step"] == params.train.steps

    metrics = json.loads((params.paths.evaluation / "metrics.json").read_text())
    assert not [k for k in metrics if ":" in k] and "per_class_ap" not in metrics
    assert metrics["mAP@0.1-0.7"] == pytest.approx(np.mean([metrics[f"mAP@0.{i}"] for i in range(1, 8)]))
    rows = list(csv.DictReader((params.paths.evaluation / "per_class_ap.csv").open()))
    assert len(rows) == 2 and list(rows[0])[:3] == ["class", "mean_ap", "ap@0.1"]
    for row in rows:
        per_tiou = [float(row[f"ap@0.{i}"]) for i in range(1, 8)]
        assert float(row["mean_ap"]) == pytest.approx(np.mean(per_tiou))
