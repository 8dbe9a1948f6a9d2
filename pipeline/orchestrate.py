"""Whole-DAG flows for the Prefect UI: `repro` (dvc repro / dvc exp run) and `serve`.

DVC decides which stages run; each stage it runs is its own flow run (`python -m pipeline run
<stage>`), tagged, like the repro's own run, with this repro's tag so the UI can filter one
repro's runs. DVC's output (and so every stage's) reaches the terminal as it comes and the
repro run's log in the UI line by line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.runtime import flow_run

from pipeline.console import PROGRESS_ENV, progress_mode, relay, terminal_columns
from pipeline.flows import RUN_TAG_ENV
from pipeline.params import Params


def dvc_executable() -> str:
    """The `dvc` beside this Python (the project's venv), else the one on PATH."""
    beside = Path(sys.executable).with_name("dvc")
    found = str(beside) if beside.exists() else shutil.which("dvc")
    if not found:
        raise FileNotFoundError("dvc is not installed in this environment (run `make install`)")
    return found


def dvc_command(sets: list[str], *, name: str = "") -> list[str]:
    """`dvc repro`, or `dvc exp run -S k=v ...` when params are overridden (argv, no shell)."""
    if not sets:
        return [dvc_executable(), "repro"]
    argv = [dvc_executable(), "exp", "run"]
    for item in sets:
        if "=" not in item:
            raise ValueError(f"params override '{item}': expected key=value, e.g. points.distribution=uniform")
        argv += ["-S", item]
    if name:
        argv += ["--name", name]
    return argv


def current_api_url() -> str:
    """The API of the Prefect server this flow reports to (a temporary one included)."""
    with get_client(sync_client=True) as client:
        return str(client.api_url).rstrip("/")


def run_logged(argv: list[str], *, tag: str, cwd: Path | None = None) -> int:
    """Run `argv`: its output goes to the terminal as it comes and, line by line, into the
    current flow run's log (the UI); returns the exit code.

    The child reports to this flow's Prefect server, so every stage run of one repro or study
    lands in the same database (and no child starts a temporary server of its own). It draws
    progress bars exactly when this process's own output is a terminal.
    """
    logger = get_run_logger()
    env = dict(os.environ, **{RUN_TAG_ENV: tag, PROGRESS_ENV: progress_mode()})
    env.setdefault("PREFECT_API_URL", current_api_url())
    env.setdefault("COLUMNS", terminal_columns())
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    shown = " ".join([Path(argv[0]).name, *argv[1:]])
    sys.stderr.write(f"running {shown} (Prefect tag {tag})\n")  # not print: a flow may send prints to its log
    logger.info("running %s (tag %s)", " ".join(argv), tag, extra={"relayed": True})
    with subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        for line in relay(proc.stdout, sys.stderr):
            logger.info(line, extra={"relayed": True})  # the UI only: the terminal has it already
    return proc.returncode


def tag_this_run(prefix: str) -> str:
    """A new tag, unique to this repro or study, added to the current flow run.

    The stage runs it starts carry the same tag (`run_logged`), so filtering the UI by it shows
    the whole repro or study: its own run first, then every stage run under it.

    Args:
        prefix: what kind of run this is ("repro", "study").

    Returns:
        The tag, e.g. `repro-20261129-204712-3fa9c1`.
    """
    tag = f"{prefix}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run.get_id())
        client.update_flow_run(run.id, tags=[*run.tags, tag])
    return tag


@flow(name="repro", log_prints=True)
def repro_flow(distribution: str = "", seed: int | None = None, extra: list[str] | None = None) -> int:
    """Run the DAG. With a distribution or seed, as a DVC experiment with those params.

    Args:
        distribution: points.distribution for this run ("" keeps params.yaml's).
        seed: points.seed and train.seed for this run (None keeps params.yaml's).
        extra: more `key=value` overrides.

    Returns:
        DVC's exit code (a non-zero code fails the flow run).
    """
    sets = list(extra or [])
    if distribution:
        sets.append(f"points.distribution={distribution}")
    if seed is not None:
        sets += [f"points.seed={seed}", f"train.seed={seed}"]
    code = run_logged(dvc_command(sets), tag=tag_this_run("repro"))
    if code != 0:
        raise RuntimeError(f"dvc exited with code {code}; see the log above for the failing stage")
    return code


def repro(sets: list[str]) -> int:
    """CLI entry: `python -m pipeline repro [-S key=value ...]`; returns DVC's exit code."""
    state = repro_flow(extra=sets, return_state=True)
    if state.is_completed():
        return 0
    print(f"error: {state.message or 'dvc repro failed'}", file=sys.stderr)
    return 1


def print_results(params: Params) -> None:
    """After a repro: the test mAP table and where to look next."""
    import numpy as np

    from lacp.metrics import evaluate_detection, format_table, load_ground_truth, load_results

    annotations = params.paths.dataset / "annotations.json"
    predictions = params.paths.evaluation / "predictions.json"
    if not (annotations.is_file() and predictions.is_file()):
        return
    result = evaluate_detection(load_ground_truth(annotations, subset="test"), load_results(predictions),
                                tiou=np.asarray(params.evaluate.tiou))
    print(f"\nTest-set detection mAP ({predictions}):\n{format_table(result)}\n")
    print("Where to look next:")
    for what, where in [
        ("make ui", "the Prefect UI on http://127.0.0.1:4200: every stage run, its logs, tables and report"),
        ("dvc plots show", "every plot as one HTML page (dvc_plots/index.html): losses, mAP vs tIoU, AP per class"),
        (str(params.paths.evaluation / "report.md"), "the evaluation report with its pictures and timelines"),
        ("dvc metrics show", "the metrics of this run (dvc exp show to compare runs)"),
    ]:
        print(f"  {what:<28} {where}")


def serve() -> None:
    """Serve `repro` and `study` as deployments: start them from the UI with parameters."""
    from prefect import serve as prefect_serve

    from pipeline.study import study_flow

    prefect_serve(
        repro_flow.to_deployment(name="repro", description="dvc repro (or dvc exp run with a distribution/seed)"),
        study_flow.to_deployment(name="study", description="label-distribution study over DVC experiments"),
    )
