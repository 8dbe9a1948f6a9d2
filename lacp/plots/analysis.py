"""Pictures of the paper's analyses: score against completeness, optimal sequences, pseudo-label
quality over training, and two models side by side on one test video.

Classes keep one colour in every picture (`class_color`: matplotlib's tab10, then tab20), so
a class reads the same in the sequence, the comparison and the scatter. Drawn as `lacp.plots.canvas` says.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lacp.plots.canvas import CURVE_NAMES, class_color, new_figure, plain_text, save_figure

__all__ = [
    "ModelView",
    "plot_comparison",
    "plot_pseudo_quality",
    "plot_score_scatter",
    "plot_search_sequence",
]

Instance = tuple[int, float, float]  # (class index, start s, end s)


def _runs(column: np.ndarray) -> list[tuple[int, int]]:
    """(first, end) snippet of each run of ones of a 0/1 column (end exclusive)."""
    padded = np.concatenate([[0], np.asarray(column).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def plot_score_scatter(
    *,
    tiou: np.ndarray,
    inner: np.ndarray,
    oic: np.ndarray,
    label_index: np.ndarray,
    classes: Sequence[str],
    pearson: Mapping[str, float],
    overlapping: Mapping[str, float],
    paper: Mapping[str, float],
    path: str | Path,
) -> Path:
    """Inner score and OIC of each proposal against its best same-class tIoU, side by side.

    Args:
        tiou, inner, oic, label_index: (M,) the proposals drawn (a sample of the analysed ones).
        classes: class names by index (the legend).
        pearson: {"inner": r, "oic": r} over all analysed proposals (the panel titles).
        overlapping: the same over those with tIoU > 0.
        paper: the paper's r values, same keys.
        path: PNG to write.

    Returns:
        The path written.
    """
    figure = new_figure(11.0, 4.6)
    axes = figure.subplots(1, 2, sharex=True)
    present = np.unique(label_index).tolist()
    for ax, (name, values) in zip(axes, (("inner", inner), ("oic", oic))):
        for c in present:
            at = label_index == c
            ax.scatter(
                tiou[at], values[at], s=7, alpha=0.45, color=class_color(c), label=plain_text(classes[c]), linewidths=0
            )
        title = "inner score (mean CAS inside)" if name == "inner" else "outer-inner contrast (OIC)"
        ax.set_title(
            f"{title}\nPearson r = {pearson[name]:.2f} here ({overlapping[name]:.2f} where tIoU > 0), "
            f"{paper[name]:.2f} in the paper",
            fontsize=10,
        )
        ax.set_xlabel("best tIoU with a same-class ground-truth instance")
        ax.set_ylabel("inner score" if name == "inner" else "OIC")
        ax.set_xlim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8, markerscale=2.5, loc="best", title="class", title_fontsize=8)
    figure.suptitle(f"Scoring variants: {len(tiou)} proposals before NMS (test videos)", fontsize=11)
    figure.tight_layout()
    return save_figure(figure, path)


def _span_row(
    ax, y: float, spans: Sequence[tuple[int, float, float]], *, height: float = 0.7, alpha: float = 0.85
) -> None:
    for c, start, end in spans:
        ax.broken_barh([(start, end - start)], (y - height / 2, height), color=class_color(c), alpha=alpha)


def _label_spans(labels: np.ndarray, snippet_seconds: float) -> list[tuple[int, float, float]]:
    """(class, start s, end s) of each run of ones of each column of (T, C) labels."""
    return [
        (c, a * snippet_seconds, b * snippet_seconds) for c in range(labels.shape[1]) for a, b in _runs(labels[:, c])
    ]


def plot_search_sequence(
    video_id: str,
    *,
    instances: Sequence[Instance],
    points: Sequence[tuple[int, float]],
    first: np.ndarray | None,
    first_step: int,
    final: np.ndarray | None,
    final_step: int,
    q: np.ndarray,
    q_seconds: float,
    snippet_seconds: float,
    classes: Sequence[str],
    path: str | Path,
) -> Path:
    """One training video: ground truth, points, the pseudo labels of an early and of the last
    optimal-sequence search, and the final model's class activation.

    Args:
        video_id: the title.
        instances: ground truth (class, start s, end s).
        points: the point labels (class, time s).
        first, final: (T, C) 0/1 pseudo labels of the first and the last search (None: none ran).
        first_step, final_step: their training steps.
        q: (T', C+1) the trained model's fused scores (class CAS, background last).
        q_seconds: seconds per row of `q`.
        snippet_seconds: seconds per snippet of the pseudo labels.
        classes: class names by index.
        path: PNG to write.

    Returns:
        The path written.
    """
    shown = sorted(
        {c for c, _, _ in instances}
        | {c for c, _ in points}
        | {c for lab in (first, final) if lab is not None for c in np.flatnonzero(lab.any(axis=0)).tolist()}
    )
    end = max(q.shape[0] * q_seconds, max((e for _, _, e in instances), default=0.0))
    figure = new_figure(11.0, 5.2)
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [1.3, 1]})
    rows = [
        "ground truth",
        "points",
        f"first search (step {first_step})" if first is not None else "first search (none)",
        f"last search (step {final_step})" if final is not None else "last search (none)",
    ]
    ys = [3.0, 2.0, 1.0, 0.0]
    _span_row(top, ys[0], instances)
    for c, t in points:
        top.plot([t], [ys[1]], marker="v", markersize=9, color=class_color(c), linestyle="none")
    for y, labels in ((ys[2], first), (ys[3], final)):
        if labels is not None:
            _span_row(top, y, _label_spans(np.asarray(labels), snippet_seconds), alpha=0.75)
    for _, s, e in instances:  # the ground truth's extent, faintly, under every row
        top.axvspan(s, e, color="0.85", alpha=0.35, zorder=0)
    top.set_yticks(ys, labels=rows)
    top.set_ylim(-0.6, 3.6)
    top.set_title(f"{plain_text(video_id)}: optimal sequences (pseudo labels) against the ground truth", fontsize=11)
    times = (np.arange(q.shape[0]) + 0.5) * q_seconds
    for c in shown:
        bottom.plot(times, q[:, c], color=class_color(c), label=f"CAS {plain_text(classes[c])}")
    bottom.plot(times, 1.0 - q[:, -1], color="0.4", linestyle="--", linewidth=1, label="actionness 1 - q_bg")
    bottom.set_ylim(-0.02, 1.3)  # room above 1 for the legend
    bottom.set_yticks([0.0, 0.25, 0.5, 0.75, 1.0])
    bottom.set_xlim(0, end)
    bottom.set_xlabel("time (s)")
    bottom.set_ylabel("trained model's score")
    bottom.legend(fontsize=8, loc="upper right", ncol=min(3, len(shown) + 1))
    bottom.grid(alpha=0.3)
    figure.tight_layout()
    return save_figure(figure, path)


def plot_pseudo_quality(curves: Mapping[str, Mapping[int, float]], path: str | Path) -> Path:
    """The pseudo labels' quality against the training ground truth at every search.

    Args:
        curves: name -> {step: value}: `iou`, `coverage`, `precision` (shares, left axis) and
            `length_ratio` (right axis), as the train stage logs them (`pseudo/<name>`).
        path: PNG to write.

    Returns:
        The path written.
    """
    figure = new_figure(8.0, 4.8)
    ax = figure.subplots()
    names = {
        "iou": "mean IoU of the best pseudo span per instance",
        "coverage": "share of GT snippets labelled",
        "precision": "share of pseudo-action snippets inside GT",
    }
    for key, text in names.items():
        if key in curves and curves[key]:
            steps = sorted(curves[key])
            ax.plot(steps, [curves[key][s] for s in steps], marker=".", label=text)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("training step (a search every search_every steps)")
    ax.set_ylabel("share")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if curves.get("length_ratio"):
        right = ax.twinx()
        steps = sorted(curves["length_ratio"])
        line = right.plot(
            steps,
            [curves["length_ratio"][s] for s in steps],
            color="0.35",
            linestyle="--",
            label="length ratio: best span / instance (right)",
        )
        right.set_ylabel("length ratio (1 = the instance's length)")
        right.set_ylim(0, max(2.0, 1.1 * max(curves["length_ratio"].values())))
        right.axhline(1.0, color="0.6", linewidth=0.8)
        handles, labels = handles + line, labels + [line[0].get_label()]
    ax.legend(handles, labels, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.17), ncol=2)
    ax.set_title("Pseudo labels of each search against the training ground truth", fontsize=11)
    figure.tight_layout()
    return save_figure(figure, path)


@dataclass(frozen=True)
class ModelView:
    """One model's output on one video, for `plot_comparison`.

    Attributes:
        name: the legend's name (e.g. the run label).
        detections: {"label_index", "score", "segment": [s, e]} after NMS.
        q: (T, C+1) fused scores.
        q_seconds: seconds per row of `q`.
        curve: what `q`'s class columns are, in the picture's words (`CURVE_NAMES`: LACP's class
            activation, a detector's detection coverage).
    """

    name: str
    detections: Sequence[Mapping]
    q: np.ndarray
    q_seconds: float
    curve: str = CURVE_NAMES["lacp"][0]


def plot_comparison(
    video_id: str,
    *,
    instances: Sequence[Instance] | None,
    views: Sequence[ModelView],
    classes: Sequence[str],
    threshold: float,
    path: str | Path,
    lanes: int = 6,
) -> Path:
    """Ground truth, then for each model its detections scoring >= `threshold` (one lane each,
    best first, at most `lanes`) above its CAS of the video's ground-truth classes (solid) and
    of any other class it detects there (dashed).

    Args:
        video_id: the title.
        instances: ground truth (class, start s, end s); None for a video without any (a new
            video, `pipeline.detect`): no ground-truth row, and the CAS of every class drawn
            solid.
        views: the models, drawn top to bottom.
        classes: class names by index.
        threshold: the lowest detection score drawn.
        path: PNG to write.
        lanes: the most detections drawn per model.

    Returns:
        The path written.
    """
    from matplotlib.patches import Patch

    truth = instances is not None
    instances = list(instances or [])
    gt_classes = sorted({c for c, _, _ in instances})
    end = max([max((e for _, _, e in instances), default=0.0)] + [v.q.shape[0] * v.q_seconds for v in views])
    figure = new_figure(11.0, (1.6 if truth else 1.1) + 2.6 * len(views))
    rows = [0.5] * truth + [2.2] * len(views)
    axes = np.atleast_1d(figure.subplots(len(rows), 1, sharex=True, gridspec_kw={"height_ratios": rows}))
    shown = f"score >= {threshold:g}, best {lanes} at most, one per lane"
    curves = " / ".join(dict.fromkeys(view.curve for view in views))  # e.g. "class activation / detection coverage"
    video_id = plain_text(video_id)
    if truth:
        axes[0].set_title(
            f"{video_id}: ground truth, then each model's detections ({shown}) above its {curves}", fontsize=10
        )
        _span_row(axes[0], 0.5, instances)
        axes[0].set_yticks([0.5], labels=["ground truth"])
        axes[0].set_ylim(0, 1)
    else:
        axes[0].set_title(f"{video_id}: detections ({shown}) above the {curves} of each detected class", fontsize=10)
    lane = 0.16  # height of one detection lane, in score units
    drawn_classes = set(gt_classes)
    for ax, view in zip(axes[int(truth) :], views):
        kept = sorted((d for d in view.detections if float(d["score"]) >= threshold), key=lambda d: -float(d["score"]))
        for i, d in enumerate(kept[:lanes]):
            s, e = (float(x) for x in d["segment"])
            c = int(d["label_index"])
            drawn_classes.add(c)
            y = 1.1 + i * lane
            ax.broken_barh([(s, e - s)], (y, lane * 0.8), color=class_color(c), alpha=0.8)
            ax.text(s, y + lane * 0.4, f" {float(d['score']):.2f}", va="center", fontsize=7)
        times = (np.arange(view.q.shape[0]) + 0.5) * view.q_seconds
        for c in gt_classes:
            ax.plot(times, view.q[:, c], color=class_color(c), linewidth=1.2)
        for c in sorted({int(d["label_index"]) for d in kept[:lanes]} - set(gt_classes)):  # false classes: dashed
            ax.plot(
                times,
                view.q[:, c],
                color=class_color(c),
                linewidth=1.0 + 0.2 * (not truth),
                linestyle="--" if truth else "-",
            )
        for _, s, e in instances:
            ax.axvspan(s, e, color="0.85", alpha=0.4, zorder=0)
        ax.set_ylim(-0.02, 1.1 + lanes * lane)
        ax.set_yticks(
            [0.0, 0.5, 1.0, 1.1 + lanes * lane / 2],
            labels=["0", "0.5", "1", f"{min(len(kept), lanes)} of {len(kept)} det."],
        )
        ax.set_ylabel(f"{plain_text(view.name)}\n{view.curve}", fontsize=9)
        ax.grid(alpha=0.25)
    axes[-1].set_xlim(0, end)
    axes[-1].set_xlabel("time (s)")
    legend = [Patch(color=class_color(c), label=plain_text(classes[c])) for c in sorted(drawn_classes)]
    figure.legend(
        handles=legend,
        fontsize=8,
        loc="lower center",
        ncol=min(6, len(legend)),
        title=f"class (bars and {curves})",
        title_fontsize=8,
        frameon=False,
    )
    figure.tight_layout(rect=(0, 0.5 / figure.get_figheight(), 1, 1))  # the bottom half inch: the legend
    return save_figure(figure, path)
