"""The LACP losses (METHOD 3), computed for a padded batch and averaged over its videos.

Every term is first a per-video value (B,); the step loss is their mean over the B videos,
as in the released recipe, which accumulates 16 single-video losses and divides by 16.

- L_vid: mean over classes of BCE(video score, label).
- L_point: focal BCE (see `focal_bce`) on the labelled snippets, target = the point classes with
  a zero background channel, divided by the number of labelled snippets (a snippet holding
  points of two classes counts once, as in the released recipe).
- L_bkg_point: focal BCE on the pseudo background points, target = background only, divided
  by their number. A video without labelled (background) snippets contributes 0.
- Completeness losses, from the dense pseudo labels Y^ (T, C) of the last sequence search,
  for the classes present in the video (label 1). Each run of ones of Y^_c is an action
  instance and each run of zeros a background instance. A class whose Y^_c is constant
  (a single run spanning the video, which has no outer context) gives no instance - the
  released recipe skips classes without a label change.
  - Score contrast: L_act = mean over the video's action instances of 1 - OIC(q_c),
    L_bkg = mean over its background instances of 1 - OIC(1 - q_c), and per video
    L_score = (L_act + L_bkg)^2.
  - Feature contrast (tau = 0.1), per class with >= 2 action instances: each instance
    (background and action alike) becomes the L2-normalised mean of three embeddings, one
    drawn uniformly from each third of the span; with S_ij = exp(f_i . f_j / tau), S_ii = 0,
    loss = -mean over action instances i of log(sum_{j action} S_ij / sum_j S_ij).
    Per video the classes' values are averaged or, with `feat_last_class_only` (the default;
    the released recipe's quirk: its class loop overwrites the value), only the value of the
    highest class index with >= 2 action instances is kept.

OIC of a span [s, e] of length L on a curve a over a video of T snippets:
mean(a[s..e]) - mean(a[outer]), an empty outer counting as 0. The outer region (`oic_outer`,
the same switch as `lacp.search`'s `outer`, so that the losses score spans the way the search
placed them) is either
- "floor" (METHOD 3.4 read literally, [s - L/4, s) and (e, e + L/4] on integers):
  floor(L/4) snippets on each side, clipped to the video, or
- "ceil": ceil(L/4) snippets on each side (every snippet the interval [s - L/4, s) touches),
  so even a 1-snippet span is contrasted with its neighbours, or
- "released" (the default; the released recipe's quirk: it truncates s - L/4 and e + L/4 to
  integers): ceil(L/4) snippets on the left and floor(L/4) on the right, clipped.
The widths come from `lacp.search.outer_widths`, shared with the search.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from lacp.batching import Batch
from lacp.model import video_scores
from lacp.search import OuterMode, outer_widths

__all__ = [
    "LAMBDAS",
    "LossTerms",
    "OuterMode",
    "Spans",
    "VideoEnd",
    "AbsentScore",
    "background_point_loss",
    "feature_contrast",
    "focal_bce",
    "lacp_loss",
    "oic",
    "point_loss",
    "pseudo_label_spans",
    "score_contrast",
    "trim_video_end",
    "video_loss",
]

LAMBDAS = (1.0, 0.5, 1.0, 1.0, 1.0)  # L_vid, L_point, L_bkg_point, L_score, L_feat
VideoEnd = Literal["full", "released"]
AbsentScore = Literal["mean", "topk"]


@dataclass(frozen=True)
class LossTerms:
    """Batch means of every loss term (0-d tensors; `total` carries the gradient)."""

    vid: torch.Tensor
    point: torch.Tensor
    bkg_point: torch.Tensor
    score_act: torch.Tensor
    score_bkg: torch.Tensor
    score: torch.Tensor
    feat: torch.Tensor
    total: torch.Tensor

    def as_floats(self) -> dict[str, float]:
        """The terms as plain floats keyed `loss_<name>` (for the training log)."""
        names = ("total", "vid", "point", "bkg_point", "score_act", "score_bkg", "score", "feat")
        return {f"loss_{name}": float(getattr(self, name).detach()) for name in names}


@dataclass(frozen=True)
class Spans:
    """Action and background instances of the pseudo labels of a batch, one row each.

    Rows are ordered by video, then class, then time. Attributes (all (n,) numpy arrays):
        video: batch index of the video.
        cls: class index.
        start, end: first and last snippet (inclusive).
        action: True for a run of ones (action instance), False for a run of zeros.
    """

    video: np.ndarray
    cls: np.ndarray
    start: np.ndarray
    end: np.ndarray
    action: np.ndarray

    def __len__(self) -> int:
        return int(self.video.size)

    def select(self, rows: np.ndarray) -> Spans:
        """The spans at `rows` (bool mask or indices)."""
        return Spans(self.video[rows], self.cls[rows], self.start[rows], self.end[rows], self.action[rows])


def focal_bce(q: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Focal BCE summed over the weighted snippets and all channels.

    w_focal * BCE(q, target) with w_focal = (1 - q)^2 where the target is 1 and q^2 where it
    is 0 (BCE with logs clamped at -100, as torch's BCE).

    Args:
        q: (B, T, K) probabilities.
        target: (B, T, K) 0/1 targets.
        weight: (B, T) snippet weights (0/1 masks).

    Returns:
        (B,) per-video sums.
    """
    target = target.to(q.dtype)
    focal = ((1.0 - q) * target + q * (1.0 - target)) ** 2
    bce = F.binary_cross_entropy(q, target, reduction="none")  # (B, T, K)
    return ((focal * bce).sum(dim=-1) * weight.to(q.dtype)).sum(dim=-1)


