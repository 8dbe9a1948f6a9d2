"""Evaluation pictures: mAP against tIoU, AP per class, and per-video timelines (drawn as
`lacp.plots.canvas` says)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from lacp.plots.canvas import new_figure, plain_text, save_figure

__all__ = ["detection_lanes", "plot_map_vs_tiou", "plot_per_class_ap", "plot_timeline"]

_THRESHOLD_KEY = re.compile(r"^mAP@(\d*\.?\d+)$")  # "mAP@0.5"; averages ("mAP@0.1-0.5") do not match


def _curve(table: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """(thresholds, mAP) from the ``mAP@<t>`` keys of a summary table, sorted by threshold."""
    points = sorted((float(m.group(1)), float(v)) for k, v in table.items() if (m := _THRESHOLD_KEY.match(k)))
    if not points:
        raise ValueError(f"no 'mAP@<tIoU>' keys in the table (keys: {sorted(table)})")
    thresholds, values = zip(*points)
    return np.array(thresholds), np.array(values)


def plot_map_vs_tiou(
    table: Mapping[str, float] | Mapping[str, Mapping[str, float]], path: str | Path, *, title: str = "mAP vs tIoU"
) -> Path:
    """Line plot of mAP against the tIoU threshold.

    Args:
        table: a ``summary_table`` dict (``{"mAP@0.1": ..., ...}``; averages are ignored), or
            a mapping from run names to such dicts to compare several runs on one plot.
        path: PNG to write.
        title: figure title.

    Returns:
        The path written.

    Raises:
        ValueError: a table without ``mAP@<tIoU>`` keys.
    """
    runs = table if all(isinstance(v, Mapping) for v in table.values()) and table else {"": table}
    figure = new_figure(6.0, 4.0)
    axes = figure.add_subplot()
    for name, run in runs.items():
        thresholds, values = _curve(run)  # type: ignore[arg-type]
        axes.plot(thresholds, values, marker="o", label=plain_text(name) if name else None)
        if len(runs) == 1:
            for x, y in zip(thresholds, values):
                axes.annotate(f"{y:.3f}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    axes.set_xlabel("tIoU threshold")
    axes.set_ylabel("mAP")
    axes.set_title(plain_text(title))
    axes.grid(alpha=0.3)
    if len(runs) > 1:
        axes.legend(fontsize=8)
    figure.tight_layout()
    return save_figure(figure, path)


def plot_per_class_ap(
    classes: Sequence[str],
    ap: np.ndarray,
    path: str | Path,
    *,
    tiou: Sequence[float] | None = None,
    title: str = "AP per class",
) -> Path:
    """Horizontal bars of AP per class.

    Args:
        classes: (C,) class names.
        ap: (C,) AP per class, or (C, K) AP per class and threshold: the bars then show the
            mean over thresholds and a marker per threshold.
        path: PNG to write.
        tiou: (K,) threshold labels for the markers of a (C, K) array.
        title: figure title.

    Returns:
        The path written.

    Raises:
        ValueError: ``ap`` does not have C rows.
    """
    ap = np.asarray(ap, dtype=np.float64)
    if ap.ndim not in (1, 2) or ap.shape[0] != len(classes):
        raise ValueError(f"plot_per_class_ap: ap must be (C,) or (C, K) with C = {len(classes)}, got {ap.shape}")
    per_threshold = ap.reshape(len(classes), -1)  # (C, K)
    figure = new_figure(8.0, max(3.0, 1.0 + 0.3 * len(classes)))
    axes = figure.add_subplot()
    rows = np.arange(len(classes))
    axes.barh(rows, per_threshold.mean(axis=1), color="tab:blue", alpha=0.6, label="mean" if ap.ndim == 2 else None)
    if ap.ndim == 2:
        labels = [f"{t:g}" for t in tiou] if tiou is not None else [str(k) for k in range(ap.shape[1])]
        for k, label in enumerate(labels):
            axes.scatter(per_threshold[:, k], rows, s=12, label=f"tIoU {label}", zorder=3)
        axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    axes.set_yticks(rows, labels=[plain_text(c) for c in classes], fontsize=8)
    axes.invert_yaxis()
    axes.set_xlim(0, 1)
    axes.set_xlabel("AP")
    axes.set_title(plain_text(title))
    axes.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    return save_figure(figure, path)


def detection_lanes(segments: Sequence[tuple[float, float]]) -> list[int]:
    """The lane of each segment, in the given order: the first lane whose segments it does not overlap.

    Args:
        segments: (start, end) pairs, best first.

    Returns:
        One lane index per segment (0 for the first).
    """
    lanes: list[list[tuple[float, float]]] = []
    found = []
    for s, e in segments:
        lane = next((i for i, taken in enumerate(lanes) if all(e <= a or s >= b for a, b in taken)), len(lanes))
        if lane == len(lanes):
            lanes.append([])
        lanes[lane].append((s, e))
        found.append(lane)
    return found


def plot_timeline(
    video_id: str,
    *,
    gt_segments: np.ndarray | Sequence[Sequence[float]],
    predictions: Sequence[Mapping],
    cas: np.ndarray,
    snippet_seconds: float,
    path: str | Path,
    actionness: np.ndarray | None = None,
    top_k: int = 10,
    curve_names: tuple[str, str] = ("class activation", "actionness"),
) -> Path:
    """Qualitative picture of one video: ground truth, detections and the activation curve.

    Detections are drawn best first into the first lane where they overlap no other, so every
    bar and its score stay readable.

    Args:
        video_id: shown in the title.
        gt_segments: (N, 2) ground-truth start, end in seconds.
        predictions: detections ``{"segment": [s, e], "score": float, ...}`` (e.g. of one class).
        cas: (T,) class activation per sample; sample t spans
            ``[t * snippet_seconds, (t + 1) * snippet_seconds)``.
        snippet_seconds: seconds per sample of ``cas`` (16 / 25, or that / 24 when upsampled).
        path: PNG to write.
        actionness: optional (T,) curve drawn with the CAS.
        top_k: draw only this many highest-scoring detections.
        curve_names: the legend's names of `cas` and `actionness` (a detector's curves are its
            detections' coverage, not a class activation).

    Returns:
        The path written.
    """
    cas = np.asarray(cas, dtype=np.float64).reshape(-1)
    gt = np.asarray(gt_segments, dtype=np.float64).reshape(-1, 2)
    shown = sorted(predictions, key=lambda p: -float(p["score"]))[:top_k]
    times = (np.arange(cas.size) + 0.5) * snippet_seconds
    end = max(cas.size * snippet_seconds, gt[:, 1].max(initial=0.0), max((p["segment"][1] for p in shown), default=0.0))
    lanes = detection_lanes([tuple(float(v) for v in p["segment"]) for p in shown])  # best first, no overlap in a lane
    rows = max(lanes, default=-1) + 1
    figure = new_figure(10.0, 3.4 + 0.3 * rows)
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [0.6 + 0.4 * rows, 1.4]})
    top.broken_barh([(s, e - s) for s, e in gt], (rows + 0.1, 0.8), color="tab:green", label="ground truth")
    for p, lane in zip(shown, lanes):
        s, e = (float(v) for v in p["segment"])
        y = rows - 1 - lane  # the best detections' lane nearest the ground truth
        top.broken_barh([(s, e - s)], (y + 0.1, 0.8), color="tab:red", alpha=0.35)
        top.text((s + e) / 2, y + 0.5, f"{float(p['score']):.2f}", ha="center", va="center", fontsize=7)
    ticks = [rows / 2, rows + 0.5] if rows else [rows + 0.5]
    names = [f"top {len(shown)} detections", "ground truth"] if rows else ["ground truth"]
    top.set_yticks(ticks, labels=names)
    top.set_ylim(0, rows + 1)
    top.set_title(plain_text(video_id))
    bottom.plot(times, cas, color="tab:blue", label=curve_names[0])
    if actionness is not None:
        bottom.plot(times, np.asarray(actionness, dtype=np.float64).reshape(-1), color="tab:gray", label=curve_names[1])
    for s, e in gt:
        bottom.axvspan(s, e, color="tab:green", alpha=0.12)
    bottom.set_xlim(0, end)
    bottom.set_xlabel("time (s)")
    bottom.set_ylabel("score")
    bottom.legend(fontsize=8, loc="upper right")
    figure.tight_layout()
    return save_figure(figure, path)
