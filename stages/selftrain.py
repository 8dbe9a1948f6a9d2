"""selftrain stage: pseudo instances + features -> a fully-supervised detector (`detector/`).

The second half of self-training: the ActionFormer-style detector of the `detector` package
trained on the pseudo stage's instances (one per point of LACP's training videos; or the true
training instances with `pseudo.source: ground_truth`). It trains on those videos only: the
LACP model folder's split is copied into this folder, so the evaluate stage scores the same
held-out validation videos for both models.

Resumable like the train stage (`stages.training_log`: `<model_dir>.resume/<key>`, the key
hashing these params, the pseudo instances and the features); every loss term is logged
through DVCLive (`loss/cls`, `loss/reg`, `loss/total`).

Video-level scores (`video_scores: lacp`): the detector localises well but, trained on ~100
instances, may tell classes apart worse than LACP's video-level classifier; as ActionFormer does
with an external video classifier on ActivityNet, its class probabilities are fused with the
video's LACP scores (`detection.detector.own_class_weight`, `stages.predictors.DetectorPredictor`).
The LACP model is copied into the folder (`lacp/`), so the folder stays self-contained for
`python -m pipeline detect`.

Outputs: the model folder (`detector.model_io`: model.pt, model.json with kind "detector",
split.json, and `lacp/` with `video_scores: lacp`) and the training log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from core.files import write_bytes_atomic
from detector.config import DetectorConfig, DetectorSettings, InferenceConfig
from detector.losses import LOSS_TERMS
from detector.model_io import VIDEO_SCORER, save_detector
from detector.trainer import train_detector
from features.store import FeatureStore
from lacp.model_io import feature_record
from lacp.splits import read_split, write_split
from stages.artifacts import PSEUDO_GT_FILE, available_videos, read_pseudo_instances
from stages.common import StageParams
from stages.training_log import TrainingLog, remove_checkpoints, resume_dir, run_key

log = logging.getLogger(__name__)


class SelftrainParams(StageParams, DetectorSettings):
    """The `selftrain` section: the detector's settings (`detector.config.DetectorSettings`: every
    key's type, default, check and reason), plus what only this stage reads."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    # lacp: the detector's class probabilities fused with LACP's video-level scores
    # (detection.detector.own_class_weight; the LACP model is copied into the folder); none: the
    # detector's own scores
    video_scores: Literal["lacp", "none"] = "lacp"

    def config(self, *, feature_dim: int) -> DetectorConfig:
        """The detector's config: these settings as they are, and the features' width."""
        return DetectorConfig(**self.model_dump(include=set(DetectorSettings.model_fields)), feature_dim=feature_dim)


def run(
    params: SelftrainParams,
    *,
    inference: InferenceConfig,
    features: Path,
    lacp_model_dir: Path,
    pseudo_dir: Path,
    model_dir: Path,
    log_dir: Path,
    on_progress: Callable[[int, int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Train the detector on the pseudo instances and write its model folder and log.

    Args:
        params: the `selftrain` params section.
        inference: the params' `detection.detector`: how the detector's outputs become
            detections, recorded in the model folder (evaluate_selftrain and detect apply it).
        features: the HDF5 feature store.
        lacp_model_dir: train's output (its split is this model's too).
        pseudo_dir: the pseudo stage's output (pseudo_gt.json).
        model_dir: where model.pt, model.json and split.json go.
        log_dir: where the training log goes.
        on_progress: called after every step with (step, steps, that step's log row).

    Returns:
        Summary: steps, videos, instances, source, final losses, seconds per step.
    """
    # 1. inputs: the pseudo instances of LACP's training videos, and the split they come from
    pseudo = read_pseudo_instances(pseudo_dir)
    classes = pseudo["classes"]
    split = read_split(lacp_model_dir)
    strays = sorted(set(pseudo["database"]) - set(split.train))
    if strays:  # never train on a validation or test video
        raise ValueError(
            f"{Path(pseudo_dir) / PSEUDO_GT_FILE}: {len(strays)} video(s) outside {lacp_model_dir}'s "
            f"training split: {', '.join(strays[:10])} (rerun the pseudo stage)"
        )
    with FeatureStore(features) as store:
        videos = available_videos(store, sorted(pseudo["database"]), features=Path(features), what="training")
        instances = {
            vid: [
                (float(a["segment"][0]), float(a["segment"][1]), classes.index(a["label"]))
                for a in pseudo["database"][vid]["annotations"]
            ]
            for vid in videos
        }
        feature_dim = int(store[videos[0]].shape[1])
        config = params.config(feature_dim=feature_dim)
        recorded = feature_record(store.attrs)

        # 2. train (features read per step from the open store)
        log.info(
            "self-training: %d steps, batch %d, %d videos, %d instances (%s)",
            config.steps,
            config.batch,
            len(videos),
            sum(map(len, instances.values())),
            pseudo.get("source", "?"),
        )
        training_log = TrainingLog(Path(log_dir), loss_terms=LOSS_TERMS, on_progress=on_progress)
        checkpoint_dir = resume_dir(model_dir) / run_key(
            params.fingerprint(), [Path(pseudo_dir) / PSEUDO_GT_FILE, Path(features)]
        )
        result = train_detector(
            instances=instances,
            get_features=store,
            num_classes=len(classes),
            grid=store.time_grid,
            config=config,
            checkpoint_dir=checkpoint_dir,
            on_progress=training_log.progress,
        )

    # 3. outputs
    if params.video_scores == "lacp":  # the classifier the detections' scores are fused with travels with them
        for name in ("model.pt", "model.json"):
            write_bytes_atomic(
                Path(model_dir) / VIDEO_SCORER / name,
                (Path(lacp_model_dir) / name).read_bytes(),
                fsync=name == "model.pt",
            )
    save_detector(
        model_dir,
        result.state_dict,
        classes=classes,
        config=config.model_copy(update={"device": "auto"}),
        inference=inference,
        features=recorded,
        pseudo_source=pseudo.get("source", ""),
        weights=result.weights,
        video_scores=params.video_scores,
    )
    write_split(model_dir, train=split.train, validation=split.validation, share=split.share, seed=split.seed)
    training_log.finish(result.log)
    remove_checkpoints(checkpoint_dir)
    last = result.log[-1]
    return {
        "steps": result.steps,
        "videos": len(videos),
        "instances": int(sum(map(len, instances.values()))),
        "source": pseudo.get("source", ""),
        "final_loss": round(last["loss_total"], 5),
        "seconds_per_step": round(float(np.mean([r.get("seconds", 0.0) for r in result.log])), 4),
    }
