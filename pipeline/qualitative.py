"""Qualitative comparison: two (or more) finished runs on the same test videos, one picture each.

A run is named as one of:
- `workspace`: the model the workspace's last `dvc repro` trained;
- a DVC experiment name (`dvc exp show` lists them) or any git revision with a dvc.lock;
- with `--study DIR`, a run label of that study (its `runs.json`, e.g. "baseline (points only)"
  of `make ablation`), at `--seed` (default: the study's first seed).

Each run's model folder is read from the DVC cache at its revision (`dvc.api.DVCFileSystem`),
nothing in the workspace changes. The runs must have been trained on the workspace's features
(the same `data/features.h5` by content, as in every study, which varies points and train
params only); a run on other features is refused by name. Detection settings are each run's
record (model.json `detection`: the `detection` section it was trained with), as `detect` applies them.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.device import resolve_device
from core.files import atomic_path, read_json
from features.store import FeatureStore
from lacp.inference import predict, resampled_seconds
from lacp.model_io import load_model, read_model_meta
from lacp.plots.analysis import ModelView, plot_comparison
from lacp.proposals import DetectionConfig
from pipeline.params import Params
from pipeline.study import RUNS_FILE
from stages.artifacts import available_videos, ground_truth_instances, read_annotations

WORKSPACE = "workspace"


@dataclass(frozen=True)
class RunRef:
    """A run to draw: its legend name and its git revision (None: the workspace)."""

    name: str
    rev: str | None


def resolve_runs(refs: list[str], *, study: Path | None, seed: int | None) -> list[RunRef]:
    """Turn the command's run names into revisions.

    Raises:
        ValueError: a label that the study does not have (the message lists its labels), or a
            study folder without `runs.json`.
    """
    if study is None:
        return [RunRef(ref, None if ref == WORKSPACE else ref) for ref in refs]
    runs: dict[str, dict[str, Any]] = read_json(Path(study) / RUNS_FILE, what="study runs")
    labels = list(dict.fromkeys(r["label"] for r in runs.values()))
    found = []
    for ref in refs:
        if ref == WORKSPACE:
            found.append(RunRef(ref, None))
            continue
        matches = {r["seed"]: name for name, r in runs.items() if r["label"] == ref}
        if not matches:
            raise ValueError(f"{Path(study) / RUNS_FILE}: no run labelled {ref!r}; labels: {', '.join(labels)}")
        chosen = min(matches) if seed is None else seed
        if chosen not in matches:
            raise ValueError(f"{Path(study) / RUNS_FILE}: run {ref!r} has seeds {sorted(matches)}, not {chosen}")
        found.append(RunRef(f"{ref} (seed {chosen})", matches[chosen]))
    return found


def _tracked_md5(fs, path: Path) -> str | None:
    info = fs.info(str(path))
    return info.get("md5") or (info.get("dvc_info") or {}).get("md5")


def fetch_model(run: RunRef, params: Params, into: Path) -> Path:
    """The run's model folder, copied from the DVC cache at its revision into `into`.

    Raises:
        ValueError: the run's features are not the workspace's (named), or the revision has
            no model.
    """
    from dvc.api import DVCFileSystem

    if run.rev is None:
        return params.paths.model
    at_rev, here = DVCFileSystem(".", rev=run.rev), DVCFileSystem(".")
    if not at_rev.exists(str(params.paths.model)):
        raise ValueError(f"run {run.name!r} (revision {run.rev}): no {params.paths.model} in its dvc.lock")
    if _tracked_md5(at_rev, params.paths.features) != _tracked_md5(here, params.paths.features):
        raise ValueError(
            f"run {run.name!r} (revision {run.rev}) was trained on other features than the workspace's "
            f"{params.paths.features}; compare runs of one feature store (dvc exp apply the run instead)"
        )
    target = Path(into) / run.rev.replace("/", "_")
    at_rev.get(str(params.paths.model), str(target), recursive=True)
    return target


def compare_runs(
    params: Params,
    refs: list[str],
    *,
    out_dir: Path,
    videos: list[str],
    count: int,
    threshold: float,
    study: Path | None = None,
    seed: int | None = None,
) -> list[Path]:
    """Draw the runs on the chosen test videos (`lacp.plots.analysis.plot_comparison`).

    Args:
        params: the workspace's params (paths, evaluate's device).
        refs: the runs (module docstring), drawn top to bottom.
        out_dir: where `<video>.png` and `qualitative.md` go.
        videos: test videos to draw; empty = the first `count` test videos by id.
        count: see `videos`.
        threshold: the lowest detection score drawn.
        study, seed: resolve run labels through a study's runs.json.

    Returns:
        The pictures written.
    """
    # 1. the runs and the videos
    runs = resolve_runs(refs, study=study, seed=seed)
    annotations = read_annotations(params.paths.dataset)
    test = sorted(v for v, e in annotations["database"].items() if e["subset"] == "test")
    unknown = [v for v in videos if v not in test]
    if unknown:
        raise ValueError(f"{params.paths.dataset}/annotations.json: not test videos: {', '.join(unknown)}")
    device = resolve_device(params.evaluate.device)
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="qualitative-") as scratch, FeatureStore(params.paths.features) as store:
        chosen = available_videos(store, videos or test[:count], features=params.paths.features, what="test")
        # 2. each run's detections and scores on those videos
        views: dict[str, list[ModelView]] = {v: [] for v in chosen}
        for run in runs:
            model_dir = fetch_model(run, params, Path(scratch))
            model = load_model(model_dir, device=device)
            meta = read_model_meta(model_dir)
            num_segments = meta["num_segments"]
            proposals, _, scores = predict(
                model,
                store,
                chosen,
                DetectionConfig(**meta["detection"]),
                device,
                keep_scores=chosen,
                num_segments=num_segments,
            )
            seconds = store.time_grid.seconds_per_snippet
            for vid in chosen:
                views[vid].append(
                    ModelView(
                        name=run.name,
                        detections=proposals[vid],
                        q=scores[vid],
                        q_seconds=resampled_seconds(seconds, store[vid].shape[0], num_segments),
                    )
                )
    # 3. pictures and an index
    for vid in chosen:
        written.append(
            plot_comparison(
                vid,
                instances=ground_truth_instances(annotations, [vid])[vid],
                views=views[vid],
                classes=annotations["classes"],
                threshold=threshold,
                path=Path(out_dir) / f"{vid}.png",
            )
        )
    lines = [
        "# Qualitative comparison",
        "",
        "Runs, top to bottom: "
        + "; ".join(f"{r.name} ({r.rev or 'workspace'})" for r in runs)
        + f". Detections scoring >= {threshold:g}.",
        "",
    ]
    lines += [f"![{p.stem}]({p.name})" for p in written]
    with atomic_path(Path(out_dir) / "qualitative.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return written
