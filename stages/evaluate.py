"""evaluate stage: model + features + annotations -> predictions, metrics and pictures.

Outputs in the evaluation folder: `predictions.json` (ActivityNet results format, test
videos), `metrics.json` (DVC metrics: mAP at each tIoU in [0, 1], the three averages,
classification accuracy on the test videos; the same prefixed `val_` on the validation videos
that the train stage held out, when its split has any), `per_class_ap.csv` (AP of each class
at each tIoU and averaged; a DVC plot), `map_vs_tiou.csv/.png`, `per_class_ap.png`,
`timelines/<vid>.png` and `report.md` (the tables and the pictures, published to Prefect by
the flow). Pictures and per-class files are of the test videos.

The stage reads its own params section, the `detection` section (which must equal the model
folder's record, the settings `python -m pipeline detect` applies) and the model folder: a model trained on sequences
resampled to N snippets (`train.num_segments`, recorded as `num_segments` in model.json) is
evaluated on each video resampled to N snippets the same way (`lacp.inference.predict`), its
detections mapped back to the video's seconds.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from core.device import resolve_device
from core.files import atomic_path, write_json
from detector.config import InferenceConfig
from detector.model_io import VIDEO_SCORER, read_detector_meta
from features.store import FeatureStore
from lacp.metrics import (
    DetectionResult,
    classification_accuracy,
    evaluate_detection,
    format_table,
    load_ground_truth,
    summary_table,
)
from lacp.model_io import check_recorded_settings, read_checked_meta
from lacp.plots.canvas import CURVE_NAMES
from lacp.plots.evaluation import plot_map_vs_tiou, plot_per_class_ap, plot_timeline
from lacp.proposals import DetectionConfig, to_results_json
from lacp.splits import SPLIT_FILE, read_split
from stages.artifacts import available_videos, model_kind, read_annotations
from stages.common import StageParams
from stages.predictors import load_predictor

log = logging.getLogger(__name__)


class EvaluateParams(StageParams):
    tiou: list[float] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    timelines: int = Field(4, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"


def validation_videos(model_dir: Path, annotations: dict[str, Any]) -> list[str]:
    """The validation videos that the train stage held out (`SPLIT_FILE` in the model folder).

    Args:
        model_dir: train's output.
        annotations: prepare's annotations; the videos must be among its training videos.

    Returns:
        Their ids, sorted; none (with a warning) for a model folder without a split file,
        i.e. one not written by the train stage.

    Raises:
        ValueError: the split names videos that are not training videos of the annotations.
    """
    path = Path(model_dir) / SPLIT_FILE
    if not path.is_file():
        log.warning("%s not found: no validation metrics", path)
        return []
    videos = list(read_split(model_dir).validation)
    database = annotations["database"]
    strays = [v for v in videos if v not in database or database[v]["subset"] != "train"]
    if strays:
        raise ValueError(
            f"{path}: {len(strays)} validation video(s) are not training videos of the annotations: "
            f"{', '.join(strays[:20])} (rerun the train stage)"
        )
    return videos


def check_recorded_detection(model_dir: Path, *, detection: DetectionConfig, inference: InferenceConfig) -> None:
    """Refuse a model folder whose recorded detection settings (the ones `python -m pipeline
    detect` applies) differ from the params' section: LACP's record (train's folder, or the LACP
    copy a detector folder fuses its scores with) against `detection`, a detector folder's
    post-processing against `inference` (`lacp.model_io.check_recorded_settings`).

    Raises:
        ValueError: naming the model.json, each differing key and both values.
    """
    model_dir = Path(model_dir)
    lacp_dir = model_dir
    if model_kind(model_dir) == "detector":
        meta, _, recorded = read_detector_meta(model_dir)
        check_recorded_settings(
            recorded, inference, where=model_dir / "model.json", section="detection.detector", writer="selftrain"
        )
        if meta["video_scores"] != "lacp":
            return
        lacp_dir = model_dir / VIDEO_SCORER
    read_checked_meta(lacp_dir, detection)


def subset_metrics(
    detection: DetectionResult, class_sets: dict[str, set[int]], annotations: dict[str, Any], videos: list[str]
) -> dict[str, float | int]:
    """The metrics of one set of videos: mAP per tIoU and averages, accuracy, video count.

    Args:
        detection: `evaluate_detection` against the set's ground truth.
        class_sets: predicted class indices by video (`predict`).
        annotations: prepare's annotations (the true classes).
        videos: the videos predicted (present in the features).

    Returns:
        `summary_table` (fractions) plus `accuracy` and `videos`.
    """
    classes = annotations["classes"]
    truth = {vid: {classes.index(a["label"]) for a in annotations["database"][vid]["annotations"]} for vid in videos}
    metrics: dict[str, float | int] = dict(summary_table(detection, percent=False))
    metrics["accuracy"] = classification_accuracy(class_sets, truth)
    metrics["videos"] = len(videos)
    return metrics


def run(
    params: EvaluateParams,
    *,
    detection: DetectionConfig,
    inference: InferenceConfig,
    dataset_dir: Path,
    features: Path,
    model_dir: Path,
    out_dir: Path,
) -> dict[str, Any]:
    """Evaluate the trained model on the test subset and on the held-out validation videos.

    Args:
        params: the `evaluate` params section.
        detection: the params' detection section, LACP's keys (the model folder's record must
            equal it: `check_recorded_detection`).
        inference: the params' `detection.detector` (a detector folder's record must equal it).
        dataset_dir: prepare's output (annotations.json).
        features: the HDF5 feature store.
        model_dir: train's output (model and validation split).
        out_dir: where predictions, metrics and pictures go.

    Returns:
        The metrics (also written to metrics.json; validation ones prefixed `val_`) and
        `report`, the path of report.md.
    """
    # 1. inputs
    out_dir = Path(out_dir)
    annotations = read_annotations(dataset_dir)
    classes = annotations["classes"]
    device = resolve_device(params.device)
    check_recorded_detection(model_dir, detection=detection, inference=inference)
    predictor = load_predictor(model_dir, detection, device, classes=classes, inference=inference)
    test = sorted(v for v, e in annotations["database"].items() if e["subset"] == "test")
    gt = load_ground_truth(annotations, subset="test")
    validation = validation_videos(model_dir, annotations)
    val_gt = load_ground_truth(annotations, subset="train", videos=validation) if validation else None

    # 2. predictions (features streamed one video at a time)
    with FeatureStore(features) as store:
        videos = available_videos(store, test, features=features, what="test")
        proposals, class_sets, scores, timeline_seconds = predictor(
            store, videos, keep_scores=videos[: params.timelines]
        )
        held_out = available_videos(store, validation, features=features, what="validation")
        val_proposals, val_class_sets, _, _ = predictor(store, held_out)
    results = to_results_json(proposals, classes=classes)
    write_json(out_dir / "predictions.json", results)

    # 3. metrics against every instance of the set (a video missing upstream counts as missed)
    detection = evaluate_detection(gt, results, tiou=np.asarray(params.tiou))
    metrics: dict[str, Any] = subset_metrics(detection, class_sets, annotations, videos)
    metrics["selection"] = predictor.selection
    val_table = ""
    if val_gt is not None:
        val_detection = evaluate_detection(
            val_gt, to_results_json(val_proposals, classes=classes), tiou=np.asarray(params.tiou)
        )
        metrics |= {
            f"val_{k}": v for k, v in subset_metrics(val_detection, val_class_sets, annotations, held_out).items()
        }
        val_table = format_table(val_detection)
    write_json(out_dir / "metrics.json", metrics)

    # 4. pictures (test videos) and report
    test_metrics = {k: v for k, v in metrics.items() if not k.startswith("val_")}
    write_plots(
        out_dir,
        detection,
        test_metrics,
        annotations,
        proposals,
        scores,
        videos[: params.timelines],
        classes,
        snippet_seconds=timeline_seconds,
        curve_names=CURVE_NAMES[model_kind(model_dir)],
    )
    write_report(out_dir, format_table(detection), videos[: params.timelines], validation_table=val_table)
    if metrics["selection"].startswith("best on test"):
        log.warning("these metrics come from weights selected on the test set: %s", metrics["selection"])
    return {**metrics, "report": str(out_dir / "report.md")}


def write_plots(
    out_dir,
    detection,
    metrics,
    annotations,
    proposals,
    scores,
    timeline_videos,
    classes,
    *,
    snippet_seconds: dict[str, float],
    curve_names: tuple[str, str],
) -> None:
    """map_vs_tiou.csv/.png, per_class_ap.csv/.png and one timeline per chosen test video
    (`snippet_seconds`: seconds per position of each of those videos' `scores`; `curve_names`:
    what the model's kept score curves are, `CURVE_NAMES`)."""
    with atomic_path(out_dir / "map_vs_tiou.csv") as tmp, tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["tiou", "map"])
        for t, m in zip(detection.tiou, detection.map):
            writer.writerow([round(float(t), 2), float(m)])
    with atomic_path(out_dir / "per_class_ap.csv") as tmp, tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["class", "mean_ap", *(f"ap@{float(t):g}" for t in detection.tiou)])
        for name, ap in zip(detection.classes, detection.ap):  # ap: (K,) over the thresholds
            writer.writerow([name, float(np.mean(ap)), *(float(a) for a in ap)])
    plot_map_vs_tiou({k: v for k, v in metrics.items() if isinstance(v, float)}, out_dir / "map_vs_tiou.png")
    plot_per_class_ap(detection.classes, detection.ap, out_dir / "per_class_ap.png", tiou=detection.tiou)
    for vid in timeline_videos:
        gt = annotations["database"][vid]["annotations"]
        labels = sorted({a["label"] for a in gt})
        main = classes.index(labels[0])
        plot_timeline(
            vid,
            gt_segments=[[float(x) for x in a["segment"]] for a in gt if a["label"] == labels[0]],
            predictions=[p for p in proposals[vid] if p["label_index"] == main],
            cas=scores[vid][:, main],
            actionness=1.0 - scores[vid][:, -1],
            snippet_seconds=snippet_seconds[vid],
            path=out_dir / "timelines" / f"{vid}.png",
            curve_names=curve_names,
        )


def write_report(out_dir: Path, table: str, timeline_videos: list[str], *, validation_table: str = "") -> None:
    """report.md: the test mAP table, the validation one (when given) and links to the pictures
    (the flow publishes it to Prefect)."""
    lines = ["# Evaluation", "", "```", table.rstrip(), "```", ""]
    if validation_table:
        lines += [
            "Validation (training videos held out by the train stage):",
            "",
            "```",
            validation_table.rstrip(),
            "```",
            "",
        ]
    lines += ["![mAP vs tIoU](map_vs_tiou.png)", "", "![AP per class](per_class_ap.png)", ""]
    lines += [f"![{vid}](timelines/{vid}.png)" for vid in timeline_videos]
    with atomic_path(out_dir / "report.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
