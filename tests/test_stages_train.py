"""stages/train.py: the training log (DVCLive) that DVC plots and `dvc exp show` read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stages.train import LOSS_COLUMNS, TrainingLog, read_training_log


def _row(step: int, **extra: float) -> dict[str, float]:
    return {"step": step, **{f"loss_{k}": step + i / 10 for i, k in enumerate(LOSS_COLUMNS)}, **extra}


def test_training_log_holds_every_loss_term_per_step(tmp_path: Path) -> None:
    log = TrainingLog(tmp_path)
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
    log = TrainingLog(tmp_path)
    for row in rows:
        log.log(row)
    log.finish(rows)
    assert read_training_log(tmp_path)["test_map"] == {2: 0.456789}


def test_a_resumed_run_rewrites_the_whole_log(tmp_path: Path) -> None:
    rows = [_row(step) for step in range(1, 6)]
    first = TrainingLog(tmp_path)
    for row in rows[:4]:  # killed after step 4; the checkpoint was written at step 3
        first.log(row)
    resumed = TrainingLog(tmp_path)  # the rerun logs steps 4 and 5 only ...
    for row in rows[3:]:
        resumed.log(row)
    resumed.finish(rows)  # ... and ends with the checkpoint's whole log
    assert read_training_log(tmp_path)["loss/vid"] == {s: s + 0.1 for s in range(1, 6)}


def test_reading_a_missing_log_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no training log"):
        read_training_log(tmp_path / "nowhere")