def video_loss(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """L_vid per video: mean over classes of BCE(score, label).

    Args:
        scores: (B, C) video scores in [0, 1].
        labels: (B, C) 0/1 labels.

    Returns:
        (B,) losses.
    """
    return F.binary_cross_entropy(scores, labels.to(scores.dtype), reduction="none").mean(dim=1)


def _safe_divide(total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """total / count, 0 where count is 0."""
    count = count.to(total.dtype)
    return torch.where(count > 0, total / count.clamp(min=1.0), torch.zeros_like(total))


def point_loss(q: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """L_point per video.

    Args:
        q: (B, T, C+1) fused scores.
        points: (B, T, C) bool point matrices (False at padding).

    Returns:
        (B,) focal BCE over the labelled snippets / their number (0 without points).
    """
    target = F.pad(points.to(q.dtype), (0, 1))  # (B, T, C+1), background column 0
    labelled = points.any(dim=-1)  # (B, T)
    return _safe_divide(focal_bce(q, target, labelled), labelled.sum(dim=1))


def background_point_loss(q: torch.Tensor, bg_seeds: torch.Tensor) -> torch.Tensor:
    """L_bkg_point per video.

    Args:
        q: (B, T, C+1) fused scores.
        bg_seeds: (B, T) bool pseudo background points (False at padding).

    Returns:
        (B,) focal BCE with target "background" on the seeds / their number (0 without).
    """
    target = torch.zeros_like(q)
    target[..., -1] = 1.0
    return _safe_divide(focal_bce(q, target, bg_seeds), bg_seeds.sum(dim=1))


def pseudo_label_spans(
    pseudo_labels: Sequence[np.ndarray | None],
    labels: np.ndarray,
) -> Spans:
    """Runs of ones and zeros of the pseudo labels, for the classes present in each video.

    Args:
        pseudo_labels: per video a (T_b, C) 0/1 array, or None (no search result yet).
        labels: (B, C) 0/1 video labels.

    Returns:
        The `Spans`; a class whose pseudo label is constant over the video gives none.
    """
    rows: list[tuple[np.ndarray, ...]] = []
    for b, dense in enumerate(pseudo_labels):
        if dense is None:
            continue
        dense = np.asarray(dense).astype(bool)
        for c in np.flatnonzero(labels[b]):
            column = dense[:, c]  # (T,)
            changes = np.flatnonzero(column[1:] != column[:-1])  # last index of each run
            if changes.size == 0:
                continue
            starts = np.concatenate([[0], changes + 1])
            ends = np.concatenate([changes, [column.size - 1]])
            rows.append((np.full(starts.size, b), np.full(starts.size, c), starts, ends, column[starts]))
    if not rows:
        empty = np.zeros(0, dtype=np.int64)
        return Spans(empty, empty, empty, empty, np.zeros(0, dtype=bool))
    video, cls, start, end, action = (np.concatenate(parts) for parts in zip(*rows))
    return Spans(
        video.astype(np.int64), cls.astype(np.int64), start.astype(np.int64), end.astype(np.int64), action.astype(bool)
    )


def trim_video_end(spans: Spans, lengths: np.ndarray) -> Spans:
    """The released recipe's end-of-video rule: a run that reaches the last snippet ends one
    snippet early.

    Its losses find runs from the changes of the pseudo labels, and the run after the last
    change is closed at snippet T - 2 instead of T - 1 (in the score and the feature
    contrast alike); a run of that one last snippet is then empty and dropped.

    Args:
        spans: the pseudo-label instances of a batch.
        lengths: (B,) valid snippets per video.

    Returns:
        The trimmed spans, in the same order.
    """
    last = np.asarray(lengths)[spans.video] - 1  # (n,) last snippet of each span's video
    end = np.where(spans.end == last, spans.end - 1, spans.end)  # (n,)
    trimmed = Spans(spans.video, spans.cls, spans.start, end, spans.action)
    return trimmed.select(end >= spans.start)


def oic(
    curve: torch.Tensor,
    lengths: torch.Tensor,
    spans: Spans,
    *,
    on_complement: np.ndarray,
    outer: OuterMode = "floor",
) -> torch.Tensor:
    """Outer-inner contrast of many spans at once (prefix sums, float64).

    Args:
        curve: (B, T, C) scores (the class channels of q).
        lengths: (B,) valid snippets per video (the outer region is clipped to them).
        spans: the n spans; span i is scored on curve[video_i, :, cls_i].
        on_complement: (n,) bool, True to score the span on 1 - curve instead.
        outer: outer-region convention, "floor", "ceil" or "released" (module docstring).

    Returns:
        (n,) OIC values.
    """
    if outer not in ("floor", "ceil", "released"):
        raise ValueError(f"oic outer must be 'floor', 'ceil' or 'released', got {outer!r}")
    device = curve.device
    values = curve.to(torch.float64)
    prefix = F.pad(values.cumsum(dim=1), (0, 0, 1, 0))  # (B, T+1, C), prefix[t] = sum a[:t]
    video = torch.as_tensor(spans.video, device=device)
    cls = torch.as_tensor(spans.cls, device=device)
    start = torch.as_tensor(spans.start, device=device)
    end = torch.as_tensor(spans.end, device=device)
    flip = torch.as_tensor(on_complement, device=device)
    span_len = end - start + 1
    left, right = outer_widths(span_len, outer)
    outer_start = torch.clamp(start - left, min=0)
    outer_end = torch.minimum(end + right, lengths.to(device)[video] - 1)

    def window_sum(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        """Sum over [lo, hi) of the curve (of 1 - curve for the complement spans)."""
        total = prefix[video, hi, cls] - prefix[video, lo, cls]
        return torch.where(flip, (hi - lo).to(torch.float64) - total, total)

    inner = window_sum(start, end + 1) / span_len
    outer_count = (start - outer_start) + (outer_end - end)
    outer_sum = window_sum(outer_start, start) + window_sum(end + 1, outer_end + 1)
    return (inner - _safe_divide(outer_sum, outer_count)).to(curve.dtype)


def score_contrast(
    q: torch.Tensor,
    lengths: torch.Tensor,
    spans: Spans,
    *,
    outer: OuterMode = "floor",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Score-contrastive loss per video.

    Args:
        q: (B, T, C+1) fused scores.
        lengths: (B,) valid snippets per video.
        spans: the pseudo-label instances of the batch.
        outer: OIC outer-region convention.

    Returns:
        (L_act, L_bkg, L_score), each (B,): per-video means of 1 - OIC over the action
        (background) instances (0 without instances), and (L_act + L_bkg)^2.
    """
    batch = q.shape[0]
    zeros = q.new_zeros(batch)
    if len(spans) == 0:
        return zeros, zeros, zeros
    action = torch.as_tensor(spans.action, device=q.device)
    video = torch.as_tensor(spans.video, device=q.device)
    gap = 1.0 - oic(q[..., :-1], lengths, spans, on_complement=~spans.action, outer=outer)

    def per_video_mean(rows: torch.Tensor) -> torch.Tensor:
        total = zeros.index_add(0, video, torch.where(rows, gap, torch.zeros_like(gap)))
        count = zeros.index_add(0, video, rows.to(q.dtype))
        return _safe_divide(total, count)

    loss_act = per_video_mean(action)
    loss_bkg = per_video_mean(~action)
    return loss_act, loss_bkg, (loss_act + loss_bkg) ** 2


def _sample_snippets(spans: Spans, rng: np.random.Generator) -> np.ndarray:
    """One snippet drawn uniformly from each third of each span.

    Third k of [s, e] (L = e - s + 1) is [s + floor(kL/3), s + floor((k+1)L/3)), widened to
    one snippet when empty (spans shorter than 3).

    Returns:
        (n, 3) snippet indices.
    """
    span_len = (spans.end - spans.start + 1)[:, None]  # (n, 1)
    part = np.arange(3)[None, :]  # (1, 3)
    lo = spans.start[:, None] + part * span_len // 3  # (n, 3)
    hi = np.maximum(spans.start[:, None] + (part + 1) * span_len // 3, lo + 1)
    draw = np.floor(rng.random(lo.shape) * (hi - lo)).astype(np.int64)
    return lo + np.minimum(draw, hi - lo - 1)


def _group_layout(spans: Spans) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Groups the spans by (video, class); rows of a group are contiguous (spans are sorted).

    Returns:
        group: (n,) group index of each span; size: (G,) spans per group; first_row: (G,)
        row of each group's first span; slot: (n,) position of each span in its group.
    """
    key = spans.video * (int(spans.cls.max()) + 1) + spans.cls
    _, group, size = np.unique(key, return_inverse=True, return_counts=True)
    first_row = np.concatenate([[0], np.cumsum(size)[:-1]])
    return group, size, first_row, np.arange(len(spans)) - first_row[group]


def feature_contrast(
    embeddings: torch.Tensor,
    spans: Spans,
    *,
    rng: np.random.Generator,
    tau: float = 0.1,
    last_class_only: bool = False,
) -> torch.Tensor:
    """Feature-contrastive loss per video.

    Args:
        embeddings: (B, T, E) embeddings.
        spans: the pseudo-label instances of the batch.
        rng: draws the snippets sampled from each span.
        tau: temperature.
        last_class_only: keep only the highest qualifying class per video (released quirk)
            instead of the mean over the qualifying classes.

    Returns:
        (B,) losses (0 for a video without a class with >= 2 action instances).
    """
    batch, device = embeddings.shape[0], embeddings.device
    zeros = embeddings.new_zeros(batch)
    if len(spans) == 0:
        return zeros
    group, _, _, _ = _group_layout(spans)
    spans = spans.select(np.bincount(group, weights=spans.action)[group] >= 2)
    if len(spans) == 0:
        return zeros
    group, group_size, first_row, slot = _group_layout(spans)

    # one L2-normalised vector per span: the mean of three sampled embeddings
    picks = torch.as_tensor(_sample_snippets(spans, rng), device=device)  # (n, 3)
    video = torch.as_tensor(spans.video, device=device)
    vectors = F.normalize(embeddings[video[:, None], picks].mean(dim=1), dim=-1)  # (n, E)

    # pad groups to (G, S, E) and contrast every action span against the others
    num_groups, size = group_size.size, int(group_size.max())
    group_t, slot_t = torch.as_tensor(group, device=device), torch.as_tensor(slot, device=device)
    padded = vectors.new_zeros(num_groups, size, vectors.shape[1]).index_put((group_t, slot_t), vectors)
    valid = torch.zeros(num_groups, size, dtype=torch.bool, device=device)
    valid[group_t, slot_t] = True
    is_action = torch.zeros_like(valid)
    is_action[group_t, slot_t] = torch.as_tensor(spans.action, device=device)
    logits = padded @ padded.transpose(1, 2) / tau  # (G, S, S)
    others = valid[:, None, :] & ~torch.eye(size, dtype=torch.bool, device=device)
    log_all = torch.logsumexp(logits.masked_fill(~others, float("-inf")), dim=-1)
    log_act = torch.logsumexp(logits.masked_fill(~(others & is_action[:, None, :]), float("-inf")), dim=-1)
    per_span = torch.where(is_action, log_all - log_act, torch.zeros_like(log_all))  # (G, S)
    per_group = per_span.sum(dim=1) / is_action.sum(dim=1)  # (G,)

    group_video = spans.video[first_row]
    group_cls = spans.cls[first_row]
    keep = np.ones(num_groups, dtype=bool)
    if last_class_only:
        last_cls = np.full(batch, -1)
        np.maximum.at(last_cls, group_video, group_cls)
        keep = group_cls == last_cls[group_video]
    keep_t = torch.as_tensor(keep, device=device)
    group_video_t = torch.as_tensor(group_video, device=device)
    total = zeros.index_add(0, group_video_t, torch.where(keep_t, per_group, 0.0))
    count = zeros.index_add(0, group_video_t, keep_t.to(zeros.dtype))
    return _safe_divide(total, count)


def lacp_loss(
    out: dict,
    batch: Batch,
    bg_seeds: torch.Tensor,
    pseudo_labels: Sequence[np.ndarray | None] | None,
    *,
    rng: np.random.Generator,
    lambdas: Sequence[float] = LAMBDAS,
    r_act: int = 8,
    score_contrast_on: bool = True,
    feature_contrast_on: bool = True,
    feat_last_class_only: bool = False,
    oic_outer: OuterMode = "floor",
    video_end: VideoEnd = "full",
    absent_class_score: AbsentScore = "mean",
    tau: float = 0.1,
) -> LossTerms:
    """All LACP losses of one batch, averaged over its videos.

    Args:
        out: `LACPNet` output ("p", "q", "embeddings").
        batch: the padded batch (mask, points, labels, lengths).
        bg_seeds: (B, T) bool pseudo background points.
        pseudo_labels: per video the (T_b, C) dense pseudo labels of the last search, or
            None for the whole batch before the first search (completeness terms are 0).
        rng: draws the feature-contrast samples.
        lambdas: weights of L_vid, L_point, L_bkg_point, L_score, L_feat.
        r_act: top-k ratio of the video scores.
        score_contrast_on: include L_score.
        feature_contrast_on: include L_feat.
        feat_last_class_only: the released recipe's per-video feature-loss quirk.
        oic_outer: OIC outer-region convention of the score contrast.
        video_end: "full" (runs keep their last snippet) or "released" (`trim_video_end`).
        absent_class_score: video score of a class absent from the video in L_vid: "mean" (the
            recipe, METHOD 2.4: mean over all snippets, so only its average is pushed down) or
            "topk" (the same top-k mean as at test time, so its peaks are pushed down too).
        tau: feature-contrast temperature.

    Returns:
        The `LossTerms`.
    """
    if len(lambdas) != 5:
        raise ValueError(f"lambdas must hold 5 weights, got {len(lambdas)}")
    q = out["q"]
    labels = batch.labels if absent_class_score == "mean" else None  # None: top-k for every class
    scores = video_scores(out["p"], batch.mask, labels, r_act=r_act)
    loss_vid = video_loss(scores, batch.labels)
    loss_point = point_loss(q, batch.points)
    loss_bkg = background_point_loss(q, bg_seeds)
    zeros = q.new_zeros(q.shape[0])
    score_act = score_bkg = loss_score = loss_feat = zeros
    if pseudo_labels is not None and (score_contrast_on or feature_contrast_on):
        spans = pseudo_label_spans(pseudo_labels, batch.labels.cpu().numpy())
        if video_end == "released":
            spans = trim_video_end(spans, batch.lengths.cpu().numpy())
        if score_contrast_on:
            score_act, score_bkg, loss_score = score_contrast(q, batch.lengths, spans, outer=oic_outer)
        if feature_contrast_on:
            loss_feat = feature_contrast(
                out["embeddings"], spans, rng=rng, tau=tau, last_class_only=feat_last_class_only
            )
    per_video = (
        lambdas[0] * loss_vid
        + lambdas[1] * loss_point
        + lambdas[2] * loss_bkg
        + lambdas[3] * loss_score
        + lambdas[4] * loss_feat
    )
    return LossTerms(
        vid=loss_vid.mean(),
        point=loss_point.mean(),
        bkg_point=loss_bkg.mean(),
        score_act=score_act.mean(),
        score_bkg=score_bkg.mean(),
        score=loss_score.mean(),
        feat=loss_feat.mean(),
        total=per_video.mean(),
    )
