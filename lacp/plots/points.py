"""Where the points fall in their instances: the relative-position histogram."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lacp.plots.canvas import new_figure, plain_text, save_figure

__all__ = ["plot_relative_positions"]


def plot_relative_positions(rel: np.ndarray, *, title: str, path: str | Path) -> Path:
    """Histogram of (point - start) / (stop - start) over [-0.5, 1.5], the instance shaded; points
    beyond the axis are drawn in the edge bins and counted in the legend.

    Args:
        rel: (N,) relative position of each point in its instance.
        title: what the points are (their distribution's name).
        path: the PNG to write.

    Returns:
        `path`.
    """
    lo, hi = -0.5, 1.5
    beyond = int(((rel < lo) | (rel > hi)).sum())
    fig = new_figure(6, 3.5)
    ax = fig.add_subplot()
    ax.axvspan(0, 1, color="0.9", label="instance")
    ax.hist(
        np.clip(rel, lo, hi),
        bins=80,
        range=(lo, hi),
        color="tab:blue",
        label=f"{len(rel)} points" + (f" ({beyond} beyond the axis, in the edge bins)" if beyond else ""),
    )
    if len(rel):
        ax.axvline(float(np.mean(rel)), color="tab:red", lw=1, label=f"mean {np.mean(rel):.3f}, std {np.std(rel):.3f}")
    ax.set_title(plain_text(f"{title}: relative position in the instance"))
    ax.set_xlabel("(point - start) / (stop - start)")
    ax.set_ylabel("points")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return save_figure(fig, path, metadata={"Software": None})
