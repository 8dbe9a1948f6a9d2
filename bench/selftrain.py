"""Self-training measured: point-only baseline, LACP, LACP + self-training, the detector on ground truth.

Runs the stages' own code (`pipeline.stage_table.STAGES`, no DVC) over a finished run's feature
store, seed by seed, each seed drawing its own points (points.seed) and training every model with
that seed:
- `baseline`: LACP without the completeness losses (train.completeness false), the point-only baseline;
- `lacp`: LACP (the params file's train section);
- `selftrain_<source>`: the detector trained on `lacp`'s pseudo instances (pseudo.source; the
  params file's selftrain section), its detections alone (`detection.detector.lacp_proposals` false);
- `selftrain_<source>+lacp`: the same trained detector with LACP's proposals merged in (true);
- `ground_truth`, `ground_truth+lacp`: the same detector on the true training instances (the
  fully-supervised upper bound), scored both ways.
Every model trains on the same training part of the split (train.validation_share) and is scored
by the evaluate stage on the test videos and on the held-out validation videos.

Prints one JSON object: `cpu`, `threads`, `params`, `seeds`, `runs` (name -> seed -> the evaluate
stage's metrics plus `seconds_<stage>` wall time of each stage run for it) and `summary` (name ->
metric -> [mean, std over seeds], for the mAP keys and the seconds). Each seed's work goes to
`--work/seed<k>/`. A row missing from `--rows` is not run.

Run by hand, after `make run` (or the same for a preset):
    python -m bench.selftrain --seeds 0,1,2 [--params params.yaml] [--rows baseline,lacp,proposals,ground_truth]
        [--work /tmp/selftrain-bench] [--threads N] [--out bench/results/selftrain.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from bench.machine import cpu_name, print_report
from core.files import write_json
from pipeline.params import Params, load_params
from pipeline.stage_table import STAGES

ROWS = ("baseline", "lacp", "proposals", "search", "ground_truth")  # --rows: the last three are pseudo sources


def _stage(name: str, params: Params) -> tuple[dict[str, Any], float]:
    """One stage run directly (per-video plans are not used here): its summary and wall seconds."""
    started = time.perf_counter()
    out = STAGES[name](params, lambda step, steps, row: None)
    return out, time.perf_counter() - started


def _params(base: Path, work: Path, *, seed: int, model: str, overrides: dict[str, Any]) -> Params:
    """The params file with the per-seed outputs under `work` and the seed everywhere it matters."""
    paths = {
        "points": work / "points",
        "points_report": work / "points_report",
        "model": work / model / "lacp",
        "train_log": work / model / "train_log",
        "pseudo_labels": work / model / "pseudo_labels.h5",
        "evaluation": work / model / "eval",
        "pseudo": work / model / "pseudo",
        "pseudo_report": work / model / "pseudo_report",
        "selftrain_model": work / model / "selftrain",
        "selftrain_log": work / model / "selftrain_log",
        "selftrain_evaluation": work / model / "eval_selftrain",
    }
    merged = {
        "paths": {k: str(v) for k, v in paths.items()},
        "points": {"seed": seed},
        "train": {"seed": seed},
        "selftrain": {"seed": seed},
    }
    for section, values in overrides.items():
        merged[section] = {**merged.get(section, {}), **values}
    return load_params(base, overrides=merged)


def run_seed(base: Path, work: Path, *, seed: int, rows: list[str]) -> dict[str, dict[str, Any]]:
    """Every requested row for one seed: name -> test and validation metrics and stage seconds."""
    found: dict[str, dict[str, Any]] = {}
    lacp = _params(base, work, seed=seed, model="lacp", overrides={})
    _stage("points", lacp)
    if "baseline" in rows:
        no_search = {"train": {"completeness": False}, "pseudo": {"source": "proposals"}}  # params refuse "search"
        baseline = _params(base, work, seed=seed, model="baseline", overrides=no_search)
        _, train_s = _stage("train", baseline)
        metrics, eval_s = _stage("evaluate", baseline)
        found["baseline"] = {**metrics, "seconds_train": train_s, "seconds_evaluate": eval_s}
    _, train_s = _stage("train", lacp)
    metrics, eval_s = _stage("evaluate", lacp)
    found["lacp"] = {**metrics, "seconds_train": train_s, "seconds_evaluate": eval_s}
    for source in [r for r in rows if r in ("proposals", "search", "ground_truth")]:
        params = _params(
            base,
            work,
            seed=seed,
            model="lacp",
            overrides={"pseudo": {"source": source}, "paths": _source_paths(work, source)},
        )
        pseudo, pseudo_s = _stage("pseudo", params)
        _, selftrain_s = _stage("selftrain", params)
        name = "ground_truth" if source == "ground_truth" else f"selftrain_{source}"
        for merged in (False, True):  # the detector alone, and with LACP's proposals merged in
            metrics, eval_s = evaluate_detector(
                base, work, seed=seed, source=source, inference={"lacp_proposals": merged}
            )
            found[name + ("+lacp" if merged else "")] = {
                **metrics,
                **{f"pseudo_{k}": v for k, v in pseudo.items() if k.startswith("pseudo_")},
                "seconds_pseudo": pseudo_s,
                "seconds_selftrain": selftrain_s,
                "seconds_evaluate": eval_s,
            }
    return found


def _source_paths(work: Path, source: str) -> dict[str, str]:
    """Where one pseudo source's instances, detector and log go under a seed's folder."""
    return {
        "pseudo": str(work / source / "pseudo"),
        "pseudo_report": str(work / source / "pseudo_report"),
        "selftrain_model": str(work / source / "selftrain"),
        "selftrain_log": str(work / source / "selftrain_log"),
    }


def evaluate_detector(
    base: Path, work: Path, *, seed: int, source: str, inference: dict[str, Any]
) -> tuple[dict[str, Any], float]:
    """The evaluate_selftrain stage on a seed's trained detector of `source` with the post-processing
    settings `inference` (`detection.detector` keys) in place of the params file's, from a copy of
    the folder that records them (`recorded_as`): its metrics and wall seconds."""
    evaluated = _params(
        base,
        work,
        seed=seed,
        model="lacp",
        overrides={
            "pseudo": {"source": source},
            "detection": {"detector": inference},
            "paths": {
                **_source_paths(work, source),
                "selftrain_model": str(recorded_as(work / source / "selftrain", inference)),
                "selftrain_evaluation": str(work / source / f"eval_selftrain-{_setting(inference)}"),
            },
        },
    )
    return _stage("evaluate_selftrain", evaluated)


def _setting(inference: dict[str, Any]) -> str:
    """A folder-name suffix naming post-processing settings: `lacp_proposals-true-voting_tiou-0.6`."""
    return "-".join(f"{k}-{str(v).lower()}" for k, v in inference.items())


def recorded_as(folder: Path, inference: dict[str, Any]) -> Path:
    """The trained detector folder if its model.json records the post-processing settings
    `inference`, else a copy of it beside (`<folder>-<key>-<value>...`) that records them: one
    training scored several ways, the evaluate stage checking each record as always."""
    meta = json.loads((folder / "model.json").read_text())
    if all(meta["inference"].get(k) == v for k, v in inference.items()):
        return folder
    copy = folder.with_name(f"{folder.name}-{_setting(inference)}")
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(folder, copy)
    write_json(copy / "model.json", {**meta, "inference": {**meta["inference"], **inference}})
    return copy


def results(runs: dict[str, dict[int, dict[str, Any]]]) -> dict[str, Any]:
    """The report's `summary` (`summarise`) and `runs` (name -> seed, as a string -> metrics)."""
    return {"summary": summarise(runs), "runs": {n: {str(s): m for s, m in r.items()} for n, r in runs.items()}}


