"""How well a proposal's score says how complete it is (the paper's analysis of scoring variants).

For every candidate proposal of the test videos (before NMS: `lacp.proposals.candidate_proposals`)
the analysis takes its best tIoU with a ground-truth instance of the same class in the same
video, and correlates that tIoU with two scores of the proposal: the inner score (mean class
activation inside) and the outer-inner contrast (OIC: inner minus the mean over the outer
windows). LACP's claim: OIC follows completeness far better (Pearson r 0.68 against 0.38 on
THUMOS'14).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["PAPER_PEARSON", "ScoredProposals", "best_tiou", "correlations", "pearson", "spearman"]

PAPER_PEARSON = {"oic": 0.68, "inner": 0.38}  # LACP (ICCV 2021), THUMOS'14: r with the proposals' tIoU


@dataclass(frozen=True)
class ScoredProposals:
    """Candidate proposals pooled over videos, with their completeness and scores.

    Attributes:
        label_index: (M,) class of each proposal.
        tiou: (M,) best tIoU with a same-class ground-truth instance of its video (0 if none).
        inner: (M,) inner score.
        oic: (M,) outer-inner contrast.
    """

    label_index: np.ndarray
    tiou: np.ndarray
    inner: np.ndarray
    oic: np.ndarray


def best_tiou(segments: np.ndarray, labels: np.ndarray, gt_segments: np.ndarray, gt_labels: np.ndarray) -> np.ndarray:
    """Best tIoU of each proposal with a ground-truth instance of its class (one video).

    Args:
        segments: (M, 2) proposal start, end (s).
        labels: (M,) proposal classes.
        gt_segments: (G, 2) ground-truth start, end (s).
        gt_labels: (G,) ground-truth classes.

    Returns:
        (M,) float64 in [0, 1]; 0 where the video has no instance of the proposal's class.
    """
    segments = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
    gt_segments = np.asarray(gt_segments, dtype=np.float64).reshape(-1, 2)
    labels, gt_labels = np.asarray(labels).reshape(-1), np.asarray(gt_labels).reshape(-1)
    if len(labels) != len(segments) or len(gt_labels) != len(gt_segments):
        raise ValueError(
            f"best_tiou: {len(segments)} segments with {len(labels)} labels, "
            f"{len(gt_segments)} ground-truth segments with {len(gt_labels)} labels"
        )
    if not len(segments) or not len(gt_segments):
        return np.zeros(len(segments))
    inter = np.clip(
        np.minimum(segments[:, None, 1], gt_segments[None, :, 1])
        - np.maximum(segments[:, None, 0], gt_segments[None, :, 0]),
        0.0,
        None,
    )  # (M, G)
    union = (segments[:, 1] - segments[:, 0])[:, None] + (gt_segments[:, 1] - gt_segments[:, 0])[None, :] - inter
    tiou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    tiou[labels[:, None] != gt_labels[None, :]] = 0.0
    return tiou.max(axis=1)


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of two (N,) samples; NaN when N < 2 or either is constant."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"pearson: expected two samples of the same length, got {x.shape} and {y.shape}")
    if len(x) < 2:
        return float("nan")
    dx, dy = x - x.mean(), y - y.mean()
    norm = np.sqrt((dx * dx).sum() * (dy * dy).sum())
    return float((dx * dy).sum() / norm) if norm > 0 else float("nan")


def _ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their mean rank."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    values, inverse = np.unique(x, return_inverse=True)
    sums = np.bincount(inverse, weights=ranks, minlength=len(values))
    counts = np.bincount(inverse, minlength=len(values))
    return (sums / counts)[inverse]


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (Pearson of the tie-averaged ranks); NaN as `pearson`."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"spearman: expected two samples of the same length, got {x.shape} and {y.shape}")
    return pearson(_ranks(x), _ranks(y)) if len(x) >= 2 else float("nan")


def correlations(proposals: ScoredProposals, *, classes: Sequence[str]) -> dict[str, object]:
    """Pearson and Spearman correlation of each score with the tIoU, overall and per class.

    Args:
        proposals: the pooled proposals.
        classes: class names by index.

    Returns:
        ``{"proposals": M, "pearson_oic": r, "pearson_inner": r, "spearman_oic": rho,
        "spearman_inner": rho, "per_class": {name: {"proposals", "pearson_oic", ...}}}``
        (classes without proposals left out; NaN where a sample is constant), and the same
        four with the suffix ``_overlapping`` over the ``overlapping`` proposals only, those
        with tIoU > 0: how complete a proposal that touches an instance is, without the
        proposals of wrong classes or of background, which all sit at tIoU 0.
    """

    def table(at: np.ndarray) -> dict[str, float]:
        overlapping = at[proposals.tiou[at] > 0]
        row: dict[str, float] = {"proposals": int(len(at)), "overlapping": int(len(overlapping))}
        for suffix, subset in (("", at), ("_overlapping", overlapping)):
            for name, fn in (("pearson", pearson), ("spearman", spearman)):
                for score in ("oic", "inner"):
                    row[f"{name}_{score}{suffix}"] = fn(getattr(proposals, score)[subset], proposals.tiou[subset])
        return row

    out: dict[str, object] = table(np.arange(len(proposals.tiou)))
    per_class: Mapping[str, dict[str, float]] = {
        classes[c]: table(np.flatnonzero(proposals.label_index == c)) for c in np.unique(proposals.label_index).tolist()
    }
    out["per_class"] = dict(per_class)
    return out
