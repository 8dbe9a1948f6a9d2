"""Studies: a grid of DVC experiments over params (by default the label distribution) and
seeds, then one comparison table and plot.

Each (grid point, seed) is one `dvc exp run --temp` (a temporary copy of the repository,
as for queued experiments), so the workspace is left as it was and `dvc exp show` lists
every run. Upstream stages (prepare ... extract) are not rerun: their outputs come from the
DVC cache, and only points, train, evaluate and analyze run per experiment. Inputs that neither git
nor DVC track (e.g. your own manual click files) are copied in with `-C`.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from core.files import write_bytes_atomic, write_json
from lacp.metrics import AVERAGE_RANGES, summary_keys
from lacp.plots.study import StudyCurve, plot_study
from pipeline.console import say
from pipeline.dvc import dvc_executable, run_logged, tag_this_run
from pipeline.params import load_params
from pipeline.prefect_artifacts import artifact_key, png_data_uri

METRIC_KEYS = [
    "mAP@0.1",
    "mAP@0.2",
    "mAP@0.3",
    "mAP@0.4",
    "mAP@0.5",
    "mAP@0.6",
    "mAP@0.7",
    "mAP@0.1-0.5",
    "mAP@0.3-0.7",
    "mAP@0.1-0.7",
    "accuracy",
    "val_mAP@0.1-0.7",
    "val_accuracy",
    "pseudo_iou",
    "pseudo_coverage",
    "pseudo_length_ratio",
]
# METRIC_KEYS are the columns for the default tIoU 0.1:0.7 (THUMOS'14, GTEA, BEOID); a study's
# columns follow the thresholds its experiments' metrics.json hold (`metric_keys`)
DEFAULT_STUDY_TIOU = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)  # when no run reports any threshold
_OTHER_KEYS = ("accuracy", "val_accuracy", "pseudo_iou", "pseudo_coverage", "pseudo_length_ratio")


def run_thresholds(runs: Iterable[dict[str, float]]) -> list[float]:
    """The tIoU thresholds of the runs' test metrics (keys `mAP@<t>`, not the averages
    `mAP@<a>-<b>` nor `val_` ones), ascending; `DEFAULT_STUDY_TIOU` when none has any."""
    found: set[float] = set()
    for metrics in runs:
        for key in metrics:
            if key.startswith("mAP@"):
                try:
                    found.add(float(key.removeprefix("mAP@")))
                except ValueError:  # an average, "mAP@0.1-0.7"
                    continue
    return sorted(found) if found else list(DEFAULT_STUDY_TIOU)


def metric_keys(thresholds: Sequence[float]) -> list[str]:
    """A study's columns: mAP at each threshold and the standard averages they allow (the
    evaluate stage's `lacp.metrics.summary_keys`), accuracy, the validation mAP averaged over
    the most thresholds and the validation accuracy, the pseudo-label quality.

    `metric_keys(DEFAULT_STUDY_TIOU) == METRIC_KEYS`; ActivityNet's 0.5:0.05:0.95 gives
    mAP@0.5 ... mAP@0.95, mAP@0.5-0.95, accuracy, val_mAP@0.5-0.95, ...
    """
    keys = summary_keys(thresholds)
    sizes = {f"mAP@{low:g}-{high:g}": round((high - low) / step) + 1 for low, high, step in AVERAGE_RANGES}
    averages = [k for k in keys if k in sizes]
    widest = max(reversed(averages), key=sizes.__getitem__, default=None)  # ties: the later range
    validation = [f"val_{widest}"] if widest else []
    return [*keys, _OTHER_KEYS[0], *validation, *_OTHER_KEYS[1:]]


def untracked_inputs(paths: list[str]) -> list[str]:
    """Those of `paths` that exist here but git does not track (they must be copied in)."""
    out = []
    for p in paths:
        if not p or Path(p).is_absolute() or not Path(p).exists():
            continue
        tracked = subprocess.run(["git", "ls-files", "--error-unmatch", p], capture_output=True).returncode == 0
        if not tracked:
            out.append(p)
    return out


def grid_points(grid: dict[str, list[str]]) -> list[dict[str, str]]:
    """Every combination of the grid's values, in order (the first key varies slowest)."""
    points: list[dict[str, str]] = [{}]
    for key, values in grid.items():
        points = [{**p, key: str(v)} for p in points for v in values]
    return points


