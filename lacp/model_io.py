"""Saving and loading a trained LACP model: weights plus the settings to rebuild it.

`model.pt` holds only tensors (read with `torch.load(weights_only=True)`: loading runs no
code); `model.json` holds the class names, the network sizes, how the weights were selected
and `num_segments`: 0 when the network was trained on every snippet, N > 0 when it was trained
on sequences resampled to N snippets (`train.num_segments`), in which case inference resamples
each video to N snippets too (`lacp.inference.predict`). `read_model_meta` is the one reader of
the model folder's description (a folder written before `num_segments` existed reads as 0).

A model folder is self-contained: model.json also records `features`, the feature store's
attributes that the network's input depends on (time grid, decode and flow settings, crop,
frame_step, precision, the I3D weights' SHA-256: `stages.extract.store_attrs`), `detection`,
the settings that turn its scores into detections (`lacp.proposals.DetectionConfig`), and
`project`, the name and version of the project that trained it (`core.version`). With them
`pipeline.detect` remakes the features of a new video exactly as the training's were made.
"""

from __future__ import annotations

import dataclasses
import io
import json
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from core.files import write_bytes_atomic
from core.version import PROJECT, project_version
from lacp.model import LACPNet
from lacp.proposals import DetectionConfig


def save_model(
    model_dir: Path,
    state_dict: dict[str, torch.Tensor],
    *,
    classes: list[str],
    feature_dim: int,
    embed_dim: int,
    dropout: float,
    selection: str = "final step",
    num_segments: int = 0,
    features: Mapping[str, Any] | None = None,
    detection: DetectionConfig | None = None,
) -> None:
    """Write model.pt and model.json atomically (temp name, then rename).

    Args:
        selection: how these weights were chosen ("final step", or the released recipe's
            "best on test (...)" protocol), carried into the metrics as a label.
        num_segments: the training sequences' length (0 = every snippet; N > 0 = N snippets
            per video), which inference must use too.
        features: `feature_record` of the store the model was trained on (module docstring);
            None (a model trained outside the pipeline) leaves the record empty, and
            `pipeline.detect` then refuses the folder.
        detection: the detection settings recorded for `pipeline.detect` (default:
            `DetectionConfig()`).
    """
    _check_num_segments(num_segments, where="save_model: num_segments")
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    meta = {
        "classes": list(classes),
        "feature_dim": feature_dim,
        "embed_dim": embed_dim,
        "dropout": dropout,
        "selection": selection,
        "num_segments": num_segments,
        "features": dict(features or {}),
        "detection": dataclasses.asdict(detection or DetectionConfig()),
        "project": {"name": PROJECT, "version": project_version()},
    }
    weights = io.BytesIO()
    torch.save(state_dict, weights)
    write_bytes_atomic(model_dir / "model.pt", weights.getvalue())
    write_bytes_atomic(model_dir / "model.json", (json.dumps(meta, indent=2) + "\n").encode())


def feature_record(store_attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The feature store's attrs as model.json's `features` records them: every one that says how
    the features were made, i.e. all but `excluded_videos` (which names the training set's
    failures, not a setting)."""
    return {k: v for k, v in store_attrs.items() if k != "excluded_videos"}


def read_model_meta(model_dir: Path) -> dict:
    """model.json: class names, network sizes, how the weights were selected, `num_segments`,
    and the `features`, `detection` and `project` records (module docstring).

    Returns:
        The description; `num_segments` is 0 and the records are empty when the file predates them.

    Raises:
        FileNotFoundError: no model.json.
        ValueError: `num_segments` is not a whole number >= 0.
    """
    path = Path(model_dir) / "model.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (run the train stage first)")
    meta = json.loads(path.read_text())
    meta.setdefault("num_segments", 0)
    for record in ("features", "detection", "project"):
        meta.setdefault(record, {})
    _check_num_segments(meta["num_segments"], where=f"{path} key 'num_segments'")
    return meta


def _check_num_segments(value: object, *, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{where}: expected a whole number of snippets >= 0 (0 = every snippet), got {value!r}")


def load_model(model_dir: Path, *, device: torch.device | str = "cpu") -> LACPNet:
    """Rebuild the network from model.json and load model.pt (weights only), in eval mode.

    Raises:
        FileNotFoundError: the folder lacks model.pt or model.json.
        ValueError: model.pt is not a readable tensor-only state_dict (truncated, or a pickle
            that would run code: refused by `torch.load(weights_only=True)`), or its weights do
            not fit the network described by model.json.
    """
    model_dir = Path(model_dir)
    meta = read_model_meta(model_dir)
    if not (model_dir / "model.pt").is_file():
        raise FileNotFoundError(f"{model_dir / 'model.pt'} not found (run the train stage first)")
    model = LACPNet(num_classes=len(meta["classes"]), feature_dim=meta["feature_dim"], embed_dim=meta["embed_dim"], dropout=meta["dropout"])
    try:
        state = torch.load(model_dir / "model.pt", map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as err:
        raise ValueError(f"{model_dir / 'model.pt'}: cannot be loaded as a tensor-only state_dict "
                         f"(torch.load with weights_only=True: {_first_reason(err)})") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"{model_dir / 'model.pt'} does not match {model_dir / 'model.json'}: {err}") from None
    return model.to(device).eval()


def _first_reason(err: Exception) -> str:
    """What torch.load refused (e.g. 'unsupported GLOBAL posix.system'), without its advice to
    turn the check off."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("Weights only load failed", "Please file an issue", "Check the documentation"))]
    return (useful or lines or [type(err).__name__])[0]
