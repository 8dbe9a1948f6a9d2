"""The detector's training loop, readable top to bottom (the conventions of `lacp.trainer`).

`train_detector` runs `config.steps` optimisation steps. Each step:
  1. takes the next `batch` videos of a stream of seeded per-epoch permutations of the
     training videos (`batch_videos`; unlike LACP's released loader no video is dropped at
     an epoch's end) and reads only their features (memory stays flat with the dataset);
  2. pads them to a multiple of the coarsest stride (`detector.batching.pad_features`) and
     assigns every pyramid location its targets (`detector.targets.assign_targets`);
  3. runs the network, updates the EMA positive-count normaliser, computes the focal and
     DIoU losses (`detector.losses`);
  4. clips the gradient's global norm and takes an AdamW step at the step's learning rate
     (linear warm-up over `warmup_steps`, then cosine decay: `learning_rate`);
  5. updates the EMA of the weights (`ema_decay` > 0), logs a row (step, loss_cls,
     loss_reg, loss_total, lr, positives, seconds), reports progress, and writes a
     resumable checkpoint every `checkpoint_every` steps and after the last step.

Weight decay applies to the conv and linear weights only (not to biases, LayerNorms and the
per-level regression scales). The returned weights are the EMA's when `ema_decay` > 0, else
the last step's.

Determinism: the batch order comes from numpy generators seeded with (seed, 0, epoch), and
dropout from torch's global RNG, seeded once with `seed` (the caller's RNG state is restored
on return) and saved in every checkpoint with the model, its EMA, the optimizer and the
normaliser. So two runs with the same inputs are identical on CPU, and a run resumed from a
checkpoint is bit-identical to an uninterrupted one.

Training videos are the keys of `instances` (sorted, so the mapping's order does not matter),
the training split only: a video with no instance is all background. Nothing else is read.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core.device import resolve_device
from core.files import atomic_path
from detector.batching import Instance, instances_to_snippets, pad_features, read_features
from detector.config import RESUMABLE_CHANGES, DetectorConfig
from detector.losses import detector_loss, update_normaliser
from detector.model import DetectorNet
from detector.targets import assign_targets
from features.timegrid import TimeGrid
from lacp.batching import FeatureSource, feature_getter
from lacp.trainer import ProgressFn, record_step

__all__ = ["CHECKPOINT_NAME", "DetectorTrainResult", "batch_videos", "learning_rate", "train_detector"]

CHECKPOINT_NAME = "detector_checkpoint.pt"


@dataclass
class DetectorTrainResult:
    """What a training run produced.

    Attributes:
        state_dict: the returned weights (CPU tensors): the EMA's, or the last step's.
        log: one row per step: step, loss_cls, loss_reg, loss_total, lr, positives, seconds.
        steps: steps trained in all (including those before a resume).
        weights: "ema (decay d)" or "final step".
    """

    state_dict: dict[str, torch.Tensor]
    log: list[dict[str, float]]
    steps: int
    weights: str


@dataclass
class _State:
    """Everything a checkpoint restores besides the model, its EMA and the optimizer."""

    step: int = 0
    normaliser: float = 0.0
    log: list[dict[str, float]] = field(default_factory=list)


def batch_videos(step: int, *, num_videos: int, batch: int, seed: int) -> np.ndarray:
    """Indices of the videos of a step (1-based).

    The videos form a stream of permutations, epoch e's seeded with (seed, 0, e); step k
    takes positions [(k - 1) b, k b) of the stream, b = min(batch, N), so every video is
    seen once per epoch and a batch never repeats a video.

    Returns:
        (b,) int64 indices.
    """
    size = min(batch, num_videos)
    first = (step - 1) * size
    epochs = range(first // num_videos, (first + size - 1) // num_videos + 1)
    stream = np.concatenate([np.random.default_rng([seed, 0, e]).permutation(num_videos) for e in epochs])
    offset = first - epochs[0] * num_videos
    return stream[offset : offset + size]


def learning_rate(step: int, config: DetectorConfig) -> float:
    """The learning rate of a step (1-based): linear warm-up, then cosine decay.

    Steps 1..W (W = warmup_steps) rise linearly to lr (lr k / W); step k > W takes
    lr (1 + cos(pi (k - 1 - W) / (S - W))) / 2, S = steps: lr at the first step after the
    warm-up, above 0 at the last.
    """
    warmup = config.warmup_steps
    if step <= warmup:
        return config.lr * step / warmup
    progress = (step - 1 - warmup) / max(1, config.steps - warmup)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def train_detector(
    *,
    instances: Mapping[str, Sequence[Instance]],
    get_features: FeatureSource,
    num_classes: int,
    grid: TimeGrid,
    config: DetectorConfig,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    on_progress: ProgressFn | None = None,
) -> DetectorTrainResult:
    """Trains the detector; resumes from `checkpoint_dir/detector_checkpoint.pt` when it exists.

    Args:
        instances: training video id -> its instances (start_s, end_s, class_index); the
            training videos are these keys (the training split only).
        get_features: video_id -> (T, feature_dim) features (a mapping such as
            `features.store.FeatureStore`, or a callable); read per step, never all at once.
        num_classes: C.
        grid: the features' time grid (seconds <-> snippets).
        config: sizes and hyperparameters.
        checkpoint_dir: where checkpoints are written (None = no checkpoints, no resume).
        on_progress: called after every step with (step, total steps, log row); the row holds
            `loss_<term>` for every term of `detector.losses.LOSS_TERMS`.

    Returns:
        The `DetectorTrainResult`.

    Raises:
        ValueError: no videos, bad features or instances (named by video), or a checkpoint
            from a different run.
    """
    if not instances:
        raise ValueError("train_detector needs at least one training video")
    if num_classes < 1:
        raise ValueError(f"train_detector: num_classes must be >= 1, got {num_classes}")
    video_ids = sorted(instances)
    device = resolve_device(config.device)
    fetch = feature_getter(get_features)
    checkpoint = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    rng_devices = [device] if device.type == "cuda" else []

    with torch.random.fork_rng(devices=rng_devices):  # the caller's RNG is left untouched
        # 0. model, its EMA, optimizer, state (fresh or from the checkpoint)
        torch.manual_seed(config.seed)
        model = DetectorNet(config=config, num_classes=num_classes).to(device)
        ema = copy.deepcopy(model).eval() if config.ema_decay > 0 else None
        optimizer = torch.optim.AdamW(_parameter_groups(model, config.weight_decay), lr=config.lr)
        state = _State(normaliser=config.loss_norm_init)
        if checkpoint is not None and checkpoint.exists():
            state = _load_checkpoint(
                checkpoint,
                model=model,
                ema=ema,
                optimizer=optimizer,
                config=config,
                video_ids=video_ids,
                num_classes=num_classes,
                device=device,
            )

        for step in range(state.step + 1, config.steps + 1):
            started = time.perf_counter()

            # 1. the step's videos, read now
            picked = [
                video_ids[i]
                for i in batch_videos(step, num_videos=len(video_ids), batch=config.batch, seed=config.seed)
            ]
            videos = [read_features(fetch, vid, feature_dim=config.feature_dim) for vid in picked]

            # 2. padded batch and targets
            features, mask = pad_features(videos, multiple=config.max_stride)  # (B, T, F), (B, T)
            labels, reg_targets = _batch_targets(
                picked, videos, instances, length=features.shape[1], num_classes=num_classes, grid=grid, config=config
            )

            # 3. forward, normaliser, losses
            model.train()
            out = model(features.to(device), mask.to(device))
            labels, reg_targets = labels.to(device), reg_targets.to(device)
            positives = int(((labels >= 0) & out.mask).sum())
            state.normaliser = update_normaliser(state.normaliser, positives, momentum=config.loss_norm_momentum)
            terms = detector_loss(
                out.cls_logits,
                out.regression,
                out.mask,
                labels,
                reg_targets,
                normaliser=state.normaliser,
                alpha=config.focal_alpha,
                gamma=config.focal_gamma,
                reg_weight=config.reg_weight,
            )

            # 4. clipped AdamW step at the step's learning rate
            lr = learning_rate(step, config)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            terms.total.backward()
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()

            # 5. weight EMA, log, progress, checkpoint
            if ema is not None:
                with torch.no_grad():
                    for averaged, current in zip(ema.parameters(), model.parameters()):
                        averaged.lerp_(current, 1.0 - config.ema_decay)
            row: dict[str, float] = {
                "step": step,
                **terms.as_floats(),
                "lr": lr,
                "positives": positives,
                "seconds": time.perf_counter() - started,
            }
            due = record_step(state, row, step=step, config=config, on_progress=on_progress)
            if checkpoint is not None and due:
                _save_checkpoint(
                    checkpoint,
                    model=model,
                    ema=ema,
                    optimizer=optimizer,
                    state=state,
                    config=config,
                    video_ids=video_ids,
                    num_classes=num_classes,
                    device=device,
                )

    final = ema if ema is not None else model
    weights = f"ema (decay {config.ema_decay:g})" if ema is not None else "final step"
    return DetectorTrainResult(state_dict=_cpu_state(final), log=state.log, steps=state.step, weights=weights)


def _batch_targets(
    video_ids: Sequence[str],
    videos: Sequence[np.ndarray],
    instances: Mapping[str, Sequence[Instance]],
    *,
    length: int,
    num_classes: int,
    grid: TimeGrid,
    config: DetectorConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets of a padded batch: labels (B, N) int64 (-1 background), regression (B, N, 2) float32."""
    labels, regression = [], []
    for video_id, features in zip(video_ids, videos):
        rows = instances_to_snippets(
            instances[video_id], length=features.shape[0], grid=grid, num_classes=num_classes, video_id=video_id
        )  # (M, 3)
        targets = assign_targets(
            rows,
            length=length,
            num_levels=config.num_levels,
            range_base=config.range_base,
            center_radius=config.center_radius,
        )
        labels.append(targets.labels)
        regression.append(targets.regression)
    return torch.from_numpy(np.stack(labels)), torch.from_numpy(np.stack(regression))


