"""The first run on a machine that never ran Prefect, while every core is busy.

With no PREFECT_API_URL, Prefect starts a temporary server that must first create and
migrate a new database; on a loaded 2-core machine that outlasts Prefect's default start-up
allowance of 20 s, and the run died with "Timed out while attempting to connect to ephemeral
Prefect API server". prefect.toml gives it longer; this test is the first run as a new user
(or CI) makes it.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import tiny_repo

pytestmark = pytest.mark.slow


def _spin() -> None:
    while True:
        pass


def test_first_repro_with_an_empty_prefect_home_under_load(tmp_path: Path) -> None:
    repo = tiny_repo(tmp_path / "repo")
    home = tmp_path / "prefect-home"  # does not exist yet: no database, no profile
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "LACP_"))}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(os.cpu_count() or 1)]
    for spinner in spinners:
        spinner.start()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pipeline", "repro"], cwd=repo, env=env, capture_output=True, text=True, timeout=1800
        )
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.join()
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    assert "Timed out while attempting to connect" not in log
    assert (home / "prefect.db").is_file()  # the run made and used the new database
    assert "Test-set detection mAP" in done.stdout and (repo / "metrics" / "eval" / "metrics.json").is_file()
    for stage in ("prepare", "decode", "flow", "weights", "extract", "points", "train", "evaluate"):
        assert f"[{stage}] done in " in log, stage
