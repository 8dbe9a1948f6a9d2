"""Tests of bench/default_run.py: the stage end lines it times the run by."""

from __future__ import annotations

import pytest

from bench.default_run import stage_seconds
from pipeline.console import format_seconds


@pytest.mark.parametrize("seconds", [0.4, 42.1, 185.0, 3725.0 - 5.0])
def test_end_line_seconds_read_back_what_the_console_wrote(seconds):
    line = f"[extract] done in {format_seconds(seconds)}: videos 60, extracted 60"
    stage, read = stage_seconds(line)
    assert stage == "extract"
    assert read == pytest.approx(seconds, abs=60 if seconds >= 3600 else 0.5 if seconds >= 60 else 0.05)


def test_other_lines_are_not_end_lines():
    assert stage_seconds("Running stage 'extract':") is None
    assert stage_seconds("[extract] started: 60 videos") is None
