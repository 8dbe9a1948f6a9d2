"""stages/train.py: the loss log written for DVC's plots."""

from __future__ import annotations

import csv
from pathlib import Path

from stages.train import LOSS_COLUMNS, write_log


def _row(step: int, **extra: float) -> dict[str, float]:
    return {"step": step, **{f"loss_{k}": step + i / 10 for i, k in enumerate(LOSS_COLUMNS)}, **extra}


def test_write_log_holds_every_loss_term_per_step(tmp_path: Path) -> None:
    write_log([_row(1), _row(2)], tmp_path / "losses.csv")
    rows = list(csv.DictReader((tmp_path / "losses.csv").open()))
    assert list(rows[0]) == ["step", *LOSS_COLUMNS]
    assert [float(r["point"]) for r in rows] == [1.2, 2.2]
    assert [int(r["step"]) for r in rows] == [1, 2]


def test_write_log_adds_test_map_at_the_evaluated_steps(tmp_path: Path) -> None:
    write_log([_row(1), _row(2, eval_metric=0.4567891), _row(3)], tmp_path / "losses.csv")
    rows = list(csv.DictReader((tmp_path / "losses.csv").open()))
    assert list(rows[0])[-1] == "test_map"
    assert [r["test_map"] for r in rows] == ["", "0.456789", ""]
