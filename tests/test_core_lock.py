"""Tests of core.lock: one stage command at a time per repository, tried with real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from core.lock import LOCK_FILE, LockHeldError, repo_lock
from tests.conftest import REPO, tiny_params_file

TIMEOUT_S = 60

# holds the lock of argv[1] until the file argv[3] appears; argv[2] appears once it holds it
HOLDER = """
import sys, time
from pathlib import Path
from core.lock import repo_lock
root, ready, release = map(Path, sys.argv[1:4])
with repo_lock(root, command="holder under test"):
    ready.write_text("locked")
    while not release.exists():
        time.sleep(0.02)
"""

# waits for the lock of argv[1], printing the wait line on stderr; writes argv[2] once it holds it
WAITER = """
import sys
from pathlib import Path
from core.lock import repo_lock
root, got = map(Path, sys.argv[1:3])
with repo_lock(root, command="waiter", on_wait=lambda line: print(line, file=sys.stderr, flush=True)):
    got.write_text("locked")
"""


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO), DO_NOT_TRACK="1", PREFECT_SERVER_ANALYTICS_ENABLED="false")


def _until(condition, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def holder(tmp_path: Path):
    """A process holding the lock of tmp_path; the test releases it by creating the returned path."""
    ready, release = tmp_path / "ready", tmp_path / "release"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path), str(ready), str(release)], env=_env())
    try:
        _until(lambda: ready.exists() or proc.poll() is not None, "the holder to take the lock")
        assert proc.poll() is None, "the holder exited early"
        yield proc, release
    finally:
        release.touch()
        proc.wait(timeout=TIMEOUT_S)


def test_a_second_process_waits_until_the_first_releases(tmp_path: Path, holder) -> None:
    proc, release = holder
    got, err = tmp_path / "got", tmp_path / "waiter.err"
    with err.open("w") as err_file:
        waiter = subprocess.Popen([sys.executable, "-c", WAITER, str(tmp_path), str(got)], env=_env(), stderr=err_file)
    _until(lambda: "waiting" in err.read_text() or waiter.poll() is not None, "the waiter to report the holder")
    time.sleep(0.5)
    assert waiter.poll() is None and not got.exists()  # still waiting while the holder holds it
    release.touch()
    assert waiter.wait(timeout=TIMEOUT_S) == 0 and got.exists()
    lines = err.read_text().splitlines()
    assert len(lines) == 1  # said once
    assert f"{tmp_path / LOCK_FILE} is held by pid {proc.pid} (holder under test) since " in lines[0]
    assert lines[0].endswith(": waiting for it to end")
    assert (tmp_path / LOCK_FILE).read_text() == ""  # no holder left recorded


def test_run_with_no_wait_fails_at_once_naming_the_holder(tmp_path: Path, holder) -> None:
    proc, _ = holder
    params = tiny_params_file(tmp_path)  # the lock lives beside the params file
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "--params", str(params), "run", "prepare", "--no-wait"],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode == os.EX_TEMPFAIL, done.stderr[-2000:]
    assert f"error: {tmp_path / LOCK_FILE} is held by pid {proc.pid} (holder under test) since " in done.stderr
    assert "Traceback" not in done.stderr
    assert not any((tmp_path / "data").glob("*"))  # the stage did not start
    assert time.monotonic() - started < TIMEOUT_S / 2


def test_the_lock_records_its_holder_and_is_released_after_an_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="stage failed"):
        with repo_lock(tmp_path, command="python -m pipeline run train") as me:
            assert json.loads((tmp_path / LOCK_FILE).read_text()) == asdict(me)
            assert (me.pid, me.command) == (os.getpid(), "python -m pipeline run train")
            with pytest.raises(LockHeldError, match=rf"held by pid {os.getpid()} \(python -m pipeline run train\)"):
                with repo_lock(tmp_path, command="second", wait=False):
                    pass  # a second open file: flock excludes it even in one process
            raise RuntimeError("stage failed")
    with repo_lock(tmp_path, command="next", wait=False) as me:  # released: free at once
        assert me.command == "next"
