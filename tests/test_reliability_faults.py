"""Fault injection: real stages under the faults a user's disk and machine produce.

Each fault runs the stage in a child process (so a kill or a file size limit ends only it):

- a full disk: `RLIMIT_FSIZE` below the size of the file being written, with SIGXFSZ ignored,
  so the write fails half-way (EFBIG, as ENOSPC on a full disk);
- a kill between a data write and the write that marks it finished (decode's sidecar after
  the mp4, the points report after points.csv, model.json after model.pt): the child
  `os._exit`s as the marking write starts, as a SIGKILL there would end it (no `finally` runs);
- a read-only output folder: mode 0555 for a user; for root, whose writes ignore the mode
  bits, a read-only bind mount of the folder in the child's own mount namespace (`unshare`),
  so creating a file there really fails (EACCES or EROFS).

For each: the error names the file being written; every file that existed before is
byte-identical (the folder's hashes before and after; a killed run's completed output is
whole); and a clean rerun completes with the bytes of an uninterrupted run. The stages are
decode (per-video outputs with sidecars and a manifest) and points (three outputs) on a tiny
rendered dataset, and train's model write on tiny synthetic features.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.files import TMP_PREFIX
from tests.conftest import REPO, tiny_params_file

KILLED = 137  # the exit status of the injected kill (a shell's for SIGKILL)
# root's read-only folder: the child in a mount namespace of its own where the folder ($0) is read-only
READ_ONLY_BIND = [
    "unshare",
    "--mount",
    "--propagation",
    "private",
    "sh",
    "-c",
    'mount --bind -o ro "$0" "$0" && exec "$@"',
]

# Smaller than tests/conftest.py TINY: three short videos give earlier artifacts to keep.
FAULTS = {
    "dataset": {"synthetic": {"num_train": 2, "num_test": 1, "duration_s": [2.0, 3.0], "instances_per_video": [1, 1]}}
}
OLD_POINTS = {"points": {"distribution": "center"}}  # the earlier points run that a rerun replaces
TRAIN = {"steps": 2, "batch": 2, "search_every": 2, "checkpoint_every": 1, "device": "cpu", "validation_share": 0}

# The child: a fault, then one stage (`run_stage`). argv[1]: the JSON spec of `run_child`.
CHILD = r"""
import contextlib, json, os, resource, signal, sys
from pathlib import Path

spec = json.loads(sys.argv[1])
sys.path.insert(0, spec["repo"])
if spec["kill_at"]:  # patched before any stage module binds the writer
    import core.files as files

    real = files.atomic_path

    @contextlib.contextmanager
    def killing(path, **kwargs):
        if Path(path).name == spec["kill_at"]:
            os._exit(spec["killed"])
        with real(path, **kwargs) as tmp:
            yield tmp

    files.atomic_path = killing
from tests.test_reliability_faults import run_stage