def departure_points(preset: str) -> dict[str, dict[str, str]]:
    """The departures study of a recipe preset: the project's defaults, the whole preset, and
    each of its keys alone (label -> overrides).

    Args:
        preset: preset name, e.g. "released" (presets/released.yaml).

    Returns:
        {"defaults": {}, "<preset> preset": every key, "<key>=<value>": that key alone, ...}.
    """
    from pipeline.presets import format_value, load_preset

    values = {key: format_value(value) for key, value in load_preset(preset).items()}
    points = {"defaults": {}, f"{preset} preset": values}
    points.update({f"{key}={value}": {key: value} for key, value in values.items()})
    return points


LACP_ROW = "+ both (LACP)"
SELFTRAIN_ROW = "+ self-training"  # the detector trained on LACP_ROW's pseudo instances: same experiments, own metrics
ABLATION_POINTS: dict[str, dict[str, str]] = {
    # the paper's "effect of each completeness guidance" (LACP, ICCV 2021, Table 4): labels -> overrides
    "baseline (points only)": {"train.completeness": "false"},
    "+ score contrast": {
        "train.completeness": "true",
        "train.score_contrast": "true",
        "train.feature_contrast": "false",
    },
    "+ feature contrast": {
        "train.completeness": "true",
        "train.score_contrast": "false",
        "train.feature_contrast": "true",
    },
    LACP_ROW: {"train.completeness": "true", "train.score_contrast": "true", "train.feature_contrast": "true"},
}
RUNS_FILE = "runs.json"  # in a study's folder: experiment name -> label, seed, overrides


def point_label(point: dict[str, str]) -> str:
    """Row label of a grid point: the value alone for a one-key grid, else key=value pairs."""
    if len(point) == 1:
        return next(iter(point.values()))
    return " ".join(f"{k}={v}" for k, v in point.items())


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    """`["points.distribution=center,uniform", "train.completeness=true,false"]` -> dict."""
    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            raise ValueError(f"grid entry '{item}': expected key=v1,v2,... e.g. points.distribution=center,uniform")
        grid[key] = values.split(",")
    return grid


def experiment_argv(point: dict[str, str], seed: int, *, name: str, extra: list[str], copy: list[str]) -> list[str]:
    """argv of one study run (no shell). A run without the completeness losses
    (`train.completeness=false`) has no search to take pseudo instances from, so unless it names
    `pseudo.source` the DAG's self-training reads its proposals (`pseudo.source=proposals`)."""
    argv = [dvc_executable(), "exp", "run", "--temp", "--name", name]
    settings = [f"{k}={v}" for k, v in point.items()]
    given = dict(item.partition("=")[::2] for item in [*settings, *extra])
    if given.get("train.completeness", "").lower() == "false" and "pseudo.source" not in given:
        settings.append("pseudo.source=proposals")
    for item in [*settings, f"points.seed={seed}", f"train.seed={seed}", *extra]:
        argv += ["-S", item]
    for path in copy:
        argv += ["-C", path]
    return argv


SELFTRAIN_PREFIX = "selftrain/"  # collect_metrics' keys of the self-trained detector's evaluation


def collect_metrics(
    exp_show: list[dict[str, Any]], names: set[str], *, selftrain_metrics: str = ""
) -> dict[str, dict[str, float]]:
    """Metrics of the named experiments from `dvc exp show --json` output.

    Args:
        exp_show: the parsed output.
        names: the experiments wanted.
        selftrain_metrics: the evaluate_selftrain stage's metrics file (its keys are the evaluate
            stage's: they are kept apart under `SELFTRAIN_PREFIX`, never mixed with LACP's).

    Returns:
        name -> flat metrics (keys of the evaluate stage's metrics.json, the other stages' own,
        and `selftrain/<key>` for the self-trained detector's).
    """
    found: dict[str, dict[str, float]] = {}

    def visit(entry: dict[str, Any]) -> None:
        name = entry.get("name")
        data = entry.get("data") or {}
        if name in names:
            for path, source in (data.get("metrics") or {}).items():
                prefix = SELFTRAIN_PREFIX if selftrain_metrics and Path(path) == Path(selftrain_metrics) else ""
                found.setdefault(name, {}).update(_flat_numbers(source.get("data") or {}, prefix))
        for child in entry.get("experiments") or []:
            for rev in child.get("revs") or []:
                visit(rev)

    for entry in exp_show:
        visit(entry)
    return found


