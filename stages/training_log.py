"""What the training stages (train, selftrain) share: the DVCLive log and the resumable checkpoints' folder.

Checkpoints live in `<model_dir>.resume/<key>`, outside the DVC output (DVC clears that before a
rerun); the key hashes the stage's params and the content of its inputs, so only an identical
run resumes. A finished run removes its own key folder only: other runs' checkpoints (other
params or inputs, e.g. an interrupted experiment that will resume) stay.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from core.files import sha256_file

__all__ = ["TrainingLog", "remove_checkpoints", "resume_dir", "run_key"]


def resume_dir(model_dir: Path) -> Path:
    """Where resumable checkpoints live (beside the model folder, not inside the DVC output)."""
    return Path(f"{model_dir}.resume")


def run_key(fingerprint: str, inputs: Sequence[Path]) -> str:
    """Identity of a training run: its params' fingerprint and the content of its input files."""
    blob = ":".join([fingerprint, *(sha256_file(p) for p in inputs)])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def remove_checkpoints(checkpoint_dir: Path) -> None:
    """Remove a finished run's checkpoint folder (`<model_dir>.resume/<key>`), and its parent
    only when that is then empty.

    Args:
        checkpoint_dir: this run's key folder.
    """
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    with contextlib.suppress(OSError):  # not empty (another run's checkpoints) or already gone
        checkpoint_dir.parent.rmdir()


class TrainingLog:
    """The per-step training log, through DVCLive, in `log_dir`.

    Files (DVCLive's layout): `plots/metrics/loss/<term>.tsv` for each of `loss_terms` (columns
    timestamp, step, <term>; the DVC plots); `plots/metrics/test_map.tsv` at the steps whose
    row has `eval_metric`; `plots/metrics/pseudo/<name>.tsv` for each of `pseudo_terms` at the
    steps whose row has a finite `pseudo_<name>`; `metrics.json`: the latest step's values,
    rewritten at every step, so that `dvc exp show` shows how far a running experiment is. A run
    resumed from a checkpoint logs only its new steps, so `finish` then rewrites the files from
    the whole log (the checkpoint carries it). Values are rounded to 6 decimals.

    Args:
        log_dir: the folder (DVCLive removes its own files there first).
        loss_terms: the `loss_<term>` keys every row holds.
        pseudo_terms: the `pseudo_<name>` keys some rows hold.
        on_progress: the stage's caller's progress callback, which `progress` hands each step to.
    """

    def __init__(
        self,
        log_dir: Path,
        *,
        loss_terms: Sequence[str],
        pseudo_terms: Sequence[str] = (),
        on_progress: Callable[[int, int, dict[str, float]], None] | None = None,
    ):
        self.log_dir = Path(log_dir)
        self.loss_terms = tuple(loss_terms)
        self.pseudo_terms = tuple(pseudo_terms)
        self.on_progress = on_progress
        self.first_step: int | None = None
        self.live = self._open()

    def _open(self):
        from dvclive import Live  # imported on use: only the training stages need it

        # report/dvcyaml None: dvc.yaml declares these plots itself; no experiment of its own
        return Live(dir=str(self.log_dir), resume=False, report=None, save_dvc_exp=False, dvcyaml=None)

    def log(self, row: dict[str, float]) -> None:
        """One step's row of the trainer's log."""
        step = int(row["step"])
        if self.first_step is None:
            self.first_step = step
        self.live.step = step
        for term in self.loss_terms:
            self.live.log_metric(f"loss/{term}", round(row[f"loss_{term}"], 6))
        if "eval_metric" in row:
            self.live.log_metric("test_map", round(row["eval_metric"], 6))
        for name in self.pseudo_terms:  # search steps only
            if f"pseudo_{name}" in row and np.isfinite(row[f"pseudo_{name}"]):
                self.live.log_metric(f"pseudo/{name}", round(row[f"pseudo_{name}"], 6))
        self.live.make_summary()

    def progress(self, step: int, steps: int, row: dict[str, float]) -> None:
        """The trainer's per-step callback: logs `row`, then hands (step, steps, row) to `on_progress`."""
        self.log(row)
        if self.on_progress is not None:
            self.on_progress(step, steps, row)

    def finish(self, rows: list[dict[str, float]], *, summary: dict[str, float] | None = None) -> None:
        """Make the files hold every row of `rows` (rewritten if the run was resumed), and add
        `summary` (e.g. the pseudo-label quality) to metrics.json."""
        if self.first_step != 1:
            self.live = self._open()
            self.first_step = None
            for row in rows:
                self.log(row)
        for key, value in (summary or {}).items():
            self.live.summary[key] = round(value, 6)
        self.live.end()
