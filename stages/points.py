"""points stage: annotations -> `points.csv` (one point per training instance) + a report.

The distribution is the study knob: `dvc exp run -S points.distribution=uniform` reruns
this stage and the ones after it, nothing before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from lacp.points.formats import write_points_csv
from lacp.points.report import point_report
from lacp.points.sampling import SAMPLING, sample_points
from stages.common import StageParams
from stages.artifacts import read_annotations


class PointsParams(StageParams):
    # Defaults are the sampler's own (lacp.points.sampling.SAMPLING), so the two cannot drift apart.
    distribution: Literal["center", "gaussian", "uniform", "beta", "manual", "file"] = SAMPLING.distribution
    seed: int = SAMPLING.seed
    sigma: float = Field(SAMPLING.sigma, ge=0, le=1)
    beta_a: float = Field(SAMPLING.beta_a, gt=0)
    beta_b: float = Field(SAMPLING.beta_b, gt=0)
    manual_files: list[str] = []
    annotator: Literal["random"] | int = SAMPLING.annotator
    manual_jitter_s: float = Field(SAMPLING.manual_jitter_s, ge=0)
    file: str = ""
    drop_rate: float = Field(SAMPLING.drop_rate, ge=0, lt=1)
    offset_std: float = Field(SAMPLING.offset_std, ge=0)
    min_instance_frames: int = Field(SAMPLING.min_instance_frames, ge=0)

    @model_validator(mode="after")
    def _file_given(self) -> "PointsParams":
        if self.distribution == "file" and not self.file:
            raise ValueError("distribution 'file' needs points.file (a points csv in the LACP format)")
        return self


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
    points = sample_points(
        annotations,
        distribution=params.distribution,
        seed=params.seed,
        sigma=params.sigma,
        beta_a=params.beta_a,
        beta_b=params.beta_b,
        drop_rate=params.drop_rate,
        offset_std=params.offset_std,
        min_instance_frames=params.min_instance_frames,
        manual_files=params.manual_files or None,
        annotator=params.annotator,
        manual_jitter_s=params.manual_jitter_s,
        points_file=params.file or None,
    )
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
