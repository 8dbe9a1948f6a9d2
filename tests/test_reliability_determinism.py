"""Determinism: two full runs of the tiny end-to-end parameter set on CPU with one seed give
identical artifacts - byte-identical points.csv and metrics.json, and every artifact between.

The stage functions run directly (no Prefect), each run in its own folder. The first run
(`tiny_run(..., "a")`, cached for the pytest process) is also the uninterrupted reference of
tests/test_reliability_interrupt.py.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch
import yaml

from pipeline.params import Params, load_params, merge
from pipeline.stage_table import STAGES
from stages.artifacts import read_training_log
from stages.common import VideoPlan, run_plan
from tests.conftest import tiny_params_file

STAGE_ORDER = [
    "prepare",
    "decode",
    "flow",
    "weights",
    "extract",
    "points",
    "train",
    "evaluate",
    "pseudo",
    "selftrain",
    "evaluate_selftrain",
]

# Over tests/conftest.py TINY: CPU everywhere, 32 px crops (I3D costs a quarter of TINY's 64 px).
RELIABILITY = {
    "extract": {"crop": 32, "device": "cpu"},
    "train": {"device": "cpu"},
    "evaluate": {"device": "cpu"},
}


def reliability_params_file(root: Path) -> Path:
    """params.yaml of the tiny set with RELIABILITY merged over it, every path under `root`."""
    path = tiny_params_file(root)
    raw = merge(yaml.safe_load(path.read_text()), RELIABILITY)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def run_stage_directly(
    name: str, params: Params, progress: Callable[[int, int, dict], None] | None = None
) -> dict[str, Any]:
    """One stage without Prefect: the flow's stage function, its plan executed serially."""
    out = STAGES[name](params, progress or (lambda step, steps, row: None))
    return run_plan(out) if isinstance(out, VideoPlan) else out


def tiny_run(tmp_path_factory: pytest.TempPathFactory, key: str) -> Params:
    """The whole tiny pipeline run once per session in `<basetemp>/tiny-run-<key>`.

    The cache is the folder (marked complete at the end), not a module variable: pytest may
    import this module twice (as a test module, and from the interrupt tests).
    """
    root = tmp_path_factory.getbasetemp() / f"tiny-run-{key}"
    if not (root / "complete").exists():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir()
        params = load_params(reliability_params_file(root))
        for name in STAGE_ORDER:
            run_stage_directly(name, params)
        (root / "complete").touch()
    return load_params(root / "params.yaml")


def h5_contents(path: Path) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
    """Every dataset of an HDF5 file: name -> (array, attrs); file attrs under '/'."""
    out: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            out[name] = (obj[()], dict(obj.attrs))

    with h5py.File(path, "r") as h5:
        out["/"] = (np.empty(0), dict(h5.attrs))
        h5.visititems(visit)
    return out


def assert_same_h5(a: Path, b: Path) -> None:
    """Same datasets with identical arrays (dtype, shape, bytes) and attrs."""
    left, right = h5_contents(a), h5_contents(b)
    assert sorted(left) == sorted(right), f"{a} and {b} hold different datasets"
    for name, (array, attrs) in left.items():
        other, other_attrs = right[name]
        assert array.dtype == other.dtype and array.shape == other.shape, f"{a}:{name}"
        assert array.tobytes() == other.tobytes(), f"{a}:{name} differs from {b}"
        assert attrs.keys() == other_attrs.keys(), f"{a}:{name} attrs"
        for key, value in attrs.items():
            assert np.array_equal(value, other_attrs[key]), f"{a}:{name} attr {key}"


def assert_same_state_dict(a: Path, b: Path, *, atol: float = 0.0) -> None:
    """Two torch state_dict files (read with weights_only=True) hold identical tensors
    (or, with `atol`, tensors that differ by at most `atol`)."""
    left = torch.load(a, map_location="cpu", weights_only=True)
    right = torch.load(b, map_location="cpu", weights_only=True)
    assert left.keys() == right.keys()
    for key, tensor in left.items():
        diff = (tensor - right[key]).abs().max().item()
        assert tensor.dtype == right[key].dtype and diff <= atol, f"{a}: {key} differs by up to {diff:.3g}"


def _files(folder: Path, pattern: str) -> list[str]:
    return sorted(p.name for p in folder.glob(pattern) if not p.name.startswith(".tmp-"))


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> tuple[Params, Params]:
    return tiny_run(tmp_path_factory, "a"), tiny_run(tmp_path_factory, "b")


@pytest.mark.slow
def test_points_and_metrics_are_byte_identical(two_runs):
    a, b = (run.paths for run in two_runs)
    assert (a.points / "points.csv").read_bytes() == (b.points / "points.csv").read_bytes()
    assert (a.evaluation / "metrics.json").read_bytes() == (b.evaluation / "metrics.json").read_bytes()
    metrics = json.loads((a.evaluation / "metrics.json").read_text())
    assert metrics["videos"] == 2 and 0.0 <= metrics["mAP@0.5"] <= 1.0
    assert (a.points / "points.csv").read_text().count("\n") > 1  # a header and at least one point


@pytest.mark.slow
@pytest.mark.parametrize(
    "artifact",
    ["dataset", "decoded", "flow", "weights", "features", "model", "train_log", "predictions"],
)
def test_every_intermediate_artifact_is_identical(two_runs, artifact: str):
    a, b = (run.paths for run in two_runs)
    if artifact == "dataset":
        for name in ("annotations.json", "videos.json"):
            assert (a.dataset / name).read_bytes() == (b.dataset / name).read_bytes(), name
        rendered = _files(a.dataset / "videos", "*.mp4")
        assert len(rendered) == 6 and rendered == _files(b.dataset / "videos", "*.mp4")
        for name in rendered:
            assert (a.dataset / "videos" / name).read_bytes() == (b.dataset / "videos" / name).read_bytes(), name
    elif artifact == "decoded":
        names = _files(a.decoded, "*.mp4")
        assert len(names) == 6 and names == _files(b.decoded, "*.mp4")
        for name in names:
            assert (a.decoded / name).read_bytes() == (b.decoded / name).read_bytes(), name
        assert json.loads((a.decoded / "manifest.json").read_text()) == json.loads(
            (b.decoded / "manifest.json").read_text()
        )
    elif artifact == "flow":
        names = _files(a.flow, "*.h5")
        assert len(names) == 6 and names == _files(b.flow, "*.h5")
        for name in names:
            assert_same_h5(a.flow / name, b.flow / name)
    elif artifact == "weights":
        for name in ("rgb.pt", "flow.pt"):
            assert_same_state_dict(a.weights / name, b.weights / name)
    elif artifact == "features":
        assert_same_h5(a.features, b.features)
    elif artifact == "model":
        assert_same_state_dict(a.model / "model.pt", b.model / "model.pt")
        assert (a.model / "model.json").read_bytes() == (b.model / "model.json").read_bytes()
    elif artifact == "train_log":
        assert read_training_log(a.train_log) == read_training_log(b.train_log)  # every value, timestamps aside
        assert (a.train_log / "metrics.json").read_bytes() == (b.train_log / "metrics.json").read_bytes()
    else:
        assert (a.evaluation / "predictions.json").read_bytes() == (b.evaluation / "predictions.json").read_bytes()