def summarise(runs: dict[str, dict[int, dict[str, Any]]]) -> dict[str, dict[str, list[float]]]:
    """name -> key -> [mean, std] over seeds of every numeric mAP, pseudo-quality and seconds key."""
    out: dict[str, dict[str, list[float]]] = {}
    for name, by_seed in runs.items():
        keys = sorted(
            {
                k
                for m in by_seed.values()
                for k, v in m.items()
                if isinstance(v, (int, float))
                and k.startswith(("mAP@", "val_mAP@", "known_classes_mAP@", "seconds_", "pseudo_"))
            }
        )
        out[name] = {}
        for key in keys:
            values = [float(m[key]) for m in by_seed.values() if key in m]
            out[name][key] = [
                round(statistics.fmean(values), 5),
                round(statistics.stdev(values), 5) if len(values) > 1 else 0.0,
            ]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument(
        "--rows",
        default="baseline,lacp,proposals,ground_truth",
        help=f"comma-separated, of {', '.join(ROWS)} (lacp always runs: the others need it)",
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/selftrain-bench"))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    rows = args.rows.split(",")
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        parser.error(f"--rows: unknown {unknown}; choose from {', '.join(ROWS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    runs: dict[str, dict[int, dict[str, Any]]] = {}
    for seed in seeds:
        for name, metrics in run_seed(args.params, args.work / f"seed{seed}", seed=seed, rows=rows).items():
            runs.setdefault(name, {})[seed] = metrics
        print(
            f"seed {seed} done: " + ", ".join(f"{n} {m[seed]['mAP@0.1-0.7']:.4f}" for n, m in runs.items()),
            file=sys.stderr,
        )
    result = {"cpu": cpu_name(), "threads": torch.get_num_threads(), "params": str(args.params), "seeds": seeds}
    print_report({**result, **results(runs)}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
