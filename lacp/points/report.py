"""What a point set looks like: relative positions, statistics, and the histogram picture."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.files import write_bytes_atomic
from lacp.plots.points import plot_relative_positions
from lacp.points.formats import Point
from lacp.points.sampling import PointSet

__all__ = ["point_report", "point_stats", "relative_positions"]


def relative_positions(points: Sequence[Point]) -> np.ndarray:
    """(point - start) / (stop - start) of each point; 0..1 inside the instance. Returns (N,)."""
    p = np.array([(x.point, x.start_frame, x.stop_frame) for x in points], dtype=np.float64).reshape(-1, 3)
    return (p[:, 0] - p[:, 1]) / (p[:, 2] - p[:, 1])


def point_stats(points: PointSet | Sequence[Point], annotations: Mapping[str, Any]) -> dict[str, Any]:
    """Statistics of a point set: relative position, share inside, coverage of the instances.

    Args:
        points: a `PointSet` (its summary adds dropped / skipped counts) or plain rows.
        annotations: the annotations dict the points label.

    Returns:
        JSON-ready dict: count, videos, train_instances, coverage, relative_position
        (mean, std, median, min, max; None when empty), inside_share, and from a `PointSet`
        distribution, dropped, skipped_short, unlabelled, overlapping.
    """
    rows = list(points)
    rel = relative_positions(rows)
    n_train = sum(len(e.get("annotations", [])) for e in annotations["database"].values() if e.get("subset") == "train")

    def stat(fn) -> float | None:
        return float(fn(rel)) if len(rel) else None

    stats: dict[str, Any] = {
        "count": len(rows),
        "videos": len({p.video_id for p in rows}),
        "train_instances": n_train,
        "coverage": len(rows) / n_train if n_train else None,
        "relative_position": {
            "mean": stat(np.mean),
            "std": stat(np.std),
            "median": stat(np.median),
            "min": stat(np.min),
            "max": stat(np.max),
        },
        "inside_share": stat(lambda r: ((r >= 0) & (r <= 1)).mean()),
    }
    if isinstance(points, PointSet):
        s = points.summary
        stats.update(
            distribution=s.distribution,
            dropped=s.dropped,
            skipped_short=s.skipped_short,
            unlabelled=s.unlabelled,
            overlapping=s.overlapping,
        )
    return stats


def point_report(
    points: PointSet | Sequence[Point],
    annotations: Mapping[str, Any],
    png_path: str | Path,
    json_path: str | Path,
) -> dict[str, Any]:
    """Write the relative-position histogram (PNG) and the statistics (JSON), atomically.

    The histogram shows (point - start) / (stop - start) over [-0.5, 1.5]; points beyond are
    drawn in the edge bins and counted in the legend. The instance itself is shaded.

    Args:
        points: a `PointSet` or plain rows.
        annotations: the annotations dict the points label.
        png_path: histogram image to write.
        json_path: statistics to write (see `point_stats`).

    Returns:
        The statistics written to `json_path`.
    """
    stats = point_stats(points, annotations)
    plot_relative_positions(relative_positions(list(points)), title=stats.get("distribution", "points"), path=png_path)
    write_bytes_atomic(json_path, (json.dumps(stats, indent=2, sort_keys=True) + "\n").encode())
    return stats
