"""Whole-DAG flows for the Prefect UI: `repro` (dvc repro / dvc exp run) and `serve`.

DVC decides which stages run; each stage it runs is its own flow run (`python -m pipeline run
<stage>`), tagged, like the repro's own run, with this repro's tag so the UI can filter one
repro's runs.
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

from pipeline.flows import RUN_TAG_ENV


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
    """Run `argv`, streaming its output into the current flow's log; returns the exit code.

    The child reports to this flow's Prefect server, so every stage run of one repro or study
    lands in the same database (and no child starts a temporary server of its own).
    """
    logger = get_run_logger()
    env = dict(os.environ, **{RUN_TAG_ENV: tag})
    env.setdefault("PREFECT_API_URL", current_api_url())
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    logger.info("running %s (tag %s)", " ".join(argv), tag)
    with subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            logger.info(line.rstrip())
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
    """CLI entry: `python -m pipeline repro [-S key=value ...]`."""
    return repro_flow(extra=sets)


def serve() -> None:
    """Serve `repro` and `study` as deployments: start them from the UI with parameters."""
    from prefect import serve as prefect_serve

    from pipeline.study import study_flow

    prefect_serve(
        repro_flow.to_deployment(name="repro", description="dvc repro (or dvc exp run with a distribution/seed)"),
        study_flow.to_deployment(name="study", description="label-distribution study over DVC experiments"),
    )
