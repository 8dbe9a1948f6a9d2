"""`pipeline.task_runner: dask` (two local worker processes) gives the thread runner's outputs.

The tiny dataset is prepared and the I3D weights converted once; decode, flow and extract
then run under each runner into their own folders, and every output is compared exactly.
Under Dask, decode starts its own local cluster (`dask_address: ""`, the default), while
flow and extract share one already running cluster through `dask_address` (starting worker
processes and importing torch in them costs ~15 s per cluster, so this keeps the test short
and covers both ways of reaching Dask).
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
from distributed import Client, LocalCluster

from features.video import read_decoded_frames
from pipeline.flows import make_task_runner, run_stage
from pipeline.params import Params, PipelineParams, load_params
from stages import decode
from stages.common import VideoResult
from tests.conftest import tiny_params_file

pytestmark = pytest.mark.slow

RUNNERS = ("threads", "dask")
PER_VIDEO = ("decode", "flow", "extract")


def runner_params(root: Path, runner: str, *, address: str = "") -> Params:
    """Tiny params that share the prepared dataset and weights but write per-video outputs
    under `root/<runner>/`."""
    own = root / runner
    return load_params(
        root / "params.yaml",
        overrides={
            "pipeline": {
                "task_runner": runner,
                "max_workers": 2,
                "dask_address": address,
            },
            "paths": {
                "decoded": str(own / "decoded"),
                "flow": str(own / "flow"),
                "features": str(own / "features.h5"),
            },
        },
    )


def tasks_done(client: Client) -> int:
    """How many tasks the cluster's workers have finished so far."""
    return client.run_on_scheduler(
        lambda dask_scheduler: sum(p.state_counts.get("memory", 0) for p in dask_scheduler.task_prefixes.values())
    )


@dataclass
class Runs:
    params: dict[str, Params]  # runner -> its params
    summaries: dict[str, dict[str, dict]]  # runner -> stage -> summary
    dask_tasks: int  # tasks the shared cluster's workers ran (flow + extract)


@pytest.fixture(scope="module")
def both_runs(tmp_path_factory, prefect_harness) -> Runs:
    """decode, flow and extract of the tiny set under each runner."""
    root = tmp_path_factory.mktemp("dask")
    base = load_params(tiny_params_file(root))
    run_stage("prepare", base)
    run_stage("weights", base)
    params = {runner: runner_params(root, runner) for runner in RUNNERS}
    summaries = {"threads": {stage: run_stage(stage, params["threads"]) for stage in PER_VIDEO}}
    summaries["dask"] = {"decode": run_stage("decode", params["dask"])}  # a local cluster of its own
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        shared = runner_params(root, "dask", address=cluster.scheduler_address)
        summaries["dask"] |= {stage: run_stage(stage, shared) for stage in ("flow", "extract")}
        with Client(cluster) as client:
            dask_tasks = tasks_done(client)
    return Runs(params=params, summaries=summaries, dask_tasks=dask_tasks)


def test_dask_runner_is_a_local_two_process_cluster():
    from prefect_dask import DaskTaskRunner

    runner = make_task_runner(PipelineParams(task_runner="dask", max_workers=2))
    assert isinstance(runner, DaskTaskRunner)
    assert runner.cluster_kwargs == {
        "n_workers": 2,
        "threads_per_worker": 1,
        "processes": True,
    }
    remote = make_task_runner(PipelineParams(task_runner="dask", dask_address="tcp://10.0.0.1:8786"))
    assert remote.address == "tcp://10.0.0.1:8786"


def test_plan_functions_and_results_pickle_by_reference(both_runs):
    """What Dask ships to its workers: the plan's partial (plain pickle, no closures) and results."""
    params = both_runs.params["dask"]
    plan = decode.plan(params.decode, dataset_dir=params.paths.dataset, out_dir=params.paths.decoded)
    process = pickle.loads(pickle.dumps(plan.process))
    assert process.func is decode.decode_one and process.keywords["params"] == params.decode
    result = VideoResult(video_id="v", ok=False, info={"frames_out": 3}, reason="too short")
    assert pickle.loads(pickle.dumps(result)) == result


def test_same_summaries(both_runs):
    threads, dask = (both_runs.summaries[r] for r in RUNNERS)
    assert threads == dask
    assert both_runs.dask_tasks == 12  # 6 flow + 6 extract videos ran on the Dask workers
    assert dask["decode"]["decoded"] == 6 and dask["decode"]["failed"] == 0
    assert dask["flow"]["computed"] == 6
    assert dask["extract"]["extracted"] == 6


def test_same_decoded_videos(both_runs):
    pt, pd = (both_runs.params[r] for r in RUNNERS)
    manifest_t = json.loads((pt.paths.decoded / "manifest.json").read_text())
    manifest_d = json.loads((pd.paths.decoded / "manifest.json").read_text())
    assert manifest_t == manifest_d and len(manifest_t["videos"]) == 6
    for vid in manifest_t["videos"]:
        frames_t = read_decoded_frames(pt.paths.decoded / f"{vid}.mp4")  # (N, H, W, 3)
        frames_d = read_decoded_frames(pd.paths.decoded / f"{vid}.mp4")
        assert frames_t.shape[0] == manifest_t["videos"][vid]["frames_out"]
        np.testing.assert_array_equal(frames_t, frames_d, err_msg=vid)


def test_same_flow_and_features(both_runs):
    pt, pd = (both_runs.params[r] for r in RUNNERS)
    for vid in json.loads((pt.paths.decoded / "manifest.json").read_text())["videos"]:
        with (
            h5py.File(pt.paths.flow / f"{vid}.h5", "r") as ft,
            h5py.File(pd.paths.flow / f"{vid}.h5", "r") as fd,
        ):
            np.testing.assert_array_equal(ft["flow"][()], fd["flow"][()], err_msg=vid)  # (N, H, W, 2)
    with (
        h5py.File(pt.paths.features, "r") as ht,
        h5py.File(pd.paths.features, "r") as hd,
    ):
        assert dict(ht.attrs) == dict(hd.attrs)
        for modality in ("rgb", "flow"):
            assert sorted(ht[modality]) == sorted(hd[modality]) and len(ht[modality]) == 6
            for vid in ht[modality]:
                a, b = ht[modality][vid], hd[modality][vid]  # (T, 1024)
                assert dict(a.attrs) == dict(b.attrs)
                np.testing.assert_array_equal(a[()], b[()], err_msg=f"{modality}/{vid}")