if spec["file_size_limit"]:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (spec["file_size_limit"], spec["file_size_limit"]))
run_stage(spec["stage"], Path(spec["params"]))
"""


def run_stage(stage: str, params_file: Path) -> None:
    """Run `stage` ("decode", "points" or "train") with the params and paths of `params_file`.

    Called as `pipeline.stage_table` calls them, but without importing the whole pipeline
    (torch and every stage), so that a child starts in a fraction of a second. Train reads
    `write_tiny_inputs`' files (tests/test_lacp_splits.py) beside `params_file`.
    """
    raw = yaml.safe_load(params_file.read_text())
    paths = {key: Path(value) for key, value in raw["paths"].items()}
    if stage == "decode":
        from stages import decode
        from stages.common import run_plan

        run_plan(
            decode.plan(decode.DecodeParams(**raw["decode"]), dataset_dir=paths["dataset"], out_dir=paths["decoded"])
        )
    elif stage == "points":
        from stages import points

        points.run(
            points.PointsParams(**raw["points"]),
            dataset_dir=paths["dataset"],
            out_dir=paths["points"],
            report_dir=paths["points_report"],
        )
    elif stage == "train":
        from lacp.proposals import DetectionConfig
        from stages import train

        root = params_file.parent
        train.run(
            train.TrainParams(**TRAIN),
            detection=DetectionConfig(),
            dataset_dir=root / "dataset",
            features=root / "features.h5",
            points_dir=root / "points",
            model_dir=paths["model"],
            log_dir=paths["train_log"],
            pseudo_labels_path=paths["pseudo_labels"],
        )
    else:
        raise ValueError(f"run_stage: unknown stage {stage!r}, expected decode, points or train")


def run_child(
    stage: str, params_file: Path, *, file_size_limit: int = 0, kill_at: str = "", read_only: Path | None = None
) -> subprocess.CompletedProcess:
    """Run `stage` in a child process under one fault (module docstring).

    Args:
        file_size_limit: bytes: RLIMIT_FSIZE, set once the child has imported the stage.
        kill_at: a file name: the child exits with `KILLED` as its write starts.
        read_only: a folder the child cannot write (mode 0555 for the run; for root
            `READ_ONLY_BIND`, and the test skips where root cannot mount).
    """
    spec = {
        "repo": str(REPO),
        "stage": stage,
        "params": str(params_file),
        "file_size_limit": file_size_limit,
        "kill_at": kill_at,
        "killed": KILLED,
    }
    argv = [sys.executable, "-c", CHILD, json.dumps(spec)]
    as_root = read_only is not None and os.geteuid() == 0
    if as_root:
        if shutil.which("unshare") is None:
            pytest.skip("root ignores a folder's mode bits and `unshare` (a read-only bind mount) is missing")
        argv = [*READ_ONLY_BIND, str(read_only), *argv]
    elif read_only is not None:
        read_only.chmod(0o555)
    try:
        result = subprocess.run(
            argv,
            cwd=REPO,
            env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"),
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        if read_only is not None and not as_root:
            read_only.chmod(0o755)
    if as_root and result.stderr.startswith(("unshare:", "mount:")):
        pytest.skip(f"root ignores a folder's mode bits and cannot mount it read-only here: {result.stderr.strip()}")
    return result


def run_with_file_size_limit(setup: str, act: str, *, file_size_limit: int) -> subprocess.CompletedProcess:
    """Run Python `setup`, then `act` with writes limited to `file_size_limit` bytes per file (a
    write past it fails half-way, as on a full disk), in a child with the checkout on its path."""
    code = (
        f"import resource, signal, sys\nsys.path.insert(0, {str(REPO)!r})\n{setup}\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({file_size_limit}, {file_size_limit}))\n{act}\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"),
        capture_output=True,
        text=True,
        timeout=300,
    )


def digest(root: Path) -> dict[str, str]:
    """relative path -> SHA-256 of every file under `root`."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def params_file(root: Path, overlay: dict[str, Any] | None = None) -> Path:
    """The tiny params with FAULTS (and `overlay`) merged in, every path under `root`."""
    from pipeline.params import merge

    root.mkdir(parents=True, exist_ok=True)
    path = tiny_params_file(root)
    path.write_text(
        yaml.safe_dump(merge(merge(yaml.safe_load(path.read_text()), FAULTS), overlay or {}), sort_keys=False)
    )
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module's folder: the reference runs and one folder per faulted run."""
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="module")
def reference(world: Path) -> Path:
    """An uninterrupted run (prepare, decode, points) in `reference/`, and `old/`: an earlier
    points run with other params, whose outputs the faulted runs find in place."""
    from pipeline.params import load_params
    from stages import prepare

    ref = world / "reference"
    params = load_params(params_file(ref))
    prepare.run(params.dataset, out_dir=params.paths.dataset, workers=1)
    run_stage("decode", ref / "params.yaml")
    run_stage("points", ref / "params.yaml")
    old = world / "old"
    shutil.copytree(ref / "data" / "dataset", old / "data" / "dataset")
    run_stage("points", params_file(old, OLD_POINTS))
    return ref


def victim(reference: Path) -> str:
    """The decoded video the faulted decode runs must (re)make: the last one."""
    return sorted(p.stem for p in (reference / "data" / "decoded").glob("*.mp4"))[-1]


def outputs(stage: str, reference: Path) -> dict[str, str]:
    """What the faulted run writes, first to last: role -> path relative to the run's folder."""
    if stage == "decode":
        vid = victim(reference)
        return {
            "data": f"data/decoded/{vid}.mp4",
            "marker": f"data/decoded/{vid}.json",
            "manifest": "data/decoded/manifest.json",
        }
    return {
        "data": "data/points/points.csv",
        "marker": "metrics/points/relative_position.png",
        "report": "metrics/points/report.json",
    }


def earlier_state(stage: str, world: Path, reference: Path, name: str) -> Path:
    """A run folder as a user has it before the faulted run: the dataset, and for decode every
    video decoded but the victim (an earlier interrupted run: its manifest still lists it);
    for points the outputs of the earlier run with other params."""
    root = world / name
    params_file(root)
    shutil.copytree(reference / "data" / "dataset", root / "data" / "dataset")
    if stage == "decode":
        shutil.copytree(reference / "data" / "decoded", root / "data" / "decoded")
        for rel in list(outputs(stage, reference).values())[:2]:
            (root / rel).unlink()
    else:
        for rel in outputs(stage, reference).values():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(world / "old" / rel, root / rel)
    return root


