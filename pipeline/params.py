"""The params schema: `params.yaml` validated into one typed object.

Each stage owns the model of its own section (`stages/<stage>.py`); this module adds the
orchestration sections (`paths`, `pipeline`, `detect`) and `detection`, the section shared by
every stage that makes detections (`DetectionParams`: the library configs themselves), and
composes them. Validation errors name the key path and what was expected, e.g.
``decode.preset: Input should be 'ultrafast', ...``; a key of an older params file that moved
(`MOVED_KEYS`) is named with its new place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from detector.config import InferenceConfig
from lacp.proposals import DetectionConfig
from stages.analyze import AnalyzeParams
from stages.common import StageParams
from stages.decode import DecodeParams
from stages.evaluate import EvaluateParams
from stages.extract import ExtractParams
from stages.flow import FlowParams
from stages.points import PointsParams
from stages.prepare import DatasetParams
from stages.pseudo import PseudoParams
from stages.selftrain import SelftrainParams
from stages.train import TrainParams
from stages.weights import WeightsParams


class PathsParams(StageParams):
    """Where each artifact lives (dvc.yaml interpolates these same values)."""

    dataset: Path
    decoded: Path
    flow: Path
    weights: Path
    features: Path
    points: Path
    points_report: Path
    model: Path
    train_log: Path
    pseudo_labels: Path
    evaluation: Path
    analysis: Path
    pseudo: Path
    pseudo_report: Path
    selftrain_model: Path
    selftrain_log: Path
    selftrain_evaluation: Path


class PipelineParams(StageParams):
    """How per-video tasks execute; never changes any result."""

    task_runner: Literal["threads", "dask"] = "threads"
    max_workers: int = 2
    dask_address: str = ""
    retries: int = 1


class DetectionParams(DetectionConfig):
    """How scores become detections, for every stage and command that makes them: LACP's keys
    (`lacp.proposals.DetectionConfig`'s fields: train trains with `r_act` and records the section in
    the model folder; evaluate, analyze and pseudo apply it) and `detector`, the self-trained
    detector's post-processing (`detector.config.InferenceConfig`: selftrain records it,
    evaluate_selftrain applies it); `python -m pipeline detect` applies a folder's record, its
    flags overriding each key."""

    detector: InferenceConfig = Field(default_factory=InferenceConfig)

    def lacp(self) -> DetectionConfig:
        """LACP's settings alone (the section but `detector`)."""
        return DetectionConfig(**self.model_dump(exclude={"detector"}))


MOVED_KEYS = {
    "train.r_act": "detection.r_act",
    **{f"evaluate.{key}": f"detection.{key}" for key in ("r_act", "class_threshold", "nms_tiou", "faithful")},
    **{f"analyze.{key}": f"detection.{key}" for key in ("r_act", "class_threshold", "faithful")},
    "selftrain.inference": "detection.detector",
}
"""Keys an older params file may hold -> where they live now (`load_params` names the move)."""


class DetectParams(StageParams):
    """What `python -m pipeline detect` applies when no --model is given (no stage reads it)."""

    model: Literal["lacp", "selftrain"] = "selftrain"

    def model_dir(self, paths: PathsParams) -> Path:
        """The chosen model folder: train's (`paths.model`) or selftrain's (`paths.selftrain_model`)."""
        return paths.model if self.model == "lacp" else paths.selftrain_model


class Params(StageParams):
    """All of params.yaml."""

    paths: PathsParams
    pipeline: PipelineParams
    dataset: DatasetParams
    decode: DecodeParams
    flow: FlowParams
    weights: WeightsParams
    extract: ExtractParams
    points: PointsParams
    train: TrainParams
    evaluate: EvaluateParams
    analyze: AnalyzeParams
    pseudo: PseudoParams
    selftrain: SelftrainParams
    detection: DetectionParams
    detect: DetectParams

    @model_validator(mode="after")
    def _cross_section_settings_fit(self) -> Params:
        # Refused here, before selftrain trains a folder that evaluate_selftrain could not apply.
        needing = self.detection.detector.settings_needing_lacp()
        if needing and self.selftrain.video_scores == "none":
            raise ValueError(
                f"detection.detector {', '.join(needing)} need selftrain.video_scores: lacp (they apply the"
                " LACP model copied into the detector's folder); set it, or set lacp_proposals: false and"
                " own_class_weight: 1"
            )
        # Refused here, before train runs a model whose pseudo stage would then find no searches.
        if not self.train.completeness and self.pseudo.source == "search":
            raise ValueError(
                "pseudo.source: search needs train.completeness: true (the point-only baseline runs no"
                " search to take pseudo instances from); set pseudo.source: proposals or ground_truth"
            )
        return self


class ParamsError(ValueError):
    """params.yaml is missing, not YAML, or does not match the schema."""


def _format_errors(path: Path, err: ValidationError) -> str:
    lines = [f"{path}: {err.error_count()} invalid value(s)"]
    for e in err.errors():
        key = ".".join(str(part) for part in e["loc"])
        if not key:  # a check across sections names its keys itself
            lines.append(f"  {e['msg']}")
        elif e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key (check the spelling against params.yaml's comments)")
        else:
            lines.append(f"  {key}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def load_params(path: Path | str = "params.yaml", overrides: dict | None = None) -> Params:
    """Read and validate params.yaml.

    Args:
        path: the YAML file.
        overrides: nested dict merged over the file's content (tests, studies).

    Returns:
        The validated `Params`.

    Raises:
        ParamsError: naming the file and each bad key with what was expected.
    """
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ParamsError(f"{path} is not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of sections at the top level")
    if overrides:
        raw = merge(raw, overrides)
    moved = [
        f"  {old}: moved to {new} (one detection section, read by every stage and command that makes detections)"
        for old, new in MOVED_KEYS.items()
        if _holds(raw, old)
    ]
    if moved:
        raise ParamsError("\n".join([f"{path}: {len(moved)} key(s) in their old place", *moved]))
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ParamsError(_format_errors(path, err)) from None


def _holds(raw: dict, key: str) -> bool:
    """Whether the params mapping `raw` holds the dotted `key` (section.name)."""
    section, name = key.split(".")
    return isinstance(raw.get(section), dict) and name in raw[section]


def merge(base: dict, over: dict) -> dict:
    """Recursively merge `over` into a copy of `base`."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out
