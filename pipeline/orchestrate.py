"""Whole-DAG flows for the Prefect UI: `repro` (dvc repro / dvc exp run) and `serve`.

DVC decides which stages run; each stage it runs is its own flow run (`python -m pipeline run
<stage>`), tagged, like the repro's own run, with this repro's tag so the UI can filter one
repro's runs. DVC's output (and so every stage's) reaches the terminal as it comes and the
repro run's log in the UI line by line.
"""

from __future__ import annotations

import sys

from prefect import flow

from pipeline.dvc import dvc_command, run_logged, tag_this_run
from pipeline.params import Params


@flow(name="repro", log_prints=True)
def repro_flow(distribution: str = "", seed: int | None = None, extra: list[str] | None = None) -> int:
    """Run the DAG. With a distribution or seed, as a DVC experiment with those params.

    Args:
        distribution: points.distribution for this run ("" keeps params.yaml's).
        seed: points.seed and train.seed for this run (None keeps params.yaml's).
        extra: more `key=value` overrides.

    Returns:
        DVC's exit code (a non-zero code fails the flow run).
    """
    sets = list(extra or [])
    if distribution:
        sets.append(f"points.distribution={distribution}")
    if seed is not None:
        sets += [f"points.seed={seed}", f"train.seed={seed}"]
    code = run_logged(dvc_command(sets), tag=tag_this_run("repro"))
    if code != 0:
        raise RuntimeError(f"dvc exited with code {code}; see the log above for the failing stage")
    return code


def repro(sets: list[str]) -> int:
    """CLI entry: `python -m pipeline repro [-S key=value ...]`; returns DVC's exit code."""
    state = repro_flow(extra=sets, return_state=True)
    if state.is_completed():
        return 0
    print(f"error: {state.message or 'dvc repro failed'}", file=sys.stderr)
    return 1


def print_results(params: Params) -> None:
    """After a repro: the test mAP table and where to look next."""
    import numpy as np

    from lacp.metrics import evaluate_detection, format_comparison, load_ground_truth, load_results

    annotations = params.paths.dataset / "annotations.json"
    detector = (
        "detector on ground truth"
        if params.pseudo.source == "ground_truth"  # the upper bound
        else f"LACP + self-training ({params.pseudo.source})"
    )
    runs = {
        "LACP": params.paths.evaluation / "predictions.json",
        detector: params.paths.selftrain_evaluation / "predictions.json",
    }
    runs = {name: path for name, path in runs.items() if path.is_file()}
    if not (annotations.is_file() and runs):
        return
    truth = load_ground_truth(annotations, subset="test")
    results = {
        name: evaluate_detection(truth, load_results(path), tiou=np.asarray(params.evaluate.tiou))
        for name, path in runs.items()
    }
    print(f"\nTest-set detection mAP (%) ({', '.join(map(str, runs.values()))}):\n{format_comparison(results)}\n")
    print("Where to look next:")
    for what, where in [
        ("make ui", "the Prefect UI on http://127.0.0.1:4200: every stage run, its logs, tables and report"),
        ("dvc plots show", "every plot as one HTML page (dvc_plots/index.html): losses, pseudo labels, mAP, scatter"),
        (str(params.paths.evaluation / "report.md"), "the evaluation report with its pictures and timelines"),
        (str(params.paths.selftrain_evaluation / "report.md"), "the same for the self-trained detector"),
        (
            str(params.paths.analysis / "report.md"),
            "the paper's analyses of this run: score contrast vs tIoU, optimal sequences",
        ),
        ("dvc metrics show", "the metrics of this run (dvc exp show to compare runs)"),
        ("make ablation", "then make distributions, make qualitative, make report: the paper's tables, checked here"),
    ]:
        print(f"  {what:<34} {where}")


def serve() -> None:
    """Serve `repro` and `study` as deployments: start them from the UI with parameters."""
    from prefect import serve as prefect_serve

    from pipeline.study import study_flow

    prefect_serve(
        repro_flow.to_deployment(name="repro", description="dvc repro (or dvc exp run with a distribution/seed)"),
        study_flow.to_deployment(name="study", description="label-distribution study over DVC experiments"),
    )