def assert_clean_rerun(stage: str, root: Path, reference: Path) -> None:
    """A rerun without faults completes; every file then equals the uninterrupted run's."""
    run_stage(stage, root / "params.yaml")
    found, wanted = digest(root), digest(reference)
    assert [p for p in found if TMP_PREFIX in p] == []
    for folder in {Path(rel).parent.as_posix() for rel in outputs(stage, reference).values()}:
        mine = {p: h for p, h in found.items() if p.startswith(folder + "/")}
        assert mine == {p: h for p, h in wanted.items() if p.startswith(folder + "/")}, f"{folder} differs"


@pytest.mark.parametrize("stage", ["decode", "points"])
def test_a_write_failing_half_way_names_the_file_and_changes_nothing(stage: str, world: Path, reference: Path) -> None:
    root = earlier_state(stage, world, reference, f"full-disk-{stage}")
    first = outputs(stage, reference)["data"]
    before = digest(root)
    limit = (reference / first).stat().st_size // 2  # the first write stops half-way
    result = run_child(stage, root / "params.yaml", file_size_limit=limit)
    assert result.returncode == 1, result.stderr[-2000:]
    assert f"[Errno 27] File too large: '{root / first}'" in result.stderr, result.stderr[-2000:]
    assert digest(root) == before  # nothing written, nothing half-written, no temporary file left
    assert_clean_rerun(stage, root, reference)


@pytest.mark.parametrize("stage", ["decode", "points"])
def test_a_kill_before_the_marking_write_leaves_whole_files_and_reruns(
    stage: str, world: Path, reference: Path
) -> None:
    root = earlier_state(stage, world, reference, f"kill-{stage}")
    written = outputs(stage, reference)
    before = digest(root)
    result = run_child(stage, root / "params.yaml", kill_at=Path(written["marker"]).name)
    assert result.returncode == KILLED, result.stderr[-2000:]
    after = digest(root)
    assert after[written["data"]] == digest(reference)[written["data"]]  # the data file is whole
    assert {p: h for p, h in after.items() if p != written["data"]} == {
        p: h for p, h in before.items() if p != written["data"]
    }
    assert_clean_rerun(stage, root, reference)


@pytest.mark.parametrize("stage", ["decode", "points"])
def test_a_read_only_output_folder_names_the_file_and_changes_nothing(stage: str, world: Path, reference: Path) -> None:
    root = earlier_state(stage, world, reference, f"read-only-{stage}")
    first = outputs(stage, reference)["data"]
    before = digest(root)
    result = run_child(stage, root / "params.yaml", read_only=(root / first).parent)
    assert result.returncode == 1, result.stderr[-2000:]
    named = (f"[Errno 13] Permission denied: '{root / first}'", f"[Errno 30] Read-only file system: '{root / first}'")
    assert any(text in result.stderr for text in named), result.stderr[-2000:]
    assert digest(root) == before
    assert_clean_rerun(stage, root, reference)


def test_a_kill_between_model_pt_and_model_json_keeps_the_inputs_and_reruns(world: Path) -> None:
    from stages.training_log import resume_dir
    from tests.test_lacp_splits import write_tiny_inputs

    def prepared(name: str) -> Path:
        root = world / name
        params_file(root)
        write_tiny_inputs(root)
        return root

    ref, root = prepared("train-reference"), prepared("train-kill")
    run_stage("train", ref / "params.yaml")
    model = Path("models/lacp")
    other = resume_dir(root / model) / "0123456789abcdef"  # another run's checkpoint, to resume later
    other.mkdir(parents=True)
    (other / "checkpoint.pt").write_bytes(b"another run's checkpoint")
    before = digest(root)
    result = run_child("train", root / "params.yaml", kill_at="model.json")
    assert result.returncode == KILLED, result.stderr[-2000:]
    assert (root / model / "model.pt").read_bytes() == (ref / model / "model.pt").read_bytes()  # whole
    assert not (root / model / "model.json").exists()
    after = digest(root)
    assert all(after[p] == h for p, h in before.items())  # the inputs and the other run's checkpoint
    run_stage("train", root / "params.yaml")  # resumes from its last checkpoint
    for name in ("model.pt", "model.json", "split.json"):
        assert (root / model / name).read_bytes() == (ref / model / name).read_bytes(), name
    assert [p.name for p in resume_dir(root / model).iterdir()] == [other.name]
