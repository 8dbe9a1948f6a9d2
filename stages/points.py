"""points stage: annotations -> `points.csv` (one point per training instance) + a report.

The distribution is the study knob: `dvc exp run -S points.distribution=uniform` reruns
this stage and the ones after it, nothing before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lacp.points.formats import write_points_csv
from lacp.points.report import point_report
from lacp.points.sampling import Sampling, sample_points
from stages.artifacts import read_annotations
from stages.common import StageParams


class PointsParams(StageParams, Sampling):
    """The `points` section: the sampler's settings (`lacp.points.sampling.Sampling`: every key's type,
    default and check)."""


def run(params: PointsParams, *, dataset_dir: Path, out_dir: Path, report_dir: Path) -> dict[str, Any]:
    """Sample the points and write `points.csv`, `report.json` and `relative_position.png`.

    Args:
        params: the `points` params section.
        dataset_dir: prepare's output (annotations.json).
        out_dir: the points folder (points.csv).
        report_dir: where report.json and relative_position.png go.

    Returns:
        Summary: counts and the relative-position statistics.
    """
    out_dir = Path(out_dir)
    annotations = read_annotations(dataset_dir)
    points = sample_points(annotations, Sampling(**params.model_dump()))
    write_points_csv(points, out_dir / "points.csv")
    report_dir = Path(report_dir)
    stats = point_report(points, annotations, report_dir / "relative_position.png", report_dir / "report.json")
    rel = stats["relative_position"]
    return {
        "distribution": params.distribution,
        "points": stats["count"],
        "relative_position_mean": rel["mean"],
        "relative_position_std": rel["std"],
        "inside_share": stats["inside_share"],
    }
