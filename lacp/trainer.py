"""The LACP training loop (METHOD 3, 4 and 7), readable top to bottom.

`train` runs `config.steps` optimisation steps. Each step:
  1. picks `config.batch` videos (a fresh seeded permutation of the training videos per epoch)
     and reads only their features (memory stays flat with the dataset size); with
     `num_segments` N > 0 each video is resampled to N snippets (`lacp.batching`: one snippet
     per bin, drawn at random per step or the bin's first, points moved to their bin),
  2. runs the network on the padded batch,
  3. selects the pseudo background points from the current q_bg (no gradient),
  4. computes the losses (completeness terms once a sequence search has run) and takes an
     Adam step,
  5. every `search_every` steps, runs the optimal sequence search over all training videos
     with the model in eval mode and keeps its dense pseudo labels per video,
  6. optionally evaluates (off by default), logs a row, reports progress, and writes a
     resumable checkpoint every `checkpoint_every` steps and after the last step.

Determinism: the batch order of epoch e, the feature-contrast samples of step s and its
resampled snippets (`num_segments`) come from numpy generators seeded with (seed, 0, e),
(seed, 1, s) and (seed, 2, s), and dropout from torch's global RNG,
seeded once with `seed` (the caller's RNG state is restored on return) and saved in every
checkpoint. So two runs with the same inputs are identical on CPU, and a run resumed from a
checkpoint is bit-identical to an uninterrupted one.

Search timing: the first search runs after step `search_every` (as in the released recipe),
so steps 1..search_every are point-supervised only. The search always runs on every snippet of
each video (its pseudo labels live on the features' time grid); with `num_segments` a step
indexes them with the snippets it picked.

Model selection: the final step's weights are returned. `select_best_on_test` (with
`eval_every` > 0 and an `evaluate_fn`) returns instead the weights of the evaluation with the
highest metric - the released recipe's protocol, which selects on the test set; results
obtained with it are labelled as such (`TrainResult.selection`).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
from pydantic import Field, model_validator

from core.config import Config
from core.device import resolve_device
from core.files import atomic_path
from lacp.batching import (
    FeatureSource,
    VideoItem,
    VideoSample,
    collate,
    feature_getter,
    load_sample,
    resample_sample,
    segment_positions,
)
from lacp.losses import LAMBDAS, lacp_loss
from lacp.model import LACPNet
from lacp.proposals import DetectionConfig
from lacp.seeds import batch_background_seeds, select_seeds

__all__ = [
    "CHECKPOINT_NAME",
    "SearchFn",
    "SearchLogFn",
    "TrainConfig",
    "TrainResult",
    "TrainSettings",
    "batch_indices",
    "default_search_fn",
    "steps_per_epoch",
    "train",
]

CHECKPOINT_NAME = "checkpoint.pt"

# items: per video (q (T, C+1), action seeds (T, C) bool, background seeds (T,) bool)
SearchItem = tuple[np.ndarray, np.ndarray, np.ndarray]
SearchFn = Callable[[list[SearchItem]], list[np.ndarray]]
EvaluateFn = Callable[[LACPNet, int], float]
SearchLogFn = Callable[[dict[str, np.ndarray]], dict[str, float]]  # a search's labels -> numbers to log
ProgressFn = Callable[[int, int, dict[str, float]], None]

# TrainConfig fields a resumed run may change (the rest must match the checkpoint)
_RESUMABLE_CHANGES = {"steps", "checkpoint_every", "device", "search_workers"}


class TrainSettings(Config):
    """The hyperparameters of a training run that params.yaml's `train` section sets, each key
    under its own name (the train stage's params subclass this; defaults: the released recipe,
    METHOD 7).

    Attributes:
        steps: optimisation steps.
        batch: videos per step.
        lr, weight_decay: Adam.
        lambdas: weights of L_vid, L_point, L_bkg_point, L_score, L_feat.
        dropout: dropout before the CAS layer.
        completeness: False = point-supervised baseline (no search, no L_score / L_feat).
        score_contrast, feature_contrast: ablation switches of L_score and L_feat.
        search_every: steps between optimal sequence searches.
        search_method, search_budget, search_prune: passed to `lacp.search`.
        search_workers: search processes (> 1: one `lacp.search.SearchPool` kept open for
            the whole run).
        feat_last_class_only: the released recipe's quirk (feature loss of the last class only).
        oic_outer: OIC outer region of the score contrast and the search: "floor" (METHOD on
            whole snippets, floor(L/4) each side), "ceil" (ceil(L/4) each side: short spans keep
            their contrast) or "released" (the recipe's quirk: ceil(L/4) on the left).
        video_end: "full" (a pseudo-label run reaching the video's last snippet keeps it) or
            "released" (the recipe's quirk: its losses end such a run one snippet early;
            `lacp.losses.trim_video_end`).
        label_delay: "none" (a search's pseudo labels are used from the next step) or
            "released" (the recipe's data-loader quirk: its loader workers copy the labels when
            the loader is rebuilt, every floor(N / batch) steps, so a search's labels are
            used from the first step t after it with (t - 1) % floor(N / batch) == 0; no delay
            while floor(N / batch) <= 2 and search_every is even).
        absent_class_score: L_vid's score of an absent class: "mean" over all snippets (the
            recipe) or "topk" (as at test time; `lacp.losses.lacp_loss`).
        num_segments: 0 = every snippet of a video per step (the THUMOS'14 recipe); N > 0 =
            each training video resampled to N snippets per step (`lacp.batching`), the
            BaS-Net lineage's fixed-length loader. Searches see every snippet; inference
            runs such a model on each video resampled uniformly to N (`lacp.inference`,
            N read from model.json, where the train stage records it).
        segment_sampling: with num_segments: "random" (one snippet drawn per bin and step,
            the lineage's training loader) or "uniform" (each bin's first snippet).
        eval_every: steps between calls of `evaluate_fn` (0 = never).
        select_best_on_test: return the best evaluated weights instead of the final ones
            (released protocol; selects on whatever `evaluate_fn` measures, usually test);
            needs eval_every > 0.
        checkpoint_every: steps between resumable checkpoints (0 = only after the last step).
        seed: weights init, batch order, sampling, dropout.
        device: "auto" (cuda when available) | "cpu" | "cuda" | "cuda:N".
    """

    steps: int = Field(300, ge=1)
    batch: int = Field(16, ge=1)
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(5e-4, ge=0)
    lambdas: tuple[float, float, float, float, float] = LAMBDAS
    dropout: float = Field(0.7, ge=0, lt=1)
    completeness: bool = True
    score_contrast: bool = True
    feature_contrast: bool = True
    search_every: int = Field(10, ge=1)
    search_method: Literal["exact", "beam"] = "beam"
    search_budget: int = Field(25, ge=1)
    search_prune: float = 0.1
    search_workers: int = Field(1, ge=1)
    feat_last_class_only: bool = True
    oic_outer: Literal["floor", "ceil", "released"] = "released"
    video_end: Literal["full", "released"] = "released"
    label_delay: Literal["none", "released"] = "none"
    absent_class_score: Literal["mean", "topk"] = "mean"
    num_segments: int = Field(0, ge=0)
    segment_sampling: Literal["random", "uniform"] = "random"
    eval_every: int = Field(0, ge=0)
    select_best_on_test: bool = False
    checkpoint_every: int = Field(50, ge=0)
    seed: int = 0
    device: str = "auto"

    @model_validator(mode="after")
    def _selection_evaluates(self) -> TrainSettings:
        if self.select_best_on_test and self.eval_every == 0:
            raise ValueError("select_best_on_test needs eval_every > 0")
        return self


class TrainConfig(TrainSettings):
    """Every hyperparameter of a training run: the settings, plus the sizes and constants
    no params key sets.

    Attributes:
        r_act: top-k ratio of the video scores, the params' `detection.r_act` (one value for
            training and inference; `lacp.proposals.DetectionConfig` declares and checks it).
        betas: Adam's.
        feature_dim, embed_dim: input feature and embedding sizes.
        bg_threshold, act_threshold: pseudo background / action point thresholds on q_bg.
        tau: feature-contrast temperature.
    """

    r_act: int = DetectionConfig.model_fields["r_act"].default
    betas: tuple[float, float] = (0.9, 0.999)
    feature_dim: int = Field(2048, ge=1)
    embed_dim: int = Field(2048, ge=1)
    bg_threshold: float = 0.95
    act_threshold: float = 0.1
    tau: float = 0.1


@dataclass
class TrainResult:
    """What a training run produced.

    Attributes:
        state_dict: the selected model weights (CPU tensors).
        log: one row per step: step, loss_<term> for every loss term, seconds (the step),
            search_seconds (0 without a search), and eval_metric on evaluation steps.
        pseudo_labels: the last search's (T, C) uint8 pseudo labels per video id.
        first_pseudo_labels: the first search's, likewise (empty without a search).
        first_search_step: the step of the first search (0 without one).
        steps: steps trained in all (including those before a resume).
        selection: "final step" or "best on test (step N, metric M)".
    """

    state_dict: dict[str, torch.Tensor]
    log: list[dict[str, float]]
    pseudo_labels: dict[str, np.ndarray]
    steps: int
    selection: str
    first_pseudo_labels: dict[str, np.ndarray] = field(default_factory=dict)
    first_search_step: int = 0


@dataclass
class _State:
    """Everything a checkpoint restores besides the model and the optimizer."""

    step: int = 0
    log: list[dict[str, float]] = field(default_factory=list)
    pseudo_labels: dict[str, np.ndarray] = field(default_factory=dict)
    pending_labels: dict[str, np.ndarray] = field(default_factory=dict)  # label_delay "released"
    first_labels: dict[str, np.ndarray] = field(default_factory=dict)  # the first search's (pictures)
    first_search_step: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    best_step: int = 0
    best_metric: float = float("-inf")


def default_search_fn(config: TrainConfig, resources: contextlib.ExitStack) -> SearchFn:
    """`lacp.search` with the config's method, budget, prune, OIC outer region and workers.

    With search_workers > 1 a process pool is opened once and closed with `resources`.
    """
    from lacp import search  # imported on first use: only completeness training needs it

    options = dict(
        method=config.search_method, budget=config.search_budget, prune=config.search_prune, outer=config.oic_outer
    )
    if config.search_workers > 1:
        pool = resources.enter_context(search.SearchPool(workers=config.search_workers))
        return functools.partial(pool.search, **options)
    return functools.partial(search.search_videos, workers=0, **options)


def steps_per_epoch(num_videos: int, batch: int) -> int:
    """floor(N / batch) steps per epoch (at least 1): the released loader's rebuild period."""
    return max(1, num_videos // batch)


def batch_indices(step: int, *, num_videos: int, batch: int, seed: int) -> np.ndarray:
    """Indices of the videos of a step (1-based).

    Each epoch is a permutation of the videos seeded with (seed, epoch), cut into
    floor(N / batch) batches (the rest of the permutation is dropped, as in the released
    recipe); with fewer videos than `batch`, every step takes all of them.

    Returns:
        (min(batch, N),) int64 indices.
    """
    per_epoch = steps_per_epoch(num_videos, batch)
    epoch, position = divmod(step - 1, per_epoch)
    order = np.random.default_rng([seed, 0, epoch]).permutation(num_videos)
    return order[position * batch : (position + 1) * batch]


class StepState(Protocol):
    """What `record_step` updates in a trainer's running state."""

    step: int
    log: list[dict[str, float]]


class StepSchedule(Protocol):
    """What `record_step` reads of a trainer's config."""

    steps: int
    checkpoint_every: int


def record_step(
    state: StepState,
    row: dict[str, float],
    *,
    step: int,
    config: StepSchedule,
    on_progress: ProgressFn | None,
) -> bool:
    """A finished step's bookkeeping, shared by LACP's and the detector's trainers: log its row,
    report it, and say whether a checkpoint is due after it.

    Args:
        state: the trainer's running state (its log and last step).
        row: the step's log row.
        step: the step just finished (1-based).
        config: the run's `steps` and `checkpoint_every` (0: a checkpoint only after the last step).
        on_progress: called with (step, config.steps, row), when given.

    Returns:
        Whether a checkpoint is due: every `checkpoint_every` steps and after the last.
    """
    state.log.append(row)
    state.step = step
    if on_progress is not None:
        on_progress(step, config.steps, row)
    return bool(config.checkpoint_every and step % config.checkpoint_every == 0) or step == config.steps


def train(
    *,
    videos: Sequence[VideoItem],
    get_features: FeatureSource,
    num_classes: int,
    config: TrainConfig,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    on_progress: ProgressFn | None = None,
    search_fn: SearchFn | None = None,
    evaluate_fn: EvaluateFn | None = None,
    search_log: SearchLogFn | None = None,
) -> TrainResult:
    """Trains LACP; resumes from `checkpoint_dir/checkpoint.pt` when it exists.

    Args:
        videos: the training videos.
        get_features: video_id -> (T, feature_dim) features (a callable, or a mapping such
            as `features.store.FeatureStore`); read per step, never all at once.
        num_classes: C.
        config: hyperparameters.
        checkpoint_dir: where checkpoints are written (None = no checkpoints, no resume).
        on_progress: called after every step with (step, total steps, log row).
        search_fn: items -> dense pseudo labels (see `SearchFn`); default
            `default_search_fn(config, ...)` (`lacp.search`).
        evaluate_fn: (model in eval mode, step) -> metric, higher is better; called every
            `eval_every` steps.
        search_log: called with each search's labels (video id -> (T, C) uint8); the numbers
            it returns join that step's log row. A diagnostic only: nothing it returns or
            reads feeds back into training (the weights are bit-identical with or without it).

    Returns:
        The `TrainResult`.

    Raises:
        ValueError: no videos, duplicate video ids, bad features or labels (named by video),
            a checkpoint from a different run, or a search result of the wrong shape.
    """
    _check_videos(videos, num_classes)
    if config.select_best_on_test and evaluate_fn is None:
        raise ValueError("select_best_on_test needs an evaluate_fn")
    device = resolve_device(config.device)
    fetch = feature_getter(get_features)
    use_completeness = config.completeness and (config.score_contrast or config.feature_contrast)
    checkpoint = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    video_ids = [v.video_id for v in videos]
    rng_devices = [device] if device.type == "cuda" else []

    # the caller's RNG is left untouched; a search pool lives as long as the run
    with torch.random.fork_rng(devices=rng_devices), contextlib.ExitStack() as resources:
        if use_completeness and search_fn is None:
            search_fn = default_search_fn(config, resources)

        # 0. model, optimizer, state (fresh or from the checkpoint)
        torch.manual_seed(config.seed)
        model = LACPNet(
            num_classes=num_classes, feature_dim=config.feature_dim, embed_dim=config.embed_dim, dropout=config.dropout
        ).to(device)
        # fused: one kernel for all parameters (on 2 CPU cores the per-tensor loop took 12 % of a step)
        optimizer = torch.optim.Adam(
            model.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay, fused=True
        )
        state = _State()
        if checkpoint is not None and checkpoint.exists():
            state = _load_checkpoint(
                checkpoint, model=model, optimizer=optimizer, config=config, video_ids=video_ids, device=device
            )
            if state.step > config.steps:
                raise ValueError(
                    f"checkpoint '{checkpoint}' is at step {state.step}, beyond "
                    f"steps={config.steps}; delete it or raise steps"
                )

        for step in range(state.step + 1, config.steps + 1):
            started = time.perf_counter()

            # 0. with label_delay "released", a search's labels arrive when the loader is rebuilt
            if state.pending_labels and (step - 1) % steps_per_epoch(len(videos), config.batch) == 0:
                state.pseudo_labels, state.pending_labels = state.pending_labels, {}

            # 1. the step's videos, read from the feature source now
            picked = batch_indices(step, num_videos=len(videos), batch=config.batch, seed=config.seed)
            samples = [
                load_sample(videos[i], get_features=fetch, num_classes=num_classes, feature_dim=config.feature_dim)
                for i in picked
            ]
            samples, positions = _resample(samples, config, step)
            batch = collate(samples).to(device)

            # 2. forward
            model.train()
            out = model(batch.features, batch.mask)

            # 3. pseudo background points from the current q_bg (no gradient)
            bg_seeds = batch_background_seeds(
                out["q"],
                batch.points,
                batch.lengths,
                bg_threshold=config.bg_threshold,
                act_threshold=config.act_threshold,
            )

            # 4. losses, backward, Adam step
            pseudo = None
            if use_completeness and state.pseudo_labels:
                pseudo = [state.pseudo_labels[vid] for vid in batch.video_ids]
                if positions is not None:  # the full-grid labels at the step's snippets
                    pseudo = [labels[at] for labels, at in zip(pseudo, positions)]
            terms = lacp_loss(
                out,
                batch,
                bg_seeds,
                pseudo,
                rng=np.random.default_rng([config.seed, 1, step]),
                lambdas=config.lambdas,
                r_act=config.r_act,
                score_contrast_on=config.score_contrast,
                feature_contrast_on=config.feature_contrast,
                feat_last_class_only=config.feat_last_class_only,
                oic_outer=config.oic_outer,
                video_end=config.video_end,
                absent_class_score=config.absent_class_score,
                tau=config.tau,
            )
            optimizer.zero_grad(set_to_none=True)
            terms.total.backward()
            optimizer.step()
            row: dict[str, float] = {"step": step, **terms.as_floats()}
            row["seconds"] = time.perf_counter() - started

            # 5. optimal sequence search over all training videos
            row["search_seconds"] = 0.0
            if use_completeness and step % config.search_every == 0:
                search_started = time.perf_counter()
                labels = _search_all(
                    model,
                    videos,
                    fetch=fetch,
                    num_classes=num_classes,
                    config=config,
                    device=device,
                    search_fn=search_fn,
                )
                if config.label_delay == "released":
                    state.pending_labels = labels
                else:
                    state.pseudo_labels = labels
                if not state.first_search_step:
                    state.first_labels, state.first_search_step = labels, step
                row["search_seconds"] = time.perf_counter() - search_started
                if search_log is not None:
                    row.update({key: float(value) for key, value in search_log(labels).items()})

            # 6. evaluation (off by default), log, progress, checkpoint
            if evaluate_fn is not None and config.eval_every and step % config.eval_every == 0:
                model.eval()
                with torch.no_grad():
                    metric = float(evaluate_fn(model, step))
                row["eval_metric"] = metric
                if config.select_best_on_test and metric > state.best_metric:
                    state.best_metric, state.best_step = metric, step
                    state.best_state = _cpu_state(model)
            due = record_step(state, row, step=step, config=config, on_progress=on_progress)
            if checkpoint is not None and due:
                _save_checkpoint(
                    checkpoint,
                    model=model,
                    optimizer=optimizer,
                    state=state,
                    config=config,
                    video_ids=video_ids,
                    device=device,
                )

    if config.select_best_on_test and state.best_state is not None:
        weights = state.best_state
        selection = f"best on test (step {state.best_step}, metric {state.best_metric:.6g})"
    else:
        weights, selection = _cpu_state(model), "final step"
    last_search = state.pending_labels or state.pseudo_labels  # label_delay: the last search may not have landed
    return TrainResult(
        state_dict=weights,
        log=state.log,
        pseudo_labels=last_search,
        steps=state.step,
        selection=selection,
        first_pseudo_labels=state.first_labels,
        first_search_step=state.first_search_step,
    )


def _resample(
    samples: list[VideoSample], config: TrainConfig, step: int
) -> tuple[list[VideoSample], list[np.ndarray] | None]:
    """With `num_segments`: the step's videos resampled to N snippets, and the snippets picked.

    Returns:
        (samples, positions): unchanged samples and None when num_segments is 0; else each
        video at N snippets and its (N,) picked snippet indices on the full grid.
    """
    if not config.num_segments:
        return samples, None
    rng = np.random.default_rng([config.seed, 2, step]) if config.segment_sampling == "random" else None
    positions = [segment_positions(s.features.shape[0], config.num_segments, rng=rng) for s in samples]
    return [resample_sample(s, at) for s, at in zip(samples, positions)], positions


def _check_videos(videos: Sequence[VideoItem], num_classes: int) -> None:
    """Raises ValueError for an empty list, duplicate ids or labels of the wrong shape."""
    if not videos:
        raise ValueError("train needs at least one training video")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    seen: set[str] = set()
    for video in videos:
        if video.video_id in seen:
            raise ValueError(f"video '{video.video_id}' appears twice in the training videos")
        seen.add(video.video_id)
        if np.shape(video.labels) != (num_classes,):
            raise ValueError(
                f"video '{video.video_id}': labels must have shape ({num_classes},), got {np.shape(video.labels)}"
            )


@torch.no_grad()
def _search_all(
    model: LACPNet,
    videos: Sequence[VideoItem],
    *,
    fetch: Callable[[str], np.ndarray],
    num_classes: int,
    config: TrainConfig,
    device: torch.device,
    search_fn: SearchFn,
) -> dict[str, np.ndarray]:
    """Dense pseudo labels of every training video (model in eval mode, videos streamed)."""
    model.eval()
    items: list[SearchItem] = []
    lengths: list[int] = []
    for first in range(0, len(videos), config.batch):
        samples = [
            load_sample(v, get_features=fetch, num_classes=num_classes, feature_dim=config.feature_dim)
            for v in videos[first : first + config.batch]
        ]
        batch = collate(samples).to(device)
        q = model(batch.features, batch.mask)["q"].cpu().numpy()  # (B, T, C+1)
        for b, sample in enumerate(samples):
            length = sample.features.shape[0]
            q_video = np.ascontiguousarray(q[b, :length])  # (T, C+1)
            bg, act = select_seeds(
                q_video[:, -1], sample.points, bg_threshold=config.bg_threshold, act_threshold=config.act_threshold
            )
            items.append((q_video, act, bg))
            lengths.append(length)
    results = search_fn(items)
    if len(results) != len(videos):
        raise ValueError(f"search returned {len(results)} results for {len(videos)} videos")
    labels: dict[str, np.ndarray] = {}
    for video, length, result in zip(videos, lengths, results):
        result = np.asarray(result)
        if result.shape != (length, num_classes):
            raise ValueError(
                f"video '{video.video_id}': search result must have shape ({length}, {num_classes}), got {result.shape}"
            )
        labels[video.video_id] = result.astype(np.uint8)
    return labels


def _cpu_state(model: LACPNet) -> dict[str, torch.Tensor]:
    """A detached CPU copy of the model's weights."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _save_checkpoint(
    path: Path,
    *,
    model: LACPNet,
    optimizer: torch.optim.Optimizer,
    state: _State,
    config: TrainConfig,
    video_ids: list[str],
    device: torch.device,
) -> None:
    """Writes everything needed to resume bit-identically, atomically (temp file + rename)."""
    payload: dict[str, Any] = {
        "step": state.step,
        "model": _cpu_state(model),
        "optimizer": optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "pseudo_labels": {k: torch.from_numpy(v) for k, v in state.pseudo_labels.items()},
        "pending_labels": {k: torch.from_numpy(v) for k, v in state.pending_labels.items()},
        "first_labels": {k: torch.from_numpy(v) for k, v in state.first_labels.items()},
        "first_search_step": state.first_search_step,
        "log": state.log,
        "best_state": state.best_state,
        "best_step": state.best_step,
        "best_metric": state.best_metric,
        "config": config.model_dump(),
        "video_ids": video_ids,
    }
    with atomic_path(path, fsync=True) as tmp, open(tmp, "wb") as handle:
        torch.save(payload, handle)  # a file object: the archive is not named after the temporary path


def _load_checkpoint(
    path: Path,
    *,
    model: LACPNet,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    video_ids: list[str],
    device: torch.device,
) -> _State:
    """Restores model, optimizer and RNG states; returns the rest of the state."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    saved = payload["config"]
    current = config.model_dump()
    changed = sorted(
        k
        for k in current.keys() | saved.keys()
        if k not in _RESUMABLE_CHANGES and _normalised(current.get(k)) != _normalised(saved.get(k))
    )
    if changed:
        raise ValueError(
            f"checkpoint '{path}' was written with other settings "
            f"({', '.join(changed)}); delete it or restore those settings"
        )
    if payload["video_ids"] != video_ids:
        raise ValueError(f"checkpoint '{path}' was written for other training videos; delete it to start over")
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    torch.set_rng_state(payload["torch_rng"])
    if device.type == "cuda" and payload["cuda_rng"] is not None:
        torch.cuda.set_rng_state(payload["cuda_rng"], device)
    return _State(
        step=int(payload["step"]),
        log=copy.deepcopy(payload["log"]),
        pseudo_labels={k: v.numpy() for k, v in payload["pseudo_labels"].items()},
        pending_labels={k: v.numpy() for k, v in payload.get("pending_labels", {}).items()},
        first_labels={k: v.numpy() for k, v in payload.get("first_labels", {}).items()},
        first_search_step=int(payload.get("first_search_step", 0)),
        best_state=payload["best_state"],
        best_step=int(payload["best_step"]),
        best_metric=float(payload["best_metric"]),
    )


def _normalised(value: Any) -> Any:
    """Lists and tuples compare equal (a checkpoint round trip may turn one into the other)."""
    return tuple(_normalised(v) for v in value) if isinstance(value, list | tuple) else value
