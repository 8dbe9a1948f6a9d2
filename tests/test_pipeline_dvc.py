"""End to end through DVC: `dvc repro` on the tiny parameter set in a temporary git repository,
then a label-distribution experiment; `dvc exp show` lists both runs."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from tests.conftest import run_checked, tiny_repo

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(dvc_env) -> dict[str, str]:
    return dvc_env


_run = run_checked


def _evaluate_runs() -> int:
    """How many `evaluate` flow runs the session's test server holds."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with get_client(sync_client=True) as client:
        return len(client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["evaluate"]))))


def _flows_tagged(tag: str) -> list[str]:
    """Sorted flow names of the runs on the session's test server that carry `tag`."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    with get_client(sync_client=True) as client:
        names = {f.id: f.name for f in client.read_flows()}
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag])))
    return sorted(names[r.flow_id] for r in runs)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return tiny_repo(tmp_path_factory.mktemp("repo"))


def test_repro_then_experiment(repo: Path, env: dict[str, str]):
    # 1. the whole DAG from raw (rendered) videos; its stage runs land on the test server
    evaluations = _evaluate_runs()
    _run([sys.executable, "-m", "dvc", "repro"], repo, env)
    assert _evaluate_runs() == evaluations + 1
    metrics = json.loads((repo / "metrics" / "eval" / "metrics.json").read_text())
    for t in ("0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7"):
        assert 0.0 <= metrics[f"mAP@{t}"] <= 1.0

    # 2. nothing to do a second time
    again = _run([sys.executable, "-m", "dvc", "repro"], repo, env)
    assert "Running stage" not in again.stdout

    # 3. a distribution experiment reruns points, train and what follows train only
    _run(["git", "add", "-A"], repo, env)
    _run(["git", "commit", "-qm", "baseline run"], repo, env)
    exp = _run([sys.executable, "-m", "dvc", "exp", "run", "-S", "points.distribution=uniform"], repo, env)
    ran = {line.split("'")[1] for line in exp.stdout.splitlines() if line.startswith("Running stage")}
    assert ran == {"points", "train", "evaluate", "analyze", "pseudo", "selftrain", "evaluate_selftrain"}

    shown = json.loads(_run([sys.executable, "-m", "dvc", "exp", "show", "--json"], repo, env).stdout)
    distributions = []
    for entry in shown:
        for rev in [entry] + [r for e in entry.get("experiments") or [] for r in e.get("revs") or []]:
            params = ((rev.get("data") or {}).get("params") or {}).get("params.yaml", {}).get("data", {})
            if params:
                distributions.append(params["points"]["distribution"])
    assert "gaussian" in distributions and "uniform" in distributions

    # 4. the same through Prefect (`make run`'s command): the repro's own flow run and the stage
    #    runs under it share one tag, the filter the UI offers for one repro
    done = _run([sys.executable, "-m", "pipeline", "repro", "-S", "points.distribution=beta"], repo, env)
    log = done.stdout + done.stderr
    ran = set(re.findall(r"Running stage '(\w+)'", log))
    downstream = {"points", "train", "evaluate", "analyze", "pseudo", "selftrain", "evaluate_selftrain"}
    assert {"points", "train"} <= ran <= downstream  # those two: unless DVC's run cache has them
    tag = re.search(r"\(Prefect tag (repro-[\w-]+)\)", log)
    assert tag, "the repro flow logs no tag"
    assert _flows_tagged(tag[1]) == sorted(ran | {"repro"})
