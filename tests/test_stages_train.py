"""stages/train.py: the training log (DVCLive) that DVC plots and `dvc exp show` read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lacp.proposals import DetectionConfig
from lacp.pseudo_quality import PSEUDO_COLUMNS
from stages.artifacts import LOSS_COLUMNS, read_training_log
from stages.training_log import TrainingLog, remove_checkpoints, resume_dir, run_key


def _row(step: int, **extra: float) -> dict[str, float]:
    return {"step": step, **{f"loss_{k}": step + i / 10 for i, k in enumerate(LOSS_COLUMNS)}, **extra}


def test_training_log_holds_every_loss_term_per_step(tmp_path: Path) -> None:
    log = TrainingLog(tmp_path, loss_terms=LOSS_COLUMNS, pseudo_terms=PSEUDO_COLUMNS)
    for step in (1, 2):
        log.log(_row(step))
    log.finish([_row(1), _row(2)])
    found = read_training_log(tmp_path)
    assert sorted(found) == sorted(f"loss/{k}" for k in LOSS_COLUMNS)
    assert found["loss/point"] == {1: 1.2, 2: 2.2}
    assert found["loss/total"] == {1: 1.0, 2: 2.0}
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["step"] == 2 and summary["loss"]["feat"] == pytest.approx(2.5)


def test_training_log_adds_test_map_at_the_evaluated_steps(tmp_path: Path) -> None:
    rows = [_row(1), _row(2, eval_metric=0.4567891), _row(3)]
    log = TrainingLog(tmp_path, loss_terms=LOSS_COLUMNS, pseudo_terms=PSEUDO_COLUMNS)
    for row in rows:
        log.log(row)
    log.finish(rows)
    assert read_training_log(tmp_path)["test_map"] == {2: 0.456789}


def test_a_resumed_run_rewrites_the_whole_log(tmp_path: Path) -> None:
    rows = [_row(step) for step in range(1, 6)]
    first = TrainingLog(tmp_path, loss_terms=LOSS_COLUMNS, pseudo_terms=PSEUDO_COLUMNS)
    for row in rows[:4]:  # killed after step 4; the checkpoint was written at step 3
        first.log(row)
    resumed = TrainingLog(
        tmp_path, loss_terms=LOSS_COLUMNS, pseudo_terms=PSEUDO_COLUMNS
    )  # the rerun logs steps 4 and 5 only ...
    for row in rows[3:]:
        resumed.log(row)
    resumed.finish(rows)  # ... and ends with the checkpoint's whole log
    assert read_training_log(tmp_path)["loss/vid"] == {s: s + 0.1 for s in range(1, 6)}


def test_reading_a_missing_log_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no training log"):
        read_training_log(tmp_path / "nowhere")


def test_train_logs_pseudo_label_quality_at_every_search_and_keeps_first_and_last(tmp_path: Path) -> None:
    from lacp.pseudo_quality import pseudo_label_quality
    from lacp.search_record import read_search_record
    from stages import train
    from stages.artifacts import ground_truth_instances, read_annotations
    from tests.test_lacp_splits import write_tiny_inputs

    inputs = write_tiny_inputs(tmp_path)
    params = train.TrainParams(steps=4, batch=2, search_every=2, checkpoint_every=0, device="cpu", validation_share=0)
    summary = train.run(
        params,
        detection=DetectionConfig(),
        **inputs,
        model_dir=tmp_path / "model",
        log_dir=tmp_path / "log",
        pseudo_labels_path=tmp_path / "pseudo_labels.h5",
    )
    log = read_training_log(tmp_path / "log")
    assert sorted(log["pseudo/iou"]) == [2, 4]  # the search steps only
    record = read_search_record(tmp_path / "pseudo_labels.h5")
    assert (record.first_step, record.final_step) == (2, 4)
    assert sorted(record.first) == sorted(record.final) == ["t1", "t2", "t3", "t4", "t5"]
    annotations = read_annotations(inputs["dataset_dir"])
    instances = ground_truth_instances(annotations, sorted(record.final))
    for step, labels in ((2, record.first), (4, record.final)):  # the logged values are those of the kept labels
        quality = pseudo_label_quality(labels, instances, snippet_seconds=16 / 25)
        assert log["pseudo/iou"][step] == pytest.approx(quality["pseudo_iou"], abs=1e-6)
        assert log["pseudo/coverage"][step] == pytest.approx(quality["pseudo_coverage"], abs=1e-6)
    assert summary["pseudo_iou"] == pytest.approx(log["pseudo/iou"][4], abs=1e-4)


def test_search_record_round_trips_and_names_a_missing_file(tmp_path: Path) -> None:
    import numpy as np

    from lacp.search_record import SearchRecord, read_search_record, write_search_record

    labels = {"a": np.eye(3, 2, dtype=np.uint8), "b": np.zeros((4, 2), np.uint8)}
    write_search_record(tmp_path / "p.h5", SearchRecord(first=labels, first_step=10, final={}, final_step=0))
    back = read_search_record(tmp_path / "p.h5")
    assert back.first_step == 10 and back.final == {} and back.final_step == 0
    for vid, dense in labels.items():
        assert back.first[vid].dtype == np.uint8 and (back.first[vid] == dense).all()
    with pytest.raises(FileNotFoundError, match="run the train stage"):
        read_search_record(tmp_path / "none.h5")


def _train_params(**overrides: Any) -> Any:
    from stages import train

    values = {"steps": 2, "batch": 2, "search_every": 2, "checkpoint_every": 1, "device": "cpu", "validation_share": 0}
    return train.TrainParams(**{**values, **overrides})


def test_a_finished_run_removes_only_its_own_checkpoints(tmp_path: Path) -> None:
    from stages import train
    from tests.test_lacp_splits import write_tiny_inputs

    inputs = write_tiny_inputs(tmp_path)
    model_dir = tmp_path / "model"
    resume = resume_dir(model_dir)
    other = resume / "0123456789abcdef"  # another run's (other params or inputs), interrupted: it will resume
    other.mkdir(parents=True)
    (other / "checkpoint.pt").write_bytes(b"another run's checkpoint")
    params = _train_params()
    own = resume / run_key(
        f"{params.fingerprint()}:r_act={DetectionConfig().r_act}",  # the key train.run makes
        [inputs["points_dir"] / "points.csv", inputs["features"]],
    )
    seen: list[bool] = []  # this run's checkpoint (written every step) exists from step 2 on
    train.run(
        params,
        detection=DetectionConfig(),
        **inputs,
        model_dir=model_dir,
        log_dir=tmp_path / "log",
        pseudo_labels_path=tmp_path / "p.h5",
        on_progress=lambda step, steps, row: seen.append((own / "checkpoint.pt").is_file()),
    )
    assert seen == [False, True]
    assert not own.exists()
    assert (other / "checkpoint.pt").read_bytes() == b"another run's checkpoint"
    remove_checkpoints(other)  # the other run finishing leaves nothing behind
    assert not resume.exists()


def test_model_pt_and_checkpoints_are_on_disk_before_model_json_names_them(tmp_path: Path, monkeypatch) -> None:
    import os

    from stages import train
    from tests.test_lacp_splits import write_tiny_inputs

    inputs = write_tiny_inputs(tmp_path)
    events: list[tuple[str, ...]] = []  # ("fsync", file) and ("replace", temporary, target), in order
    fsync, replace = os.fsync, os.replace

    def recorded_fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        fsync(fd)

    def recorded_replace(src: Any, dst: Any) -> None:
        events.append(("replace", str(src), str(dst)))
        replace(src, dst)

    monkeypatch.setattr(os, "fsync", recorded_fsync)
    monkeypatch.setattr(os, "replace", recorded_replace)
    model_dir = tmp_path / "model"
    train.run(
        _train_params(),
        detection=DetectionConfig(),
        **inputs,
        model_dir=model_dir,
        log_dir=tmp_path / "log",
        pseudo_labels_path=tmp_path / "p.h5",
    )
    renames = [(i, e[1], Path(e[2]).name) for i, e in enumerate(events) if e[0] == "replace"]
    vouched = [(i, tmp) for i, tmp, name in renames if name in ("model.pt", "checkpoint.pt")]
    assert len(vouched) == 3  # model.pt and the checkpoints of steps 1 and 2
    for i, tmp in vouched:
        assert ("fsync", tmp) in events[:i], f"{tmp} was renamed into place without an fsync"
    order = [name for _, _, name in renames if name in ("model.pt", "model.json")]
    assert order == ["model.pt", "model.json"]
