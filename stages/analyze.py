"""analyze stage: the paper's analyses of the trained run (LACP, ICCV 2021, section 4.4).

1. Scoring variants ("how well does the score contrast represent the action completeness?"):
   every proposal of the test videos before NMS (`lacp.inference.video_candidates`, the same
   network outputs and settings as the evaluate stage's detections; `max_proposals` > 0 draws
   a seeded sample instead), its best tIoU with a ground-truth instance of its class in its
   video, its inner score (mean class activation inside) and its outer-inner contrast (OIC);
   Pearson and Spearman correlation of each score with the tIoU, overall and per class
   (`lacp.score_analysis`). The OIC is the released inference's (`detection.faithful: true`): on the CAS
   upsampled 24x, a left outer window of ceil(L/4) and a right one of floor(L/4) positions
   pooled into one mean, and for runs cut at a CAS threshold the values below that threshold
   counted as 0; `detection.faithful: false` is METHOD.md's literal floor(L/4) each side on the
   unmodified CAS (`lacp.proposals`).
2. Optimal sequences: for `sequence_videos` training videos, the ground truth, the points, the
   pseudo labels of the first and the last search (`lacp.search_record`, written by train)
   and the trained model's class activation; and the pseudo labels' quality at every search,
   from the train stage's log (`pseudo/<name>`, `lacp.pseudo_quality`).

Outputs in the analysis folder: `metrics.json` (DVC metrics: the correlations, overall and
`per_class`, the paper's values beside them, the same over the proposals that overlap an
instance (`_overlapping`, tIoU > 0), the pseudo-label quality at the first and the last search),
`scatter_oic.csv` / `scatter_inner.csv` (DVC scatter plots; at most `scatter_points` proposals,
a seeded sample), `correlations.csv`, `scoring_variants.png`, `pseudo_quality.png`,
`sequences/<vid>.png` and `report.md` (published to Prefect by the flow).
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from core.device import resolve_device
from core.files import atomic_path, write_json
from features.store import FeatureStore
from lacp.inference import score_video, video_candidates
from lacp.model_io import load_model, read_checked_meta
from lacp.plots.analysis import plot_pseudo_quality, plot_score_scatter, plot_search_sequence
from lacp.points.formats import read_points_csv
from lacp.proposals import DetectionConfig
from lacp.pseudo_quality import PSEUDO_COLUMNS
from lacp.score_analysis import PAPER_PEARSON, ScoredProposals, best_tiou, correlations
from lacp.search_record import read_search_record
from lacp.splits import read_split
from stages.artifacts import LacpRun, available_videos, ground_truth_instances, read_annotations, read_training_log
from stages.common import StageParams

log = logging.getLogger(__name__)
SCORES = ("oic", "inner")


class AnalyzeParams(StageParams):
    max_proposals: int = Field(0, ge=0)
    scatter_points: int = Field(4000, ge=1)
    sequence_videos: int = Field(4, ge=0)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"


def score_proposals(
    model,
    store: FeatureStore,
    videos: list[str],
    annotations: dict[str, Any],
    detection: DetectionConfig,
    device,
    *,
    num_segments: int,
) -> ScoredProposals:
    """Every candidate proposal of `videos` with its best same-class tIoU, inner score and OIC
    (`detection`: the proposal settings; NMS is not used: the analysis is of every candidate)."""
    snippet_seconds = store.time_grid.seconds_per_snippet
    parts = []
    for vid in videos:
        scored = score_video(
            model, store[vid], detection, device, num_segments=num_segments, snippet_seconds=snippet_seconds
        )
        found = video_candidates(scored, detection)
        gt = ground_truth_instances(annotations, [vid])[vid]
        gt_segments = np.array([[s, e] for _, s, e in gt]).reshape(-1, 2)
        gt_labels = np.array([c for c, _, _ in gt], dtype=np.int64)
        parts.append(
            (
                found.label_index,
                best_tiou(found.segments, found.label_index, gt_segments, gt_labels),
                found.inner,
                found.oic,
            )
        )
    label_index, tiou, inner, oic = (np.concatenate(column) for column in zip(*parts))
    return ScoredProposals(label_index=label_index, tiou=tiou, inner=inner, oic=oic)


def sample(proposals: ScoredProposals, count: int, *, seed: int) -> ScoredProposals:
    """A seeded uniform sample of `count` proposals (all of them, in order, when count = 0 or
    there are no more than that)."""
    total = len(proposals.tiou)
    if not count or total <= count:
        return proposals
    at = np.sort(np.random.default_rng(seed).choice(total, size=count, replace=False))
    return ScoredProposals(*(getattr(proposals, f)[at] for f in ("label_index", "tiou", "inner", "oic")))


def sequence_videos(candidates: list[str], count: int) -> list[str]:
    """`count` videos spread evenly over the sorted `candidates` (first and last included)."""
    ordered = sorted(candidates)
    if count >= len(ordered):
        return ordered
    if count <= 0:
        return []
    return [ordered[i] for i in sorted(set(np.linspace(0, len(ordered) - 1, count).round().astype(int).tolist()))]


def search_quality(train_log: Path) -> dict[str, dict[int, float]]:
    """The train stage's pseudo-label quality per search step: name -> {step: value} (empty
    names for a run without searches)."""
    found = read_training_log(train_log)
    return {name: found.get(f"pseudo/{name}", {}) for name in PSEUDO_COLUMNS}


def run(
    params: AnalyzeParams,
    *,
    detection: DetectionConfig,
    lacp_run: LacpRun,
    train_log: Path,
    out_dir: Path,
) -> dict[str, Any]:
    """The scoring-variants and optimal-sequence analyses of the trained run.

    Args:
        params: the `analyze` params section.
        detection: the params' detection section, LACP's keys (the model folder's record must
            equal it, as evaluate's does).
        lacp_run: the trained LACP run's artifacts (`stages.artifacts.LacpRun`).
        train_log: train's log folder (the pseudo-label quality per search).
        out_dir: where the metrics, plots and pictures go.

    Returns:
        The overall correlations and pseudo-label IoUs (metrics.json holds them with the per-class
        ones), and `report`, the path of report.md.
    """
    # 1. inputs
    out_dir = Path(out_dir)
    annotations = read_annotations(lacp_run.dataset_dir)
    classes = annotations["classes"]
    device = resolve_device(params.device)
    meta = read_checked_meta(lacp_run.model_dir, detection)
    model = load_model(lacp_run.model_dir, device=device)
    num_segments = meta["num_segments"]
    record = read_search_record(lacp_run.pseudo_labels)
    quality = search_quality(train_log)
    test = sorted(v for v, e in annotations["database"].items() if e["subset"] == "test")

    with FeatureStore(lacp_run.features) as store:
        # 2. scoring variants on the test videos
        videos = available_videos(store, test, features=Path(lacp_run.features), what="test")
        analysed = sample(
            score_proposals(model, store, videos, annotations, detection, device, num_segments=num_segments),
            params.max_proposals,
            seed=params.seed,
        )
        found = correlations(analysed, classes=classes)
        drawn = sample(analysed, params.scatter_points, seed=params.seed)

        # 3. optimal sequences of a few training videos, with the trained model's CAS
        trained = [v for v in read_split(lacp_run.model_dir).train if v in store]
        pictured = sequence_videos(trained, params.sequence_videos)
        points: dict[str, list[tuple[int, float]]] = {v: [] for v in pictured}
        for point in read_points_csv(Path(lacp_run.points_dir) / "points.csv", annotations):
            if point.video_id in points:
                points[point.video_id].append((point.class_index, float(point.time)))
        snippet_seconds = store.time_grid.seconds_per_snippet
        for vid in pictured:
            scored = score_video(
                model, store[vid], detection, device, num_segments=num_segments, snippet_seconds=snippet_seconds
            )
            plot_search_sequence(
                vid,
                instances=ground_truth_instances(annotations, [vid])[vid],
                points=points[vid],
                first=record.first.get(vid),
                first_step=record.first_step,
                final=record.final.get(vid),
                final_step=record.final_step,
                q=scored.q,
                q_seconds=scored.seconds,
                snippet_seconds=snippet_seconds,
                classes=classes,
                path=out_dir / "sequences" / f"{vid}.png",
            )

    # 4. metrics, plots, report
    metrics = metrics_table(found, quality)
    write_json(out_dir / "metrics.json", metrics)
    write_scatter_csvs(out_dir, drawn, classes)
    write_correlations_csv(out_dir / "correlations.csv", found)
    plot_score_scatter(
        tiou=drawn.tiou,
        inner=drawn.inner,
        oic=drawn.oic,
        label_index=drawn.label_index,
        classes=classes,
        pearson={s: found[f"pearson_{s}"] for s in SCORES},
        overlapping={s: found[f"pearson_{s}_overlapping"] for s in SCORES},
        paper=PAPER_PEARSON,
        path=out_dir / "scoring_variants.png",
    )
    plot_pseudo_quality(quality, out_dir / "pseudo_quality.png")
    write_report(
        out_dir,
        metrics,
        found,
        pictured,
        faithful=detection.faithful,
        sampled=params.max_proposals,
        has_quality=bool(quality["iou"]),
    )
    headline = {k: v for k, v in metrics.items() if not isinstance(v, dict)}
    return {**headline, "report": str(out_dir / "report.md")}


def _number(value: float) -> float | None:
    """A JSON-safe metric: NaN (a constant sample) becomes null."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def metrics_table(found: dict[str, Any], quality: dict[str, dict[int, float]]) -> dict[str, Any]:
    """metrics.json: the correlations (overall, then `per_class`), the paper's r beside them,
    the pseudo-label quality at the first and the last search (when searches ran)."""
    metrics: dict[str, Any] = {"proposals": found["proposals"], "overlapping": found["overlapping"]}
    for suffix in ("", "_overlapping"):
        for name in ("pearson", "spearman"):
            for score in SCORES:
                metrics[f"{name}_{score}{suffix}"] = _number(found[f"{name}_{score}{suffix}"])
    metrics |= {f"paper_pearson_{s}": PAPER_PEARSON[s] for s in SCORES}
    if quality["iou"]:
        steps = sorted(quality["iou"])
        metrics |= {"first_search_step": steps[0], "last_search_step": steps[-1]}
        for name, curve in quality.items():
            if curve:
                metrics[f"pseudo_{name}_first_search"] = curve[steps[0]]
                metrics[f"pseudo_{name}_last_search"] = curve[steps[-1]]
    metrics["per_class"] = {c: {k: _number(v) for k, v in row.items()} for c, row in found["per_class"].items()}
    return metrics


def write_scatter_csvs(out_dir: Path, drawn: ScoredProposals, classes: list[str]) -> None:
    """scatter_<score>.csv (class, tiou, <score>) for each score: the DVC scatter plots."""
    for score in SCORES:
        with atomic_path(out_dir / f"scatter_{score}.csv") as tmp, tmp.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["class", "tiou", score])
            for c, t, v in zip(drawn.label_index.tolist(), drawn.tiou.tolist(), getattr(drawn, score).tolist()):
                writer.writerow([classes[c], round(t, 6), round(v, 6)])