def _parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: conv and linear weights (2-D and up) decay; biases, norms and scales do not."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of the model's weights."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _save_checkpoint(
    path: Path,
    *,
    model: DetectorNet,
    ema: DetectorNet | None,
    optimizer: torch.optim.Optimizer,
    state: _State,
    config: DetectorConfig,
    video_ids: list[str],
    num_classes: int,
    device: torch.device,
) -> None:
    """Writes everything needed to resume bit-identically, atomically (temp file + rename)."""
    payload: dict[str, Any] = {
        "step": state.step,
        "normaliser": state.normaliser,
        "log": state.log,
        "model": _cpu_state(model),
        "ema": _cpu_state(ema) if ema is not None else None,
        "optimizer": optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "config": config.model_dump(),
        "video_ids": video_ids,
        "num_classes": num_classes,
    }
    with atomic_path(path, fsync=True) as tmp, open(tmp, "wb") as handle:
        torch.save(payload, handle)


def _load_checkpoint(
    path: Path,
    *,
    model: DetectorNet,
    ema: DetectorNet | None,
    optimizer: torch.optim.Optimizer,
    config: DetectorConfig,
    video_ids: list[str],
    num_classes: int,
    device: torch.device,
) -> _State:
    """Restores the model, its EMA, the optimizer and the RNG; returns the rest of the state."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    current = config.model_dump()
    changed = sorted(
        k
        for k in current.keys() | payload["config"].keys()
        if k not in RESUMABLE_CHANGES and current.get(k) != payload["config"].get(k)
    )
    if changed:
        raise ValueError(
            f"checkpoint '{path}' was written with other detector settings "
            f"({', '.join(changed)}); delete it or restore those settings"
        )
    if payload["video_ids"] != video_ids or payload["num_classes"] != num_classes:
        raise ValueError(
            f"checkpoint '{path}' was written for other training videos or classes; delete it to start over"
        )
    model.load_state_dict(payload["model"])
    if ema is not None:
        ema.load_state_dict(payload["ema"])
    optimizer.load_state_dict(payload["optimizer"])
    torch.set_rng_state(payload["torch_rng"])
    if device.type == "cuda" and payload["cuda_rng"] is not None:
        torch.cuda.set_rng_state(payload["cuda_rng"], device)
    return _State(step=int(payload["step"]), normaliser=float(payload["normaliser"]), log=copy.deepcopy(payload["log"]))
