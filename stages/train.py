"""train stage: features + points -> LACP model, training log (DVC plots).

Features are streamed from the HDF5 store one video at a time, so memory does not grow with
the dataset. Resumable: a checkpoint is written every `checkpoint_every` steps to
`<model_dir>.resume/<key>` (outside the DVC output, which DVC clears before a rerun); the key
hashes the train params, points.csv and the features, so only an identical run resumes, and
a rerun after a kill continues bit-identically. That key's folder is removed once training
ends (and `<model_dir>.resume/` once no other run's is left in it).

Validation: `validation_share` of the annotated training videos (seeded by `validation_seed`,
see `lacp.splits.validation_split`) are held out and never trained on; the split is written to
`lacp.splits.SPLIT_FILE` in the model folder, where the evaluate stage reads it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from features.store import FeatureStore
from features.timegrid import TimeGrid
from lacp.batching import VideoItem
from lacp.model_io import feature_record, save_model
from lacp.points.formats import read_points_csv
from lacp.proposals import DetectionConfig
from lacp.pseudo_quality import PSEUDO_COLUMNS, pseudo_label_quality
from lacp.search_record import SearchRecord, write_search_record
from lacp.splits import validation_split, write_split
from lacp.trainer import TrainConfig, TrainSettings, train
from stages.artifacts import LOSS_COLUMNS, available_videos, ground_truth_instances, read_annotations
from stages.common import StageParams
from stages.training_log import TrainingLog, remove_checkpoints, resume_dir, run_key

log = logging.getLogger(__name__)


class TrainParams(StageParams, TrainSettings):
    """The `train` section: the trainer's settings (`lacp.trainer.TrainSettings`: every key's
    type, default and check), plus what only this stage reads: the validation split, which is
    the stage's (`lacp.splits`), and the devices it accepts."""

    validation_share: float = Field(0.2, ge=0, lt=1)
    validation_seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"

    def config(self, *, feature_dim: int, r_act: int) -> TrainConfig:
        """The trainer's config: these settings as they are, the features' width and the top-k
        ratio (the params' `detection.r_act`)."""
        return TrainConfig(
            **self.model_dump(include=set(TrainSettings.model_fields)), feature_dim=feature_dim, r_act=r_act
        )


def video_labels(annotations: dict[str, Any], videos: list[str]) -> dict[str, set[str]]:
    """Class names of the instances of each of `videos` (empty for a video without any)."""
    return {vid: {a["label"] for a in annotations["database"][vid]["annotations"]} for vid in videos}


def training_videos(
    annotations: dict[str, Any], points_csv: Path, videos: list[str], *, grid: TimeGrid
) -> list[VideoItem]:
    """One `VideoItem` per training video: labels from the annotations, points from points.csv,
    mapped onto the features' time `grid`."""
    classes = annotations["classes"]
    by_video: dict[str, list] = defaultdict(list)
    for point in read_points_csv(points_csv, annotations):
        by_video[point.video_id].append(point)
    items = []
    for vid in videos:
        entry = annotations["database"][vid]
        labels = np.zeros(len(classes), dtype=np.float32)
        for a in entry["annotations"]:
            labels[classes.index(a["label"])] = 1.0
        pts = by_video.get(vid, [])
        items.append(
            VideoItem(
                video_id=vid,
                labels=labels,
                point_frames=np.array([p.point for p in pts], dtype=np.int64),
                point_classes=np.array([p.class_index for p in pts], dtype=np.int64),
                fps=float(entry["fps"]),
                grid=grid,
            )
        )
    return items


def test_map_fn(
    annotations: dict[str, Any],
    store: FeatureStore,
    *,
    features: Path,
    device: str,
    detection: DetectionConfig,
    num_segments: int = 0,
):
    """Periodic evaluation for `eval_every`: mean mAP over tIoU 0.1:0.7 on the TEST videos.

    Uses the params' detection settings (`detection`, the evaluate stage's too) and the default
    thresholds (`lacp.metrics.DEFAULT_TIOU`, 0.1:0.7): this
    stage does not read `evaluate` params, so `evaluate.tiou` (e.g. ActivityNet's 0.5:0.95)
    does not reach it. Inference is the evaluate stage's (`lacp.inference.predict`), on the
    same `num_segments` as training (0 = every snippet; N = each video resampled to N).
    Selecting a checkpoint with it (`select_best_on_test`) is the released recipe's protocol;
    the selection is recorded in model.json and metrics.json so such results stay labelled.
    """
    from core.device import resolve_device
    from lacp.inference import predict
    from lacp.metrics import evaluate_detection, load_ground_truth
    from lacp.proposals import to_results_json

    test = sorted(v for v, e in annotations["database"].items() if e["subset"] == "test")
    videos = available_videos(store, test, features=features, what="test")
    gt = load_ground_truth(annotations, subset="test")

    def evaluate(model, step: int) -> float:
        proposals, _, _ = predict(model, store, videos, detection, resolve_device(device), num_segments=num_segments)
        results = to_results_json(proposals, classes=annotations["classes"])
        return float(evaluate_detection(gt, results).map.mean())

    return evaluate


