"""pipeline/console.py: what the terminal shows (start/end lines, progress, relayed output)."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

from pipeline import console
from pipeline.console import Progress, format_seconds, format_summary, relay
from tests.conftest import REPO, tiny_params_file


def test_format_seconds() -> None:
    assert [format_seconds(s) for s in (4.04, 59.94, 61, 3725)] == ["4.0 s", "59.9 s", "1m01s", "1h02m"]


def test_format_summary_keeps_numbers_and_short_words() -> None:
    summary = {
        "videos": 6,
        "failed": 0,
        "rate": 0.123456,
        "source": "synthetic",
        "ok": True,
        "sha256": "df62c0e9576ae0ce3179f0dc550e489fed4801da",
        "table": {"a": 1},
    }
    assert format_summary(summary) == "videos 6, failed 0, rate 0.1235, source synthetic"


def test_lines_mode_prints_every_tenth_with_rate_and_eta(monkeypatch, caplog) -> None:
    clock = iter(float(t) for t in range(100))
    monkeypatch.setattr(console.time, "monotonic", lambda: next(clock))
    caplog.set_level(logging.INFO, logger=console.CONSOLE_LOGGER)
    progress = Progress("decode", 20, unit="video", mode="lines")  # started at t = 0
    for done in range(1, 21):
        progress.update(done, detail="x")  # one unit per second
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 9  # 2/20, 4/20, ..., 18/20: the end line of the stage says the rest
    assert lines[0] == "[decode] 2/20 videos (10%), 1 video/s, ETA 18.0 s, x"
    assert lines[-1].startswith("[decode] 18/20 videos (90%)")


def test_lines_mode_of_a_resumed_loop_counts_only_new_work(monkeypatch, caplog) -> None:
    clock = iter([0.0, 10.0])
    monkeypatch.setattr(console.time, "monotonic", lambda: next(clock))
    caplog.set_level(logging.INFO, logger=console.CONSOLE_LOGGER)
    progress = Progress("train", 300, unit="step", initial=150, mode="lines")
    progress.update(180)
    [line] = [r.getMessage() for r in caplog.records]
    assert line == "[train] 180/300 steps (60%), 3 step/s, ETA 40.0 s"


def test_bar_mode_draws_tqdm_to_stderr(monkeypatch, capsys) -> None:
    progress = Progress("train", 4, unit="step", mode="bar")
    for step in range(1, 5):
        progress.update(step, short="loss 1.2345")
    progress.close()
    err = capsys.readouterr().err
    assert "train" in err and "4/4" in err and "loss 1.2345" in err and "\r" in err


def test_relay_copies_bytes_and_yields_what_a_person_saw() -> None:
    read, write = os.pipe()
    os.write(write, b"Running stage 'x':\ntrain:  50%|#   | 1/2\rtrain: 100%|####| 2/2\n\x1b[32mdone\x1b[0m\nlast")
    os.close(write)
    out = io.StringIO()
    with os.fdopen(read, "rb", buffering=0) as stream:
        lines = list(relay(stream, out))
    assert lines == ["Running stage 'x':", "train: 100%|####| 2/2", "done", "last"]
    assert "\r" in out.getvalue() and out.getvalue().endswith("last")


def test_console_filter_hides_prefect_info_unless_verbose() -> None:
    def record(name: str, level: int, **extra) -> logging.LogRecord:
        rec = logging.LogRecord(name, level, __file__, 1, "Finished in state Completed()", None, None)
        rec.__dict__.update(extra)
        return rec

    quiet, loud = console._ConsoleFilter(verbose=False), console._ConsoleFilter(verbose=True)
    assert not quiet.filter(record("prefect.task_runs", logging.INFO))
    assert loud.filter(record("prefect.task_runs", logging.INFO))
    assert quiet.filter(record("prefect.flow_runs", logging.WARNING))
    assert quiet.filter(record("stages.train", logging.INFO))
    assert not loud.filter(record("prefect.flow_runs", logging.INFO, relayed=True))


def test_a_per_video_stage_prints_start_progress_and_end_lines(tmp_path: Path, prefect_harness) -> None:
    """stdout and stderr are pipes (as in CI or `dvc repro > log`): plain lines, no Prefect state lines."""
    from prefect.settings import PREFECT_API_URL

    params = tiny_params_file(tmp_path)
    env = dict(os.environ, PREFECT_API_URL=str(PREFECT_API_URL.value()), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    env.pop(console.PROGRESS_ENV, None)
    env.pop(console.VERBOSE_ENV, None)
    run = lambda *argv: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "pipeline", "--params", str(params), *argv],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run("run", "prepare").returncode == 0
    done = run("run", "decode")
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout + done.stderr
    lines = out.splitlines()
    assert lines[0] == "[decode] started"
    assert re.fullmatch(
        r"\[decode\] done in \d+\.\d s: videos 6, decoded 6, skipped 0, failed 0, missing_sources 0, frames_out \d+",
        lines[-1],
    )
    progress = [
        line for line in lines if re.fullmatch(r"\[decode\] \d/6 videos \(\d+%\), [\d.]+ video/s, ETA .+", line)
    ]
    assert len(progress) == 5  # 1/6 ... 5/6: every tenth of six videos is a video
    assert "Finished in state" not in out and "Beginning flow run" not in out
    assert done.stdout == ""  # human lines go to stderr; stdout stays for data (`--json`)

    verbose = run("-v", "run", "decode")  # the videos are done now: skipped, and Prefect's lines are back
    assert verbose.returncode == 0 and "Finished in state" in verbose.stderr
    assert re.search(r"^\[decode\] done in \d+\.\d s: videos 6, decoded 0, skipped 6, failed 0", verbose.stderr, re.M)
