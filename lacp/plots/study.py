"""A study's picture: mAP against tIoU over seeds, one curve per run (mean, shaded +- std)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lacp.plots.canvas import new_figure, plain_text, save_figure

__all__ = ["StudyCurve", "plot_study"]


@dataclass(frozen=True)
class StudyCurve:
    """One run of a study: its name and its mAP (%) at each tIoU over the seeds.

    Attributes:
        run: the run's name (a grid point or an ablation row).
        mean: (K,) mean mAP (%) at each tIoU.
        std: (K,) its standard deviation over the seeds.
    """

    run: str
    mean: np.ndarray
    std: np.ndarray


def plot_study(
    curves: Sequence[StudyCurve], *, tiou: np.ndarray, points: dict[str, dict[str, str]], title: str, path: str | Path
) -> Path:
    """Draw every run's mAP curve with its spread shaded, and write the PNG atomically.

    Args:
        curves: the runs, in legend order.
        tiou: (K,) the thresholds on the x axis.
        points: for a grid study, each run's grid values ({run: {key: value}}); styles follow them.
        title: the study's title.
        path: the PNG to write.

    Returns:
        `path`.
    """
    fig = new_figure(9, 4.5)
    ax = fig.add_subplot()
    for i, curve in enumerate(curves):
        color, style, label = _line_style(i, curve.run, points)
        ax.plot(tiou, curve.mean, marker="o", color=color, linestyle=style, label=plain_text(label))
        ax.fill_between(tiou, curve.mean - curve.std, curve.mean + curve.std, alpha=0.15, color=color)
    ax.set(xlabel="tIoU", ylabel="mAP (%)", title=plain_text(f"{title}\nmAP over seeds (mean, shaded ± std)"))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


def _line_style(index: int, label: str, points: dict[str, dict[str, str]]) -> tuple[Any, str, str]:
    """Colour, line style and legend text of one run's curve: for a two-key grid, one colour per
    value of the first key and one style per value of the second (solid for its last value,
    e.g. completeness on), the legend naming the values only; else one colour per run."""
    from matplotlib import colormaps

    palette = colormaps["tab10"]
    keys = list(next(iter(points.values()), {}))
    if len(keys) != 2 or label not in points:
        return palette(index % 10), "-", label
    firsts = list(dict.fromkeys(p[keys[0]] for p in points.values()))
    seconds = list(dict.fromkeys(p[keys[1]] for p in points.values()))
    point = points[label]
    styles = ["--", ":", "-."]
    rank = seconds.index(point[keys[1]])
    style = "-" if rank == len(seconds) - 1 else styles[rank % len(styles)]
    short = keys[1].rsplit(".", 1)[-1]
    return palette(firsts.index(point[keys[0]]) % 10), style, f"{point[keys[0]]}, {short}={point[keys[1]]}"
