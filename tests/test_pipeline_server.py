"""Stage flows and `serve` against a real Prefect server (what a user sees in the UI).

A `prefect server start` subprocess (its own PREFECT_HOME, analytics off) serves the API;
`python -m pipeline` subprocesses reach it through PREFECT_API_URL, and the tests read back
over HTTP what they published. Independent of the in-process `prefect_harness`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO, tiny_params_file

pytestmark = pytest.mark.slow

SERVER_START_TIMEOUT_S = 90  # ~20 s on two busy cores; the margin is for a loaded CI machine
STAGE_TIMEOUT_S = 300
SERVE_TIMEOUT_S = 60


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """This environment without any PREFECT_* setting, plus a private PREFECT_HOME and `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", **extra)
    return env


def log_tail(path: Path, lines: int = 40) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def stop(proc: subprocess.Popen, *, grace_s: float = 15) -> None:
    """SIGTERM the process group started for `proc`, then SIGKILL it if it lingers."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace_s)


def wait_healthy(api: str, proc: subprocess.Popen, log: Path) -> None:
    """Poll `api`/health until the server answers; fail with its log tail if it exits or stalls."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"prefect server exited with code {proc.returncode}; its log ends:\n{log_tail(log)}")
        try:
            if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(
        f"prefect server did not answer {api}/health within {SERVER_START_TIMEOUT_S} s; its log ends:\n{log_tail(log)}"
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    """A running Prefect server; yields its API URL (http://127.0.0.1:<port>/api)."""
    root = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    log = root / "server.log"
    env = clean_env(root / "home", PREFECT_UI_API_URL=api)
    argv = [
        str(Path(sys.executable).with_name("prefect")),
        "server",
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with log.open("w") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_healthy(api, proc, log)
        yield api
    finally:
        stop(proc)


def client_env(api: str, home: Path) -> dict[str, str]:
    return clean_env(home, PREFECT_API_URL=api)


def run_cli(args: list[str], *, env: dict[str, str]) -> dict[str, Any]:
    """`python -m pipeline ARGS` in the repository; returns the JSON summary it prints last."""
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        check=False,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=STAGE_TIMEOUT_S,
    )
    if done.returncode != 0:
        pytest.fail(f"python -m pipeline {' '.join(args)} exited {done.returncode}:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def api_filter(api: str, what: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """POST /<what>/filter, e.g. what="flow_runs"."""
    response = httpx.post(f"{api}/{what}/filter", json=body, timeout=10)
    response.raise_for_status()
    return response.json()


def test_stage_flow_runs_tasks_and_artifacts_reach_the_server(server, tmp_path):
    params_file = tiny_params_file(tmp_path)
    env = client_env(server, tmp_path / "home")
    assert run_cli(["--params", str(params_file), "run", "prepare", "--json"], env=env)["train_videos"] == 4
    assert run_cli(["--params", str(params_file), "run", "decode", "--json"], env=env)["decoded"] == 6
    videos = sorted(json.loads((tmp_path / "data" / "dataset" / "videos.json").read_text()))

    runs = api_filter(server, "flow_runs", {"flows": {"name": {"any_": ["decode"]}}})
    assert len(runs) == 1
    run = runs[0]
    assert run["state_type"] == "COMPLETED" and "lacp" in run["tags"]
    assert run["parameters"]["name"] == "decode"

    tasks = api_filter(server, "task_runs", {"flow_runs": {"id": {"any_": [run["id"]]}}})
    assert sorted(t["name"] for t in tasks) == [f"decode-{vid}" for vid in videos]
    assert {t["state_type"] for t in tasks} == {"COMPLETED"}

    artifacts = {
        a["key"]: a for a in api_filter(server, "artifacts", {"artifacts": {"flow_run_id": {"any_": [run["id"]]}}})
    }
    assert set(artifacts) == {"decode-progress", "decode-summary"}
    assert artifacts["decode-progress"]["type"] == "progress" and float(artifacts["decode-progress"]["data"]) == 100.0
    summary = artifacts["decode-summary"]["data"]
    rows = json.loads(summary) if isinstance(summary, str) else summary
    assert {r["key"]: r["value"] for r in rows}["decoded"] == "6"

    prepare = api_filter(server, "flow_runs", {"flows": {"name": {"any_": ["prepare"]}}})
    assert [r["state_type"] for r in prepare] == ["COMPLETED"]


def test_serve_registers_repro_and_study_deployments(server, tmp_path):
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "serve"],
            cwd=REPO,
            env=client_env(server, tmp_path / "home"),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + SERVE_TIMEOUT_S
        deployments: dict[str, dict[str, Any]] = {}
        while set(deployments) != {"repro", "study"}:
            if proc.poll() is not None:
                pytest.fail(f"`python -m pipeline serve` exited with code {proc.returncode}:\n{log_tail(log)}")
            if time.monotonic() > deadline:
                pytest.fail(f"no repro/study deployments after {SERVE_TIMEOUT_S} s; serve log ends:\n{log_tail(log)}")
            time.sleep(1)
            deployments = {d["name"]: d for d in api_filter(server, "deployments", {})}
    finally:
        stop(proc)
    assert proc.returncode is not None
    assert deployments["repro"]["entrypoint"] == "pipeline/orchestrate.py:repro_flow"
    assert deployments["study"]["entrypoint"] == "pipeline/study.py:study_flow"
    assert set(deployments["repro"]["parameter_openapi_schema"]["properties"]) == {
        "distribution",
        "seed",
        "extra",
    }
    assert set(deployments["study"]["parameter_openapi_schema"]["properties"]) == {
        "grid",
        "seeds",
        "out_dir",
        "extra",
        "points",
        "title",
    }
    flows = {f["id"]: f["name"] for f in api_filter(server, "flows", {})}
    assert flows[deployments["repro"]["flow_id"]] == "repro" and flows[deployments["study"]["flow_id"]] == "study"
