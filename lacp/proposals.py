"""Action proposals from per-snippet scores (METHOD.md section 5).

From the fused scores ``q`` (T, C+1) of one video (``q_c = p_c * (1 - p_bg)``, last column
``q_bg = p_bg``) and the video-level class scores:

1. predicted classes: video score >= ``class_threshold``, or the argmax when none is;
2. for each predicted class, the class CAS ``q_c`` and the actionness ``1 - q_bg`` are
   upsampled ``upsample`` times (``upsample_linear``);
3. every maximal run of upsampled positions whose value is >= a threshold (and > 0) is a
   proposal: thresholds ``CAS_THRESHOLDS`` on the class CAS, ``ACT_THRESHOLDS`` on the
   actionness;
4. score = OIC on the upsampled class CAS + ``score_weight`` * video score. OIC of a run
   ``[i0, i1]`` (L = i1 - i0 + 1 positions) is the mean inside minus the mean over the outer
   positions: ``w = floor(0.25 L)`` positions on each side, clipped to the video, pooled into
   one mean; no outer position -> outer mean 0;
5. times ``[i0 * u, (i1 + 1) * u]`` with ``u = snippet_seconds / upsample`` (16 / (24 * 25) s on
   the released time grid);
6. per class, greedy 1-D NMS at tIoU ``nms_tiou``.

``faithful=True`` reproduces three details of the authors' released recipe instead:

- NMS measures lengths and overlaps as ``end - start + 1`` in seconds (pixel-style), which
  inflates the IoU of short segments and suppresses more of them;
- the left outer window has ``ceil(0.25 L)`` positions (integer truncation of
  ``i0 - 0.25 L``), the right one ``floor(0.25 L)``;
- proposals from the class-CAS thresholds are scored on the CAS with values below that
  threshold set to 0 (outer positions below the threshold count as 0 in the outer mean).

The default (``faithful=False``) follows METHOD.md literally: true lengths in NMS, symmetric
``floor(0.25 L)`` outer windows, and OIC on the unmodified class CAS for every proposal.
Equal scores are ordered by position (stable sort) in NMS.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import Field

from core.config import Config

__all__ = [
    "ACT_THRESHOLDS",
    "CAS_THRESHOLDS",
    "Candidates",
    "DetectionConfig",
    "candidate_proposals",
    "generate_proposals",
    "nms_1d",
    "predicted_classes",
    "to_results_json",
    "upsample_linear",
    "video_scores",
]

CAS_THRESHOLDS = np.round(np.arange(10) * 0.025, 3)  # 0.000, 0.025, ..., 0.225
ACT_THRESHOLDS = np.round(0.5 + np.arange(9) * 0.025, 3)  # 0.500, 0.525, ..., 0.700


def video_scores(p: np.ndarray, *, r_act: float = 8) -> np.ndarray:
    """Video-level class scores: mean of the top-k snippet scores of each class.

    Args:
        p: (T, C) per-snippet class probabilities (the unfused sigmoid scores).
        r_act: k = max(1, floor(T / r_act)) (the guard covers T < r_act).

    Returns:
        (C,) video scores.

    Raises:
        ValueError: ``p`` is not a non-empty 2-D array, or ``r_act <= 0``.
    """
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0:
        raise ValueError(f"video_scores: expected scores of shape (T, C) with T >= 1, got {p.shape}")
    if r_act <= 0:
        raise ValueError(f"video_scores: r_act must be > 0, got {r_act}")
    k = max(1, int(p.shape[0] // r_act))
    top = np.partition(p, p.shape[0] - k, axis=0)[p.shape[0] - k :]  # (k, C)
    return top.mean(axis=0)


def predicted_classes(scores: np.ndarray, *, threshold: float = 0.5) -> np.ndarray:
    """Indices of classes with score >= threshold, or the argmax alone when there is none.

    Args:
        scores: (C,) video scores.
        threshold: class threshold.

    Returns:
        (n,) int64 class indices, ascending, n >= 1.
    """
    chosen = np.flatnonzero(scores >= threshold)
    return chosen if chosen.size else np.array([int(np.argmax(scores))], dtype=np.int64)


def upsample_linear(a: np.ndarray, *, factor: int) -> np.ndarray:
    """Upsamples a sequence ``factor`` times along its first axis by linear interpolation.

    Output position i (0 <= i < T * factor) samples the input at x = i / factor, in snippet
    units: between snippets t and t + 1 it is ``a[t] + (x - t) * (a[t+1] - a[t])``; beyond
    the last snippet (x > T - 1) the line through the last two snippets is extended
    (linear extrapolation; values are not clipped). A single snippet is held constant.

    Args:
        a: (T, ...) values per snippet, T >= 1.
        factor: integer upsampling factor >= 1.

    Returns:
        (T * factor, ...) float64 values.
    """
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 0 or a.shape[0] == 0 or factor < 1:
        raise ValueError(f"upsample_linear: need T >= 1 snippets and factor >= 1, got shape {a.shape}, factor {factor}")
    length = a.shape[0]
    if length == 1:
        return np.repeat(a, factor, axis=0)
    x = np.arange(length * factor) / factor  # (T * factor,)
    left = np.minimum(np.floor(x).astype(np.int64), length - 2)
    frac = (x - left).reshape((-1,) + (1,) * (a.ndim - 1))
    return a[left] + frac * (a[left + 1] - a[left])


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maximal runs of True along the last axis of a (R, N) mask.

    Returns:
        row (M,), first (M,), last (M,) position (inclusive), ordered by row then position.
    """
    padded = np.zeros((mask.shape[0], mask.shape[1] + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    step = np.diff(padded, axis=1)  # +1 at a run start, -1 just after its end
    row, first = np.nonzero(step == 1)
    _, after = np.nonzero(step == -1)
    return row, first, after - 1


def _oic(
    curves: np.ndarray, row: np.ndarray, first: np.ndarray, last: np.ndarray, *, outer_ratio: float, faithful: bool
) -> np.ndarray:
    """Outer-inner contrast of runs, with prefix sums.

    Args:
        curves: (R, N) score curve of each row.
        row, first, last: (M,) runs (inclusive positions) on those rows.
        outer_ratio: outer window length as a share of the run length.
        faithful: left window ceil(ratio * L) instead of floor (the released recipe).

    Returns:
        inner (M,) mean inside each run and outer (M,) mean over its outer positions (0 when
        there is none); the OIC is inner - outer.
    """
    n = curves.shape[1]
    prefix = np.zeros((curves.shape[0], n + 1))
    np.cumsum(curves, axis=1, out=prefix[:, 1:])
    length = last - first + 1
    right_width = np.floor(outer_ratio * length).astype(np.int64)
    left_width = np.ceil(outer_ratio * length).astype(np.int64) if faithful else right_width
    lo = np.maximum(first - left_width, 0)
    hi = np.minimum(last + right_width, n - 1)  # inclusive
    inner = (prefix[row, last + 1] - prefix[row, first]) / length
    outer_sum = (prefix[row, first] - prefix[row, lo]) + (prefix[row, hi + 1] - prefix[row, last + 1])
    outer_count = (first - lo) + (hi - last)
    outer = np.divide(outer_sum, outer_count, out=np.zeros_like(outer_sum), where=outer_count > 0)
    return inner, outer


def nms_1d(segments: np.ndarray, scores: np.ndarray, *, tiou: float = 0.7, faithful: bool = False) -> np.ndarray:
    """Greedy 1-D non-maximum suppression.

    Visits segments by descending score (stable: equal scores by index) and drops every
    remaining segment whose tIoU with the kept one is >= ``tiou``.

    Args:
        segments: (N, 2) start, end in seconds.
        scores: (N,) scores.
        tiou: suppression threshold.
        faithful: measure lengths and overlaps as ``end - start + 1`` (the released recipe's
            pixel-style convention, applied to seconds) instead of ``end - start``.

    Returns:
        (K,) int64 indices of the kept segments, by descending score.
    """
    segments = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if scores.shape[0] != segments.shape[0]:
        raise ValueError(f"nms_1d: {segments.shape[0]} segments but {scores.shape[0]} scores")
    extra = 1.0 if faithful else 0.0
    start, end = segments[:, 0], segments[:, 1]
    length = end - start + extra
    order = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    while order.size:
        best, rest = order[0], order[1:]
        kept.append(int(best))
        inter = np.maximum(np.minimum(end[best], end[rest]) - np.maximum(start[best], start[rest]) + extra, 0.0)
        union = length[best] + length[rest] - inter
        overlap = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[overlap < tiou]
    return np.array(kept, dtype=np.int64)


class DetectionConfig(Config):
    """How LACP's scores become detections: the params' `detection` section (its LACP keys, each
    default, range and description declared here once), recorded in the model folder by the train
    stage and applied by evaluate, analyze, pseudo and `python -m pipeline detect` (whose flags
    these descriptions document)."""

    r_act: int = Field(
        8, ge=1, description="top-k ratio of the video score, k = max(1, T // r_act) (also the training's)"
    )
    class_threshold: float = Field(
        0.5, ge=0, le=1, description="video score a class needs to be localised (else the argmax is)"
    )
    nms_tiou: float = Field(0.7, gt=0, le=1, description="tIoU above which NMS suppresses a proposal")
    faithful: bool = Field(
        True, description="the released inference's proposal quirks (lacp.proposals; docs/METHOD.md section 5)"
    )


@dataclass(frozen=True)
class Candidates:
    """Every proposal of one video before NMS (steps 1-5 of the module docstring).

    Attributes:
        label_index: (M,) class of each candidate.
        segments: (M, 2) start, end in seconds.
        inner: (M,) mean of the upsampled class CAS inside the run (the "inner score").
        outer: (M,) mean over its outer positions (0 when there is none; with ``faithful``,
            CAS-threshold runs count sub-threshold values there as 0).
        score: (M,) the detection score: inner - outer (the OIC) + score_weight * video score.
    """

    label_index: np.ndarray
    segments: np.ndarray
    inner: np.ndarray
    outer: np.ndarray
    score: np.ndarray

    @property
    def oic(self) -> np.ndarray:
        """(M,) outer-inner contrast: inner - outer."""
        return self.inner - self.outer


def candidate_proposals(
    q: np.ndarray,
    *,
    config: DetectionConfig,
    snippet_seconds: float,
    video_score: np.ndarray | None = None,
    cas_thresholds: Sequence[float] | np.ndarray = CAS_THRESHOLDS,
    act_thresholds: Sequence[float] | np.ndarray = ACT_THRESHOLDS,
    upsample: int = 24,
    outer_ratio: float = 0.25,
    score_weight: float = 0.2,
) -> Candidates:
    """The scored proposals of one video before NMS (steps 1-5 of the module docstring).

    Args:
        q: (T, C+1) fused scores; column C is the background score.
        config: r_act (for the fallback video score), class_threshold, faithful.
        snippet_seconds: seconds between snippets (`features.timegrid.TimeGrid.seconds_per_snippet`;
            16 / 25 s in the released recipe).
        video_score: (C,) video-level class scores, normally ``video_scores(p[:, :C])`` of the
            unfused sigmoid scores p (as the recipe does). None: top-k mean of ``q[:, :C]``
            (a fallback that is lower than the recipe's score wherever q_bg > 0).
        cas_thresholds: thresholds on the upsampled class CAS.
        act_thresholds: thresholds on the upsampled actionness 1 - q_bg.
        upsample: upsampling factor (the method's constants: the released recipe's values).
        outer_ratio: OIC outer window as a share of the run length.
        score_weight: weight of the video score added to the OIC.

    Returns:
        `Candidates`, by ascending class index, then threshold row, then position.

    Raises:
        ValueError: ``q`` not (T, C+1) with T >= 1, C >= 1, or ``video_score`` not (C,).
    """
    q = np.asarray(q, dtype=np.float64)
    if q.ndim != 2 or q.shape[0] == 0 or q.shape[1] < 2:
        raise ValueError(f"generate_proposals: expected fused scores of shape (T, C+1), T >= 1, C >= 1; got {q.shape}")
    n_classes = q.shape[1] - 1
    scores = (
        video_scores(q[:, :n_classes], r_act=config.r_act) if video_score is None else np.asarray(video_score, float)
    )
    if scores.shape != (n_classes,):
        raise ValueError(f"generate_proposals: video_score must have shape ({n_classes},), got {scores.shape}")
    cas_thr = np.asarray(cas_thresholds, dtype=np.float64).reshape(-1, 1)  # (R1, 1)
    act_thr = np.asarray(act_thresholds, dtype=np.float64).reshape(-1, 1)  # (R2, 1)
    step = snippet_seconds / upsample
    actionness = upsample_linear(1.0 - q[:, n_classes], factor=upsample)  # (N,)
    act_mask = (actionness >= act_thr) & (actionness > 0)  # (R2, N)
    parts: list[tuple[np.ndarray, ...]] = []
    for c in predicted_classes(scores, threshold=config.class_threshold).tolist():
        cas = upsample_linear(q[:, c], factor=upsample)  # (N,)
        cas_mask = (cas >= cas_thr) & (cas > 0)  # (R1, N)
        mask = np.concatenate([cas_mask, act_mask])  # (R, N)
        curves = np.broadcast_to(cas, mask.shape)
        if config.faithful:
            curves = np.concatenate([np.where(cas < cas_thr, 0.0, cas), np.broadcast_to(cas, act_mask.shape)])
        row, first, last = _runs(mask)
        inner, outer = _oic(curves, row, first, last, outer_ratio=outer_ratio, faithful=config.faithful)
        segments = np.stack([first * step, (last + 1) * step], axis=1)  # (M, 2)
        parts.append(
            (np.full(len(row), c, dtype=np.int64), segments, inner, outer, inner - outer + score_weight * scores[c])
        )
    label_index, segments, inner, outer, score = (np.concatenate(column) for column in zip(*parts))
    return Candidates(label_index, segments, inner, outer, score)


def generate_proposals(q: np.ndarray, *, config: DetectionConfig, **options: Any) -> list[dict]:
    """Scored temporal proposals of one video: `candidate_proposals`, then NMS per class.

    Args:
        q: (T, C+1) fused scores; column C is the background score.
        config: the detection settings; ``nms_tiou`` and ``faithful`` drive the NMS.
        **options: `candidate_proposals`'s keywords (snippet_seconds is required).

    Returns:
        Proposals ``{"label_index": int, "score": float, "segment": [start_s, end_s]}``,
        grouped by ascending class index, each class by descending score.
    """
    found = candidate_proposals(q, config=config, **options)
    proposals: list[dict] = []
    for c in np.unique(found.label_index).tolist():
        at = np.flatnonzero(found.label_index == c)
        segments, scores = found.segments[at], found.score[at]
        for index in nms_1d(segments, scores, tiou=config.nms_tiou, faithful=config.faithful).tolist():
            proposals.append({"label_index": c, "score": float(scores[index]), "segment": segments[index].tolist()})
    return proposals


RESULTS_VERSION = "VERSION 1.3"  # the ActivityNet results format's version string
EXTERNAL_DATA = {"used": True, "details": "I3D two-stream features; the RGB stream pretrained on Kinetics-400"}


def to_results_json(proposals_by_video: Mapping[str, Sequence[Mapping]], *, classes: Sequence[str]) -> dict:
    """Builds an ActivityNet results document from ``generate_proposals`` outputs.

    Args:
        proposals_by_video: video id -> its proposals.
        classes: class names indexed by ``label_index``.

    Returns:
        ``{"version", "results": {vid: [{"label", "score", "segment"}, ...]}, "external_data"}``:
        the three keys the official ActivityNet evaluator requires (``RESULTS_VERSION``;
        ``EXTERNAL_DATA``: external data used, the I3D features pretrained on Kinetics-400).
    """
    return {
        "version": RESULTS_VERSION,
        "external_data": dict(EXTERNAL_DATA),
        "results": {
            vid: [
                {"label": classes[p["label_index"]], "score": float(p["score"]), "segment": list(p["segment"])}
                for p in proposals
            ]
            for vid, proposals in proposals_by_video.items()
        },
    }
