"""End to end through DVC: `dvc repro` on the tiny parameter set in a temporary git repository,
then a label-distribution experiment; `dvc exp show` lists both runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.params import merge
from tests.conftest import REPO, TINY

pytestmark = pytest.mark.slow


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(argv)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def _copy_worktree(dst: Path) -> None:
    """The files git tracks or would track (not ignored), as a fresh repository."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file() and not rel.startswith(("metrics/", "study/")) and rel != "dvc.lock":
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    _copy_worktree(root)
    raw = merge(yaml.safe_load((root / "params.yaml").read_text()), TINY)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    _run(["git", "init", "-q"], root)
    _run(["git", "config", "user.email", "test@localhost"], root)
    _run(["git", "config", "user.name", "test"], root)
    _run(["git", "add", "-A"], root)
    _run(["git", "commit", "-qm", "tiny"], root)
    return root


def test_repro_then_experiment(repo: Path):
    # 1. the whole DAG from raw (rendered) videos
    _run([sys.executable, "-m", "dvc", "repro"], repo)
    metrics = json.loads((repo / "metrics" / "eval" / "metrics.json").read_text())
    for t in ("0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7"):
        assert 0.0 <= metrics[f"mAP@{t}"] <= 1.0

    # 2. nothing to do a second time
    again = _run([sys.executable, "-m", "dvc", "repro"], repo)
    assert "Running stage" not in again.stdout

    # 3. a distribution experiment reruns points, train and evaluate only
    _run(["git", "add", "-A"], repo)
    _run(["git", "commit", "-qm", "baseline run"], repo)
    exp = _run([sys.executable, "-m", "dvc", "exp", "run", "-S", "points.distribution=uniform"], repo)
    ran = {line.split("'")[1] for line in exp.stdout.splitlines() if line.startswith("Running stage")}
    assert ran == {"points", "train", "evaluate"}

    shown = json.loads(_run([sys.executable, "-m", "dvc", "exp", "show", "--json"], repo).stdout)
    distributions = []
    for entry in shown:
        for rev in [entry] + [r for e in entry.get("experiments") or [] for r in e.get("revs") or []]:
            params = ((rev.get("data") or {}).get("params") or {}).get("params.yaml", {}).get("data", {})
            if params:
                distributions.append(params["points"]["distribution"])
    assert "gaussian" in distributions and "uniform" in distributions