def _flat_numbers(data: dict[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat_numbers(value, f"{prefix}{key}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[f"{prefix}{key}"] = float(value)
    return out


def with_selftrain_row(
    runs: dict[tuple[str, int], dict[str, float]], labels: list[str]
) -> tuple[dict[str, Any], list[str]]:
    """Add `SELFTRAIN_ROW` after `LACP_ROW`: the self-trained detector's metrics (`SELFTRAIN_PREFIX`
    keys) of LACP_ROW's experiments, one run per seed; unchanged when the study has no LACP_ROW
    or its experiments have no self-training metrics.

    Returns:
        (runs, labels) with the row added.
    """
    added = {
        (SELFTRAIN_ROW, seed): {
            k.removeprefix(SELFTRAIN_PREFIX): v for k, v in m.items() if k.startswith(SELFTRAIN_PREFIX)
        }
        for (label, seed), m in runs.items()
        if label == LACP_ROW
    }
    added = {key: m for key, m in added.items() if m}
    if not added:
        return runs, labels
    at = labels.index(LACP_ROW) + 1
    return {**runs, **added}, [*labels[:at], SELFTRAIN_ROW, *labels[at:]]


def summarise(runs: dict[tuple[str, int], dict[str, float]], labels: list[str]) -> list[dict[str, Any]]:
    """Mean and spread (sample std; 0 for one seed) over seeds, one row per grid point.

    Columns: `metric_keys` of the thresholds the runs report (`run_thresholds`), in that order.
    """
    keys = metric_keys(run_thresholds(runs.values()))
    rows = []
    for label in labels:
        per_seed = [m for (d, _), m in sorted(runs.items()) if d == label]
        row: dict[str, Any] = {"run": label, "seeds": len(per_seed)}
        for key in keys:
            values = np.array([m[key] for m in per_seed if key in m], dtype=float)
            row[f"{key} mean"] = float(values.mean()) if len(values) else float("nan")
            row[f"{key} std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        rows.append(row)
    return rows


RATIO_KEYS = ("pseudo_length_ratio",)  # plain ratios; every other metric is a share, shown in %


def _cell(row: dict[str, Any], key: str) -> str:
    """`mean ± std` of one metric: shares in %, ratios as they are, "-" where no run has it."""
    mean, std = row[f"{key} mean"], row[f"{key} std"]
    if np.isnan(mean):
        return "-"
    if key in RATIO_KEYS:
        return f"{mean:.2f} ± {std:.2f}"
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def row_keys(rows: list[dict[str, Any]]) -> list[str]:
    """The metric columns of `summarise`'s rows, in order."""
    return [k.removesuffix(" mean") for k in rows[0] if k.endswith(" mean")] if rows else []


def row_thresholds(rows: list[dict[str, Any]]) -> list[float]:
    """The tIoU thresholds among the rows' columns (`mAP@<t>`), ascending."""
    return run_thresholds([dict.fromkeys(row_keys(rows), 0.0)])


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """mAP (test and validation), accuracy and pseudo-label quality in %, the pseudo length
    ratio as a ratio; mean ± std per grid point, "-" for a metric none of its runs has."""
    keys = row_keys(rows)
    head = "| run | seeds | " + " | ".join(keys) + " |"
    rule = "|---|---|" + "---|" * len(keys)
    body = [f"| {r['run']} | {r['seeds']} | " + " | ".join(_cell(r, k) for k in keys) + " |" for r in rows]
    return "\n".join([head, rule, *body]) + "\n"


def widest_average(keys: Iterable[str]) -> str | None:
    """Among test-mAP averages `mAP@<low>-<high>` in `keys`, the one over the widest range (ties:
    the later); None when there is none."""
    averages = [k for k in keys if k.startswith("mAP@") and "-" in k]
    return max(
        reversed(averages),
        key=lambda k: float(k.split("-")[1]) - float(k.removeprefix("mAP@").split("-")[0]),
        default=None,
    )


def pivot_table(rows: list[dict[str, Any]], points: dict[str, dict[str, str]], metric: str) -> str:
    """A two-key grid as a cross table of one metric (`mean ± std`): the first key's values down,
    the second's across, e.g. the label distributions x completeness off/on (the paper's Table 5).

    Args:
        rows: `summarise`'s rows.
        points: label -> overrides of each row (exactly two keys each).
        metric: the column shown, e.g. "mAP@0.1-0.7".

    Returns:
        Markdown; empty when the grid does not have exactly two keys.
    """
    keys = list(next(iter(points.values()), {}))
    if len(keys) != 2 or any(list(p) != keys for p in points.values()):
        return ""
    down = list(dict.fromkeys(p[keys[0]] for p in points.values()))
    across = list(dict.fromkeys(p[keys[1]] for p in points.values()))
    cells = {(points[r["run"]][keys[0]], points[r["run"]][keys[1]]): _cell(r, metric) for r in rows}
    head = f"| {metric} | " + " | ".join(f"{keys[1]}={v}" for v in across) + " |"
    rule = "|---|" + "---|" * len(across)
    body = [f"| {keys[0]}={d} | " + " | ".join(cells.get((d, a), "-") for a in across) + " |" for d in down]
    return "\n".join([head, rule, *body]) + "\n"


def study_markdown(rows: list[dict[str, Any]], points: dict[str, dict[str, str]]) -> str:
    """study.md: the full table, then for a two-key grid the cross tables of mAP@0.5 (when the
    runs have it) and of the widest average."""
    text = markdown_table(rows)
    keys = row_keys(rows)
    for metric in [m for m in ("mAP@0.5", widest_average(keys)) if m in keys]:
        pivot = pivot_table(rows, points, metric)
        if pivot:
            text += "\n" + pivot
    return text


def write_outputs(
    rows: list[dict[str, Any]], out_dir: Path, *, points: dict[str, dict[str, str]] | None = None, title: str = "Study"
) -> dict[str, Path]:
    """study.md (`study_markdown`), study.csv and study.png (mAP against tIoU, one line per
    grid point, spread shaded)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out_dir / "study.md", "csv": out_dir / "study.csv", "plot": out_dir / "study.png"}
    write_bytes_atomic(paths["markdown"], study_markdown(rows, points or {}).encode())
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_bytes_atomic(paths["csv"], table.getvalue().encode())
    tiou = np.array(row_thresholds(rows))
    names = summary_keys(tiou)[: len(tiou)]  # "mAP@0.1", ... as the evaluate stage names them
    curves = [
        StudyCurve(
            run=r["run"],
            mean=np.array([r[f"{name} mean"] for name in names]) * 100,
            std=np.array([r[f"{name} std"] for name in names]) * 100,
        )
        for r in rows
    ]
    plot_study(curves, tiou=tiou, points=points or {}, title=title, path=paths["plot"])
    return paths


def report_markdown(paths: dict[str, Path]) -> str:
    """The study-report artifact: study.md's table, then the plot carried inside the text."""
    return paths["markdown"].read_text() + f"\n![mAP against tIoU]({png_data_uri(paths['plot'])})\n"


DEFAULT_GRID = {"points.distribution": ["center", "gaussian", "uniform", "beta", "manual"]}


@flow(name="study", log_prints=True)
def study_flow(
    grid: dict[str, list[str]] = DEFAULT_GRID,  # noqa: B006 - Prefect parameter default, never mutated
    seeds: list[int] = [0, 1],  # noqa: B006
    out_dir: str = "study",
    extra: list[str] | None = None,
    points: dict[str, dict[str, str]] | None = None,
    title: str = "Study",
) -> list[dict[str, Any]]:
    """Run every (grid point, seed) as a DVC experiment and compare them.

    Args:
        grid: params key -> values, e.g. {"points.distribution": ["center", "uniform"]}.
        points: instead of the grid, labelled runs: label -> overrides (`departure_points`,
            `ABLATION_POINTS`).
        seeds: seeds (points.seed and train.seed).
        out_dir: where study.md / study.csv / study.png go, and `RUNS_FILE` (which experiment
            is which run: `python -m pipeline qualitative` finds the models through it).
        extra: `key=value` overrides applied to every run.
        title: the study's name in the plot and the Prefect artifacts.

    Returns:
        One summary row per grid point.
    """
    tag = tag_this_run("study")
    if run_logged([dvc_executable(), "repro"], tag=tag) != 0:  # upstream stages cached once, here
        raise RuntimeError("dvc repro of the base pipeline failed; fix it before running a study")
    copy = untracked_inputs(_input_paths([*(extra or []), *(f"{k}={','.join(v)}" for k, v in grid.items())]))
    names: dict[str, tuple[str, int]] = {}
    if points is None:
        points = {point_label(p): p for p in grid_points(grid)}
    labels = list(points)
    for label, point in points.items():
        for seed in seeds:
            name = f"{tag}-{len(names):03d}"
            code = run_logged(experiment_argv(point, seed, name=name, extra=list(extra or []), copy=copy), tag=tag)
            if code != 0:
                raise RuntimeError(f"experiment {name} ({label}, seed {seed}) failed (dvc exit code {code})")
            names[name] = (label, seed)
            write_json(
                Path(out_dir) / RUNS_FILE,
                {n: {"label": lb, "seed": sd, "overrides": points[lb]} for n, (lb, sd) in names.items()},
            )
    shown = subprocess.run(  # -A: experiments stay findable by name if HEAD moved meanwhile
        [dvc_executable(), "exp", "show", "--json", "-A"], capture_output=True, text=True, check=True
    )
    selftrain_metrics = load_params(Path("params.yaml")).paths.selftrain_evaluation / "metrics.json"
    metrics = collect_metrics(json.loads(shown.stdout), set(names), selftrain_metrics=str(selftrain_metrics))
    missing = sorted(set(names) - set(metrics))
    if missing:
        raise RuntimeError(f"dvc exp show has no metrics for: {', '.join(missing)}")
    runs, labels = with_selftrain_row({names[n]: m for n, m in metrics.items()}, labels)
    rows = summarise(runs, labels)
    paths = write_outputs(rows, Path(out_dir), points=points, title=title)
    key = artifact_key("study", Path(out_dir).name)
    create_table_artifact(key=f"{key}-table", table=rows, description=f"{title}: mAP (0-1) per run over seeds {seeds}")
    create_markdown_artifact(
        key=f"{key}-report", markdown=report_markdown(paths), description=f"{title}: table (mAP %) and plot"
    )
    say(f"study written to {out_dir}/ (study.md, study.csv, study.png)\n{paths['markdown'].read_text()}")
    return rows


def _input_paths(extra: list[str]) -> list[str]:
    """File paths named in overrides (points.file, points.manual_files)."""
    paths = []
    for item in extra:
        key, _, value = item.partition("=")
        if key in {"points.file", "points.manual_files"}:
            paths += [v.strip(" []'\"") for v in value.split(",")]
    return paths


def run_study(
    *, grid: list[str], seeds: list[int], out_dir: Path, extra: list[str], departures: str = "", ablation: bool = False
) -> list[dict[str, Any]]:
    """CLI entry: `python -m pipeline study [--grid key=v1,v2 ... | --departures PRESET | --ablation] ...`."""
    title = "Study"
    points = None
    if ablation:
        points, title = ABLATION_POINTS, "Ablation of the completeness guidance"
    elif departures:
        points, title = departure_points(departures), f"Departures of the {departures} preset"
    parsed = parse_grid(grid) if grid else DEFAULT_GRID
    if points is None:
        title = "Study of " + " x ".join(parsed)
    return study_flow(grid=parsed, seeds=seeds, out_dir=str(out_dir), extra=extra, points=points, title=title)