def run(
    params: TrainParams,
    *,
    detection: DetectionConfig,
    dataset_dir: Path,
    features: Path,
    points_dir: Path,
    model_dir: Path,
    log_dir: Path,
    pseudo_labels_path: Path,
    on_progress: Callable[[int, int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Train LACP (or the point-only baseline) and write the model and the loss log.

    Args:
        params: the `train` params section.
        detection: the params' detection section (LACP's keys): trained with its `r_act`,
            recorded in model.json for evaluate and `python -m pipeline detect`.
        dataset_dir: prepare's output (annotations.json).
        features: the HDF5 feature store.
        points_dir: the points stage's output (points.csv).
        model_dir: where model.pt, model.json (with the feature store's attrs and the detection
            settings: a self-contained model folder, `lacp.model_io`), the validation split
            (`lacp.splits.SPLIT_FILE`) and the resumable checkpoint go.
        log_dir: where the training log goes (`TrainingLog`), with the pseudo-label quality of
            every search against the training videos' ground truth (read for this log only).
        pseudo_labels_path: where the first and the last search's pseudo labels go
            (`lacp.search_record`).
        on_progress: called after every step with (step, steps, that step's log row: the
            `loss_<term>` values, seconds).

    Returns:
        Summary: steps, videos (trained on), validation_videos (held out), final losses,
        seconds per step.
    """
    # 1. inputs: annotations, points, the training part (present in the features) of the split
    annotations = read_annotations(dataset_dir)
    annotated = sorted(v for v, e in annotations["database"].items() if e["subset"] == "train")
    train_ids, validation_ids = validation_split(
        annotated,
        share=params.validation_share,
        seed=params.validation_seed,
        labels=video_labels(annotations, annotated),
    )
    log.info(
        "validation split: %d of %d training videos held out (share %g, seed %d)",
        len(validation_ids),
        len(annotated),
        params.validation_share,
        params.validation_seed,
    )
    with FeatureStore(features) as store:
        present = set(available_videos(store, annotated, features=Path(features), what="training"))
        videos = [v for v in train_ids if v in present]
        if not videos:
            raise ValueError(
                f"{features}: none of the {len(train_ids)} videos of the split's training part has features"
            )
        grid = store.time_grid
        recorded = feature_record(store.attrs)  # model.json's `features`
        items = training_videos(annotations, Path(points_dir) / "points.csv", videos, grid=grid)
        feature_dim = int(store[videos[0]].shape[1])

        # 2. train (features read per step from the open store)
        log.info(
            "training: %d steps, batch %d, %d videos, %d points",
            params.steps,
            params.batch,
            len(items),
            sum(len(i.point_frames) for i in items),
        )
        training_log = TrainingLog(
            Path(log_dir), loss_terms=LOSS_COLUMNS, pseudo_terms=PSEUDO_COLUMNS, on_progress=on_progress
        )
        instances = ground_truth_instances(annotations, videos)  # ground truth: for the log only

        def search_quality(labels: dict[str, np.ndarray]) -> dict[str, float]:
            return pseudo_label_quality(labels, instances, snippet_seconds=grid.seconds_per_snippet)

        evaluate_fn = None
        if params.eval_every:
            evaluate_fn = test_map_fn(
                annotations,
                store,
                features=Path(features),
                device=params.device,
                detection=detection,
                num_segments=params.num_segments,
            )
        checkpoint_dir = resume_dir(model_dir) / run_key(
            f"{params.fingerprint()}:r_act={detection.r_act}", [Path(points_dir) / "points.csv", Path(features)]
        )
        result = train(
            videos=items,
            get_features=store,
            num_classes=len(annotations["classes"]),
            config=params.config(feature_dim=feature_dim, r_act=detection.r_act),
            checkpoint_dir=checkpoint_dir,
            on_progress=training_log.progress,
            evaluate_fn=evaluate_fn,
            search_log=search_quality,
        )

    # 3. outputs
    save_model(
        model_dir,
        result.state_dict,
        classes=annotations["classes"],
        feature_dim=feature_dim,
        embed_dim=2048,
        dropout=params.dropout,
        selection=result.selection,
        num_segments=params.num_segments,  # evaluation resamples to the same length
        features=recorded,  # what `python -m pipeline detect` remakes the features of a new video with
        detection=detection,  # the settings evaluate applies and `python -m pipeline detect` reads back
    )
    write_split(
        model_dir,
        train=train_ids,
        validation=validation_ids,
        share=params.validation_share,
        seed=params.validation_seed,
    )
    write_search_record(
        Path(pseudo_labels_path),
        SearchRecord(
            first=result.first_pseudo_labels,
            first_step=result.first_search_step,
            final=result.pseudo_labels,
            final_step=max((int(r["step"]) for r in result.log if "pseudo_iou" in r), default=0),
        ),
    )
    quality = search_quality(result.pseudo_labels)
    training_log.finish(result.log, summary=quality)
    remove_checkpoints(checkpoint_dir)
    last = result.log[-1]
    return {
        "steps": result.steps,
        "videos": len(items),
        "validation_videos": len(validation_ids),
        "points": int(sum(len(i.point_frames) for i in items)),
        "selection": result.selection,
        "final_loss": round(last.get("loss_total", float("nan")), 5),
        "seconds_per_step": round(float(np.mean([r.get("seconds", 0.0) for r in result.log])), 4),
        **{k: round(v, 4) for k, v in quality.items()},
    }
