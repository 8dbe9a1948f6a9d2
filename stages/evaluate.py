"""evaluate stage: model + features + annotations -> predictions, metrics and pictures.

Outputs in the evaluation folder: `predictions.json` (ActivityNet results format),
`metrics.json` (DVC metrics: mAP at each tIoU in [0, 1], the three averages, classification
accuracy), `per_class_ap.csv` (AP of each class at each tIoU and averaged; a DVC plot),
`map_vs_tiou.csv/.png`, `per_class_ap.png`, `timelines/<vid>.png` and `report.md` (the
table and the pictures, published to Prefect by the flow).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Collection
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from features.store import FeatureStore
from lacp.metrics import classification_accuracy, evaluate_detection, format_table, load_ground_truth, summary_table
from lacp.plots import plot_map_vs_tiou, plot_per_class_ap, plot_timeline
from lacp.proposals import generate_proposals, predicted_classes, to_results_json, video_scores
from lacp.model import LACPNet
from lacp.model_io import load_model, read_model_meta
from lacp.trainer import resolve_device
from stages.common import StageParams, atomic_path, write_json
from stages.prepare import read_annotations
from stages.extract import available_videos

log = logging.getLogger(__name__)

SNIPPET_SECONDS = 16 / 25


class EvaluateParams(StageParams):
    r_act: int = Field(8, ge=1)
    class_threshold: float = Field(0.5, gt=0, lt=1)
    nms_tiou: float = Field(0.7, gt=0, le=1)
    faithful: bool = False
    tiou: list[float] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    timelines: int = Field(4, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"


@torch.no_grad()
def video_outputs(model: LACPNet, features: np.ndarray, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """(p, q) of one video: (T, C+1) sigmoid scores and fused scores."""
    x = torch.from_numpy(features).to(device)[None]  # (1, T, D)
    out = model(x)
    return out["p"][0].float().cpu().numpy(), out["q"][0].float().cpu().numpy()


def predict(
    model: LACPNet,
    store: FeatureStore,
    videos: list[str],
    params: EvaluateParams,
    device: torch.device,
    *,
    keep_scores: Collection[str] = (),
) -> tuple[dict[str, list[dict]], dict[str, set[int]], dict[str, np.ndarray]]:
    """Proposals and predicted class sets of every video, fused scores of the chosen ones.

    Features are read one video at a time; only the proposals (and the (T, C+1) fused
    scores of the `keep_scores` videos, for the timeline pictures) are kept, so memory does
    not grow with the number of test videos.

    Returns:
        (proposals by video, predicted class indices by video, fused scores (T, C+1) of the
        `keep_scores` videos).
    """
    proposals, class_sets, scores = {}, {}, {}
    keep = set(keep_scores)
    c = model.num_classes
    for vid in videos:
        p, q = video_outputs(model, store[vid], device)
        vscore = video_scores(p[:, :c], r_act=params.r_act)
        proposals[vid] = generate_proposals(
            q,
            video_score=vscore,
            r_act=params.r_act,
            class_threshold=params.class_threshold,
            nms_tiou=params.nms_tiou,
            snippet_seconds=SNIPPET_SECONDS,
            faithful=params.faithful,
        )
        class_sets[vid] = set(int(i) for i in predicted_classes(vscore, threshold=params.class_threshold))
        if vid in keep:
            scores[vid] = q
    return proposals, class_sets, scores


def run(params: EvaluateParams, *, dataset_dir: Path, features: Path, model_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Evaluate the trained model on the test subset.

    Args:
        params: the `evaluate` params section.
        dataset_dir: prepare's output (annotations.json).
        features: the HDF5 feature store.
        model_dir: train's output.
        out_dir: where predictions, metrics and pictures go.

    Returns:
        The metrics (also written to metrics.json) and `report`, the path of report.md.
    """
    # 1. inputs
    out_dir = Path(out_dir)
    annotations = read_annotations(dataset_dir)
    classes = annotations["classes"]
    device = resolve_device(params.device)
    model = load_model(model_dir, device=device)
    if model.num_classes != len(classes):
        raise ValueError(f"{model_dir}: model has {model.num_classes} classes, annotations have {len(classes)}")
    test = sorted(v for v, e in annotations["database"].items() if e["subset"] == "test")

    # 2. predictions (features streamed one video at a time)
    with FeatureStore(features) as store:
        videos = available_videos(store, test, features=features, what="test")
        proposals, class_sets, scores = predict(model, store, videos, params, device, keep_scores=videos[: params.timelines])
    results = to_results_json(proposals, classes=classes)
    write_json(out_dir / "predictions.json", results)

    # 3. metrics against every test instance (a video missing upstream counts as missed)
    gt = load_ground_truth(annotations, subset="test")
    detection = evaluate_detection(gt, results, tiou=np.asarray(params.tiou))
    truth = {vid: {classes.index(a["label"]) for a in annotations["database"][vid]["annotations"]} for vid in videos}
    metrics = summary_table(detection, percent=False)
    metrics["accuracy"] = classification_accuracy(class_sets, truth)
    metrics["videos"] = len(videos)
    metrics["selection"] = read_model_meta(model_dir).get("selection", "final step")
    write_json(out_dir / "metrics.json", metrics)

    # 4. pictures and report
    write_plots(out_dir, detection, metrics, annotations, proposals, scores, videos[: params.timelines], classes)
    write_report(out_dir, format_table(detection), videos[: params.timelines])
    if metrics["selection"] != "final step":
        log.warning("these metrics come from weights selected on the test set: %s", metrics["selection"])
    return {**metrics, "report": str(out_dir / "report.md")}


def write_plots(out_dir, detection, metrics, annotations, proposals, scores, timeline_videos, classes) -> None:
    """map_vs_tiou.csv/.png, per_class_ap.csv/.png and one timeline per chosen test video."""
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
            snippet_seconds=SNIPPET_SECONDS,
            path=out_dir / "timelines" / f"{vid}.png",
        )


def write_report(out_dir: Path, table: str, timeline_videos: list[str]) -> None:
    """report.md: the mAP table and links to the pictures (the flow publishes it to Prefect)."""
    lines = ["# Evaluation", "", "```", table.rstrip(), "```", "", "![mAP vs tIoU](map_vs_tiou.png)", "", "![AP per class](per_class_ap.png)", ""]
    lines += [f"![{vid}](timelines/{vid}.png)" for vid in timeline_videos]
    with atomic_path(out_dir / "report.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