def write_correlations_csv(path: Path, found: dict[str, Any]) -> None:
    """correlations.csv: one row for all proposals, then one per class."""
    columns = [
        "proposals",
        "pearson_oic",
        "pearson_inner",
        "spearman_oic",
        "spearman_inner",
        "overlapping",
        "pearson_oic_overlapping",
        "pearson_inner_overlapping",
        "spearman_oic_overlapping",
        "spearman_inner_overlapping",
    ]
    with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["class", *columns])
        writer.writerow(["(all)", *(found[k] for k in columns)])
        for name, row in found["per_class"].items():
            writer.writerow([name, *(row[k] for k in columns)])


def _fmt(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def write_report(
    out_dir: Path,
    metrics: dict[str, Any],
    found: dict[str, Any],
    pictured: list[str],
    *,
    faithful: bool,
    sampled: int,
    has_quality: bool,
) -> None:
    """report.md: the correlation table beside the paper's, the pseudo-label quality, the pictures
    (`faithful`: the OIC convention, `detection.faithful`)."""
    convention = (
        "the released inference's: left outer window ceil(L/4), right floor(L/4) positions of the "
        "24x-upsampled CAS, sub-threshold values counted as 0 for CAS-threshold runs"
        if faithful
        else "METHOD.md's literal one: floor(L/4) positions each side of the 24x-upsampled CAS"
    )
    lines = [
        "# Analysis",
        "",
        "## Scoring variants: does the score contrast follow completeness?",
        "",
        f"{metrics['proposals']} proposals of the test videos before NMS"
        + (f" (a seeded sample of {sampled})" if sampled else " (all of them)")
        + ", each with its best tIoU to a ground-truth instance of its class. "
        f"OIC convention: {convention}.",
        "",
        f"The last two columns take only the {metrics['overlapping']} proposals that overlap an instance of their "
        "class (tIoU > 0): how complete a proposal on an action is, without the wrong-class and background "
        "proposals, which all sit at tIoU 0.",
        "",
        "| score | Pearson r | paper's Pearson r (THUMOS'14) | Spearman rho "
        "| Pearson r, tIoU > 0 | Spearman rho, tIoU > 0 |",
        "|---|---|---|---|---|---|",
    ]
    for score, name in (("oic", "outer-inner contrast (OIC)"), ("inner", "inner score")):
        lines.append(
            f"| {name} | {_fmt(metrics[f'pearson_{score}'])} | {PAPER_PEARSON[score]:.2f} | "
            f"{_fmt(metrics[f'spearman_{score}'])} | {_fmt(metrics[f'pearson_{score}_overlapping'])} | "
            f"{_fmt(metrics[f'spearman_{score}_overlapping'])} |"
        )
    lines += [
        "",
        "![inner score and OIC against tIoU](scoring_variants.png)",
        "",
        "Per class:",
        "",
        "| class | proposals | Pearson r OIC | Pearson r inner | Spearman OIC | Spearman inner |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in found["per_class"].items():
        lines.append(
            f"| {name} | {row['proposals']} | {_fmt(row['pearson_oic'])} | {_fmt(row['pearson_inner'])} | "
            f"{_fmt(row['spearman_oic'])} | {_fmt(row['spearman_inner'])} |"
        )
    lines += ["", "## Optimal sequences", ""]
    if has_quality:
        lines += [
            f"Pseudo labels against the training ground truth, first search (step {metrics['first_search_step']}) "
            f"and last (step {metrics['last_search_step']}):",
            "",
            "| | mean IoU | GT snippets covered | pseudo snippets inside GT | length ratio |",
            "|---|---|---|---|---|",
        ]
        for when in ("first", "last"):
            lines.append(
                f"| {when} search | "
                + " | ".join(_fmt(metrics.get(f"pseudo_{n}_{when}_search")) for n in PSEUDO_COLUMNS)
                + " |"
            )
        lines += ["", "![pseudo-label quality per search](pseudo_quality.png)", ""]
    else:
        lines += ["No search ran (completeness off: the point-only baseline).", ""]
    lines += [f"![{vid}](sequences/{vid}.png)" for vid in pictured]
    with atomic_path(out_dir / "report.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
