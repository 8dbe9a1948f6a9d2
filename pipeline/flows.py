"""Every DVC stage as a Prefect flow named after it.

`run_stage(name, params)` is what `python -m pipeline run <name>` (and so dvc.yaml) calls.
A stage function in `STAGES` (`pipeline.stage_table`) either does its work and returns a summary, or returns a
`VideoPlan`; a plan is executed here as one Prefect task per video on the task runner chosen
in `params.pipeline` (threads, or Dask), with retries for transient errors, a progress
artifact that moves while it works, and a summary table artifact at the end. The terminal
gets a start line, a progress bar (or plain lines) and an end line (`pipeline.console`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import flow, tags, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from pipeline.code_deps import check_input_deps
from pipeline.console import Progress, format_seconds, format_summary, say
from pipeline.params import Params, PipelineParams
from pipeline.prefect_artifacts import artifact_key, embed_pngs
from pipeline.stage_table import STAGES
from stages.common import VideoError, VideoPlan, VideoResult, guarded

RUN_TAG_ENV = "LACP_RUN_TAG"  # set by `repro`, so every stage run of one repro shares a tag


class StageProgress:
    """Progress of a stage's loop, in both places a person looks: a Prefect progress artifact
    (0-100 %) in the UI and `pipeline.console.Progress` on the terminal.

    Args:
        stage: the stage's name.
        total: units of work in all.
        unit: what one unit is ("video", "step").
        initial: units already done (a resumed run).
    """

    def __init__(self, stage: str, total: int, *, unit: str, initial: int = 0):
        self.total = max(total, 1)
        self.id = create_progress_artifact(
            progress=100.0 * initial / self.total,
            key=artifact_key(stage, "progress"),
            description=f"{stage}: {initial}/{total}",
        )
        self.console = Progress(stage, total, unit=unit, initial=initial)

    def update(self, done: int, *, short: str = "", detail: str = "") -> None:
        update_progress_artifact(self.id, progress=100.0 * done / self.total, description=f"{done}/{self.total}")
        self.console.update(done, short=short, detail=detail)

    def close(self) -> None:
        self.console.close()


class TrainingProgress:
    """The `on_progress` of train: steps with the loss terms of each (`loss_<term>` keys)."""

    def __init__(self, stage: str):
        self.stage = stage
        self.progress: StageProgress | None = None

    def __call__(self, step: int, steps: int, row: dict[str, float]) -> None:
        if self.progress is None:  # the first reported step tells where a resumed run starts
            self.progress = StageProgress(self.stage, steps, unit="step", initial=step - 1)
        terms = {k.removeprefix("loss_"): v for k, v in row.items() if k.startswith("loss_")}
        total = terms.pop("total", float("nan"))
        detail = f"loss {total:.4f} (" + ", ".join(f"{k} {v:.4f}" for k, v in terms.items()) + ")"
        self.progress.update(step, short=f"loss {total:.4f}", detail=detail)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()


def _is_transient(_task, _task_run, state) -> bool:
    """Retry a video task unless it failed on its input (those fail the same way again)."""
    try:
        state.result()
    except (VideoError, ValueError):
        return False
    except Exception:  # noqa: BLE001 - any other error (I/O, worker lost) is worth a retry
        return True
    return False


@task(retry_condition_fn=_is_transient, persist_result=False, cache_policy=NO_CACHE)
def video_task(process: Callable[[str], VideoResult], video_id: str) -> VideoResult:
    """One video of a per-video stage."""
    return guarded(process, video_id)


def make_task_runner(pipe: PipelineParams):
    """The task runner params.pipeline asks for (threads, a local Dask cluster, or a scheduler address)."""
    workers = pipe.max_workers
    if pipe.task_runner == "dask":
        from prefect_dask import DaskTaskRunner  # optional engine, imported only when chosen

        if pipe.dask_address:
            return DaskTaskRunner(address=pipe.dask_address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True})
    return ThreadPoolTaskRunner(max_workers=workers)


def execute_plan(plan: VideoPlan, pipe: PipelineParams) -> dict[str, Any]:
    """Map `video_task` over the plan's videos inside the current flow, then finish."""
    progress = StageProgress(plan.stage, len(plan.videos), unit="video")
    one = video_task.with_options(retries=pipe.retries, retry_delay_seconds=1)
    in_flight = plan.max_workers or pipe.max_workers  # the plan may ask for fewer (e.g. extract: 1)
    pending = list(plan.videos)
    running: list = []
    results: dict[str, VideoResult] = {}
    while pending or running:
        while pending and len(running) < in_flight:
            vid = pending.pop(0)
            running.append(one.with_options(task_run_name=f"{plan.stage}-{vid}").submit(plan.process, vid))
        done = next(as_completed(running))
        running.remove(done)
        result = done.result()
        results[result.video_id] = result
        progress.update(len(results))
    progress.close()
    ordered = [results[vid] for vid in plan.videos]
    failed = [[r.video_id, r.reason] for r in ordered if not r.ok]
    if failed:
        create_table_artifact(
            key=artifact_key(plan.stage, "failures"),
            table=[{"video": v, "reason": why} for v, why in failed],
            description=f"{plan.stage}: videos that failed (the others finished)",
        )
    return plan.finish(ordered)


def stage_body(name: str, params: Params) -> dict[str, Any]:
    """What the flow of stage `name` does; returns the stage summary."""
    started = time.monotonic()
    say(f"[{name}] started")
    step_progress = TrainingProgress(name)  # train reports its steps; the other stages ignore it
    try:
        out = STAGES[name](params, step_progress)
    finally:
        step_progress.close()
    summary = execute_plan(out, params.pipeline) if isinstance(out, VideoPlan) else out
    report = summary.pop("report", None)  # a stage may name a markdown report to publish
    if report:
        markdown = embed_pngs(Path(report).read_text(), base_dir=Path(report).parent)
        create_markdown_artifact(
            key=artifact_key(name, "report"), markdown=markdown, description=f"{name}: report ({report})"
        )
    create_table_artifact(
        key=artifact_key(name, "summary"),
        table=[{"key": k, "value": str(v)} for k, v in summary.items()],
        description=f"{name}: stage summary",
    )
    say(f"[{name}] done in {format_seconds(time.monotonic() - started)}: {format_summary(summary)}")
    return summary


def run_stage(name: str, params: Params) -> dict[str, Any]:
    """Run one stage as a Prefect flow named after it.

    Args:
        name: a key of `STAGES`.
        params: the validated params.

    Returns:
        The stage summary.
    """
    if name not in STAGES:
        raise ValueError(f"unknown stage '{name}'; stages: {', '.join(STAGES)}")
    if Path("dvc.yaml").is_file():  # run by DVC (or by hand in the checkout): inputs must be tracked
        check_input_deps(name, params, Path("dvc.yaml"))
    runner = make_task_runner(params.pipeline)
    stage_flow = flow(name=name, task_runner=runner, log_prints=True, persist_result=False)(stage_body)
    run_tags = [t for t in [os.environ.get(RUN_TAG_ENV)] if t]
    with tags("lacp", *run_tags):
        return stage_flow(name, params)
