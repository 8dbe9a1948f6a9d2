"""Running DVC from a Prefect flow: which `dvc`, which command, and its output relayed.

Shared by `pipeline.orchestrate` (repro) and `pipeline.study` (studies), which both start DVC
as a child process whose stage runs report to the calling flow's Prefect server under one tag.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.runtime import flow_run

from pipeline.console import PROGRESS_ENV, progress_mode, relay, terminal_columns
from pipeline.flows import RUN_TAG_ENV

__all__ = ["current_api_url", "dvc_command", "dvc_executable", "run_logged", "tag_this_run"]


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
    tag = f"{prefix}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run.get_id())
        client.update_flow_run(run.id, tags=[*run.tags, tag])
    return tag
