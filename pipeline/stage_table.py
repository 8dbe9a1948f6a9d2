"""What each DVC stage runs: stage name -> a call of its `stages` function with the params.

Kept apart from `pipeline.flows` so that code which runs stages without Prefect (benchmarks,
tests, the GPU check) uses the same table without importing Prefect. A stage function either
does its work and returns a summary, or returns a `VideoPlan` for the caller to execute
(`pipeline.flows.execute_plan` as Prefect tasks; `stages.common.run_plan` serially).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lacp.trainer import ProgressFn
from pipeline.params import Params
from stages import analyze, decode, evaluate, extract, points, prepare, pseudo, selftrain, train, weights
from stages import flow as flow_stage
from stages.artifacts import LacpRun
from stages.common import VideoPlan


def lacp_run(p: Params) -> LacpRun:
    """Where the params put the trained LACP run's artifacts (the stages after train read them)."""
    return LacpRun(
        dataset_dir=p.paths.dataset,
        features=p.paths.features,
        model_dir=p.paths.model,
        points_dir=p.paths.points,
        pseudo_labels=p.paths.pseudo_labels,
    )


# Stage name -> what it runs. DVC (dvc.yaml) owns the order; this is only a lookup. Each stage gets its
# own section, and the stages that make detections the `detection` section too (dvc.yaml lists it for them).
STAGES: dict[str, Callable[[Params, ProgressFn], dict[str, Any] | VideoPlan]] = {
    "prepare": lambda p, _: prepare.run(p.dataset, out_dir=p.paths.dataset, workers=p.pipeline.max_workers),
    "decode": lambda p, _: decode.plan(p.decode, dataset_dir=p.paths.dataset, out_dir=p.paths.decoded),
    "flow": lambda p, _: flow_stage.plan(p.flow, decoded_dir=p.paths.decoded, out_dir=p.paths.flow),
    "weights": lambda p, _: weights.run(p.weights, out_dir=p.paths.weights),
    "extract": lambda p, _: extract.plan(
        p.extract,
        decoded_dir=p.paths.decoded,
        flow_dir=p.paths.flow,
        weights_dir=p.paths.weights,
        out_path=p.paths.features,
    ),
    "points": lambda p, _: points.run(
        p.points, dataset_dir=p.paths.dataset, out_dir=p.paths.points, report_dir=p.paths.points_report
    ),
    "train": lambda p, progress: train.run(
        p.train,
        detection=p.detection.lacp(),
        dataset_dir=p.paths.dataset,
        features=p.paths.features,
        points_dir=p.paths.points,
        model_dir=p.paths.model,
        log_dir=p.paths.train_log,
        pseudo_labels_path=p.paths.pseudo_labels,
        on_progress=progress,
    ),
    "evaluate": lambda p, _: evaluate.run(
        p.evaluate,
        detection=p.detection.lacp(),
        inference=p.detection.detector,
        dataset_dir=p.paths.dataset,
        features=p.paths.features,
        model_dir=p.paths.model,
        out_dir=p.paths.evaluation,
    ),
    "analyze": lambda p, _: analyze.run(
        p.analyze,
        detection=p.detection.lacp(),
        lacp_run=lacp_run(p),
        train_log=p.paths.train_log,
        out_dir=p.paths.analysis,
    ),
    "pseudo": lambda p, _: pseudo.run(
        p.pseudo,
        detection=p.detection.lacp(),
        lacp_run=lacp_run(p),
        out_dir=p.paths.pseudo,
        report_dir=p.paths.pseudo_report,
    ),
    "selftrain": lambda p, progress: selftrain.run(
        p.selftrain,
        inference=p.detection.detector,
        features=p.paths.features,
        lacp_model_dir=p.paths.model,
        pseudo_dir=p.paths.pseudo,
        model_dir=p.paths.selftrain_model,
        log_dir=p.paths.selftrain_log,
        on_progress=progress,
    ),
    "evaluate_selftrain": lambda p, _: evaluate.run(
        p.evaluate,
        detection=p.detection.lacp(),
        inference=p.detection.detector,
        dataset_dir=p.paths.dataset,
        features=p.paths.features,
        model_dir=p.paths.selftrain_model,
        out_dir=p.paths.selftrain_evaluation,
    ),
}
