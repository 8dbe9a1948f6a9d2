"""The analysis report: the paper's claims, each checked on this project's data, in one markdown
file (pictures beside it) and one Prefect markdown artifact (pictures inside).

It gathers what the commands wrote, and says which command is missing where a part has not
been produced yet:

    part                                   written by
    scoring variants, optimal sequences    the analyze stage (`python -m pipeline run analyze`, `dvc repro`)
    ablation of the completeness guidance  `make ablation` (study/ablation/)
    label distributions x completeness     `make distributions` (study/distributions/)
    qualitative comparison                 `make qualitative` (study/qualitative/)

Each claim gets a plain verdict computed from the numbers (holds / does not hold here), so a
reader sees at once where this data agrees with the paper.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from core.files import atomic_path, read_json, write_bytes_atomic
from lacp.score_analysis import PAPER_PEARSON
from pipeline.study import RUNS_FILE, row_keys, widest_average

ABLATION_DIR = Path("study/ablation")
DISTRIBUTIONS_DIR = Path("study/distributions")
QUALITATIVE_DIR = Path("study/qualitative")
BASELINE_LABEL, LACP_LABEL = "baseline (points only)", "+ both (LACP)"  # pipeline.study.ABLATION_POINTS


def read_study_rows(study_dir: Path) -> list[dict[str, Any]]:
    """study.csv of a study folder: one dict per run, numbers as floats."""
    with (Path(study_dir) / "study.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [{k: (v if k == "run" else float(v)) for k, v in row.items()} for row in rows]


def _compared_metric(rows: list[dict[str, Any]]) -> str:
    """The metric a verdict compares: the widest average mAP of the study (e.g. mAP@0.1-0.7)."""
    metric = widest_average(row_keys(rows))
    if metric is None:
        raise ValueError(f"study rows without an average mAP column (columns: {sorted(rows[0])})")
    return metric


def _pct(row: dict[str, Any], key: str) -> str:
    return f"{100 * row[f'{key} mean']:.1f} ± {100 * row[f'{key} std']:.1f}"


def verdict_scoring(metrics: dict[str, Any]) -> str:
    """Claim 1: the OIC correlates with the tIoU better than the inner score."""
    oic, inner = metrics.get("pearson_oic"), metrics.get("pearson_inner")
    if oic is None or inner is None:
        return "not decidable: a correlation is undefined (constant scores)"
    holds = oic > inner
    text = (
        f"{'holds' if holds else 'does not hold'} here: r(OIC, tIoU) = {oic:.2f} "
        f"{'>' if holds else '<='} r(inner, tIoU) = {inner:.2f} (paper: {PAPER_PEARSON['oic']:.2f} against "
        f"{PAPER_PEARSON['inner']:.2f})"
    )
    oic_on, inner_on = metrics.get("pearson_oic_overlapping"), metrics.get("pearson_inner_overlapping")
    if oic_on is not None and inner_on is not None:
        text += f"; over the proposals that overlap an instance (tIoU > 0): {oic_on:.2f} against {inner_on:.2f}"
    return text


def verdict_ablation(rows: list[dict[str, Any]]) -> str:
    """Claim 2: each guidance helps over the baseline, both together the most."""
    metric = _compared_metric(rows)
    by_run = {r["run"]: r for r in rows}
    if BASELINE_LABEL not in by_run:
        return f"not decidable: no {BASELINE_LABEL!r} row"
    base = by_run[BASELINE_LABEL][f"{metric} mean"]
    gains = {run: r[f"{metric} mean"] - base for run, r in by_run.items() if run != BASELINE_LABEL}
    best = max(by_run, key=lambda run: by_run[run][f"{metric} mean"])
    helped = all(g > 0 for g in gains.values())
    text = ", ".join(f"{run} {100 * g:+.1f}" for run, g in gains.items())
    return (
        f"{'holds' if helped and best == LACP_LABEL else 'partly holds' if helped else 'does not hold'} here "
        f"({metric} over the baseline, points: {text}; best: {best})"
    )


def verdict_distributions(rows: list[dict[str, Any]], runs: dict[str, dict[str, Any]]) -> str:
    """Claim 3: completeness learning helps whatever the label distribution."""
    metric = _compared_metric(rows)
    overrides = {r["label"]: r["overrides"] for r in runs.values()}
    by_dist: dict[str, dict[str, float]] = {}
    for row in rows:
        o = overrides.get(row["run"], {})
        if "points.distribution" in o and "train.completeness" in o:
            by_dist.setdefault(o["points.distribution"], {})[o["train.completeness"]] = row[f"{metric} mean"]
    gains = {d: v["true"] - v["false"] for d, v in by_dist.items() if {"true", "false"} <= v.keys()}
    if not gains:
        return "not decidable: the study has no distribution with completeness both off and on"
    worse = [d for d, g in gains.items() if g <= 0]
    text = ", ".join(f"{d} {100 * g:+.1f}" for d, g in gains.items())
    return (
        f"{'holds' if not worse else 'does not hold for ' + ', '.join(worse)} here "
        f"({metric} with completeness minus without, points: {text})"
    )


def _copy_pictures(markdown: str, source: Path, target: Path, prefix: str) -> str:
    """Copy the PNGs a markdown file links (relative to `source`) under target/prefix, relinked."""
    import re

    def move(match: re.Match) -> str:
        picture = source / match.group(2)
        if not picture.is_file():
            return match.group(0)
        destination = target / prefix / match.group(2)
        write_bytes_atomic(destination, picture.read_bytes())
        return f"![{match.group(1)}]({prefix}/{match.group(2)})"

    return re.sub(r"!\[([^\]]*)\]\(([^)\s]+\.png)\)", move, markdown)


def build_report(
    *,
    analysis_dir: Path,
    out_dir: Path,
    ablation_dir: Path = ABLATION_DIR,
    distributions_dir: Path = DISTRIBUTIONS_DIR,
    qualitative_dir: Path = QUALITATIVE_DIR,
) -> Path:
    """Write out_dir/analysis.md with its pictures under out_dir.

    Args:
        analysis_dir: the analyze stage's folder (metrics.json, report.md and pictures).
        out_dir: the report's folder (replaced pictures, rewritten markdown).
        ablation_dir, distributions_dir, qualitative_dir: the studies' and comparison's folders.

    Returns:
        The markdown file's path.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [
        "# LACP's analyses on this data",
        "",
        "Each section checks one claim of the paper (LACP, ICCV 2021, section 4.4) and says whether it holds here.",
        "",
    ]

    # 1. scoring variants and optimal sequences: the analyze stage's report
    stage_report = Path(analysis_dir) / "report.md"
    if stage_report.is_file():
        metrics = read_json(Path(analysis_dir) / "metrics.json", what="analysis metrics")
        lines += [
            "## 1. The score contrast represents completeness",
            "",
            f"**Claim**: OIC follows a proposal's tIoU far better than the inner score. **Verdict**: "
            f"{verdict_scoring(metrics)}.",
            "",
        ]
        body = stage_report.read_text().split("\n", 1)[1]  # without its "# Analysis" title
        lines += [_copy_pictures(body.replace("\n## ", "\n### "), Path(analysis_dir), out_dir, "analyze"), ""]
    else:
        lines += [
            "## 1. Scoring variants and optimal sequences",
            "",
            f"Not produced yet: run `dvc repro` (or `python -m pipeline run analyze`); {stage_report} is missing.",
            "",
        ]

    # 2. and 3. the studies
    for title, folder, claim in (
        ("2. Effect of each completeness guidance", Path(ablation_dir), "ablation"),
        ("3. Completeness learning under every label distribution", Path(distributions_dir), "distributions"),
    ):
        lines += [f"## {title}", ""]
        if not (folder / "study.csv").is_file():
            lines += [f"Not produced yet: run `make {claim}` ({folder}/study.csv is missing).", ""]
            continue
        rows = read_study_rows(folder)
        if claim == "ablation":
            verdict = verdict_ablation(rows)
            statement = "each guidance improves on the point-only baseline, and both together most"
        else:
            verdict = verdict_distributions(rows, read_json(folder / RUNS_FILE, what="study runs"))
            statement = "completeness learning improves the mAP whatever the point distribution"
        lines += [
            f"**Claim**: {statement}. **Verdict**: {verdict}.",
            "",
            f"mAP in %, mean ± std over seeds ({folder}/study.md, study.csv):",
            "",
            (folder / "study.md").read_text().rstrip(),
            "",
            _copy_pictures(f"![{claim}](study.png)", folder, out_dir, claim),
            "",
        ]

    # 4. qualitative comparison
    lines += ["## 4. Qualitative comparison", ""]
    index = Path(qualitative_dir) / "qualitative.md"
    if index.is_file():
        body = index.read_text().split("\n", 1)[1]
        lines += [_copy_pictures(body, Path(qualitative_dir), out_dir, "qualitative"), ""]
    else:
        lines += [f"Not produced yet: run `make qualitative` ({index} is missing).", ""]
    path = out_dir / "analysis.md"
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines).rstrip() + "\n")
    return path


def publish_report(path: Path) -> str:
    """The report as a Prefect markdown artifact (pictures inside), from a flow run; returns its key."""
    from prefect import flow
    from prefect.artifacts import create_markdown_artifact

    from pipeline.prefect_artifacts import embed_pngs

    @flow(name="analysis-report", log_prints=True, persist_result=False)
    def analysis_report() -> str:
        create_markdown_artifact(
            key="analysis-report",
            markdown=embed_pngs(path.read_text(), base_dir=path.parent),
            description=f"LACP's analyses on this data ({path})",
        )
        return "analysis-report"

    return analysis_report()


def summary_json(path: Path) -> str:
    """A one-line summary for the terminal: the report's path and its verdict lines."""
    verdicts = [line for line in path.read_text().splitlines() if "**Verdict**" in line]
    return json.dumps({"report": str(path), "verdicts": [v.split("**Verdict**: ", 1)[1] for v in verdicts]})
