"""How every picture of the project is drawn: matplotlib's object API on an Agg canvas created
inside each function (no pyplot, no global backend switch, safe in worker threads), written
atomically (a temporary PNG in the target folder, then renamed into place), with text from the
data (class names, video ids, run names, titles) through `plain_text`, so it is drawn as written.
Classes keep one colour in every picture (`class_color`).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from core.files import write_bytes_atomic

__all__ = ["CURVE_NAMES", "class_color", "new_figure", "plain_text", "save_figure"]

# What a model kind's score curves are called in every picture (`stages.predictors` keeps them):
# the class's curve, then 1 - background. A detector has no class activation: its curves are how
# strongly its detections cover each snippet.
CURVE_NAMES = {
    "lacp": ("class activation", "actionness"),
    "detector": ("detection coverage", "detection coverage, any class"),
}


def plain_text(text: str) -> str:
    """`text` as matplotlib draws it literally: every `$` escaped, so that a class named
    `$x^$` or `a $\\foo$ b` is not read as mathtext (which fails to parse, or draws other text).

    Args:
        text: a label from the data (class name, video id, run name, title).

    Returns:
        The text to hand to matplotlib.
    """
    return str(text).replace("$", r"\$")


def new_figure(width: float, height: float, *, dpi: float = 100):
    """A matplotlib Figure attached to an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure, path: str | Path, **savefig: Any) -> Path:
    """Writes the figure as PNG via a temporary file and an atomic rename.

    Args:
        figure: a figure from `new_figure`.
        path: the PNG to write.
        **savefig: extra `Figure.savefig` options (dpi, metadata).

    Returns:
        `path`.
    """
    path = Path(path)
    png = io.BytesIO()
    figure.savefig(png, format="png", **savefig)
    write_bytes_atomic(path, png.getvalue())
    return path


def class_color(index: int) -> tuple[float, float, float, float]:
    """The colour of class `index` in every analysis picture."""
    from matplotlib import colormaps

    if index < 10:
        return colormaps["tab10"](index)
    return colormaps["tab20"]((index - 10) % 20)
