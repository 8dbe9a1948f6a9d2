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
`project`, the name and version of the project that trained it (`core.version`), and `kind`
("lacp": `stages.artifacts.model_kind` tells it from the self-trained detector's folders). With them
`pipeline.detect` remakes the features of a new video exactly as the training's were made.

A model folder may come from anywhere (`python -m pipeline detect --model DIR`), so its sizes are
bounded (`LIMITS`: far above any real LACP model's, far below what would exhaust a machine) and
its detection record is checked key by key before anything is built from them; `load_model`
compares model.pt's tensors with the shapes model.json describes before it allocates the network.
"""

from __future__ import annotations

import io
import json
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ValidationError

from core.files import write_bytes_atomic
from core.version import PROJECT, project_version
from lacp.model import LACPNet
from lacp.proposals import DetectionConfig

MODEL_KIND = "lacp"  # model.json's `kind` (the selftrain stage's folders say "detector", `detector.model_io`)

# The largest size each model.json key may declare: (limit, what it counts). A real model is far
# below each (THUMOS'14: 2048 features and embeddings, every snippet; ActivityNet: 200 classes,
# 50 to 750 snippets), and none of them allocates more than a few GiB.
LIMITS: dict[str, tuple[int, str]] = {
    "feature_dim": (8192, "feature channels"),
    "embed_dim": (8192, "embedding channels"),
    "num_segments": (10_000, "snippets"),
    "classes": (1000, "class names"),
}


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
    _check_size(num_segments, key="num_segments", where="save_model: num_segments")
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    meta = {
        "kind": MODEL_KIND,
        "classes": list(classes),
        "feature_dim": feature_dim,
        "embed_dim": embed_dim,
        "dropout": dropout,
        "selection": selection,
        "num_segments": num_segments,
        "features": dict(features or {}),
        "detection": (detection or DetectionConfig()).model_dump(),
        "project": {"name": PROJECT, "version": project_version()},
    }
    weights = io.BytesIO()
    torch.save(state_dict, weights)
    write_bytes_atomic(
        model_dir / "model.pt", weights.getvalue(), fsync=True
    )  # on disk before model.json vouches for it
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
        ValueError: not a JSON object; a size that is not a whole number within `LIMITS`
            (`num_segments` may be 0: every snippet); class names that are not strings, or more
            of them than `LIMITS` allows; a dropout outside [0, 1); a `detection` setting
            `DetectionConfig` does not have, or one of the wrong kind. Each names the file, the
            key and what was expected.
    """
    path = Path(model_dir) / "model.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (run the train stage first)")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not JSON ({err}); the train stage writes it: retrain the model") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: expected a JSON object (the train stage writes it), got {type(meta).__name__}")
    if meta.setdefault("kind", MODEL_KIND) != MODEL_KIND:
        raise ValueError(
            f"{path}: key 'kind' is {meta['kind']!r}, not {MODEL_KIND!r}: not an LACP model folder "
            "(a self-trained detector's is read by detector.model_io)"
        )
    meta.setdefault("num_segments", 0)
    for record in ("features", "detection", "project"):
        if not isinstance(meta.setdefault(record, {}), dict):
            raise ValueError(f"{path} key '{record}': expected an object, got {meta[record]!r:.200}")
    for key in ("feature_dim", "embed_dim", "num_segments"):
        if key not in meta:
            raise ValueError(f"{path}: no key '{key}' (the train stage writes it): retrain the model")
        _check_size(meta[key], key=key, where=f"{path} key '{key}'")
    classes = meta.get("classes")
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise ValueError(f"{path} key 'classes': expected a list of class names, got {classes!r:.200}")
    _check_size(len(classes), key="classes", where=f"{path} key 'classes' (its length)")
    dropout = meta.get("dropout")
    if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0 <= dropout < 1:
        raise ValueError(f"{path} key 'dropout': expected a probability >= 0 and < 1, got {dropout!r}")
    _check_detection(meta["detection"], where=f"{path} key 'detection'")
    return meta


def _check_size(value: object, *, key: str, where: str) -> None:
    """A whole number from 0 (`num_segments`: every snippet) or 1 to `LIMITS[key]`, else a ValueError
    naming `where` and the limit."""
    limit, unit = LIMITS[key]
    low = 0 if key == "num_segments" else 1
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= limit:
        note = " (0 = every snippet)" if key == "num_segments" else ""
        raise ValueError(f"{where}: expected a whole number of {unit} >= {low} and <= {limit}{note}, got {value!r}")


def _check_detection(record: Mapping[str, Any], *, where: str) -> None:
    """model.json's `detection`: some of `DetectionConfig`'s keys, each of its type and range
    (strictly: no "yes" for true), else a ValueError naming the key."""
    known = DetectionConfig.model_fields
    unknown = sorted(set(record) - set(known))
    if unknown:
        raise ValueError(
            f"{where}: unknown setting(s) {unknown}; a model folder records some of {sorted(known)} "
            "(lacp.proposals.DetectionConfig): the file was edited or written by another program"
        )
    try:
        DetectionConfig.model_validate(record, strict=True)
    except ValidationError as err:
        first = err.errors()[0]
        raise ValueError(f"{where} '{first['loc'][0]}': {first['msg']}, got {first['input']!r}") from None


def check_recorded_settings(recorded: BaseModel, given: BaseModel, *, where: Path, section: str, writer: str) -> None:
    """Refuse settings that differ from the ones a model folder records.

    A model folder records the detection settings it was made with (train: LACP's, selftrain:
    the detector's post-processing), and `python -m pipeline detect` applies that record; a stage
    that applies the params' section to the folder must therefore find the same values there.

    Args:
        recorded: the folder's record (`DetectionConfig`, `detector.config.InferenceConfig`).
        given: the params' section of the same type.
        where: the model.json read (named in the error).
        section: the params key of the section ("detection", "detection.detector").
        writer: the stage that writes the record (named in the fix).

    Raises:
        ValueError: naming each differing key with both values.
    """
    differing = [k for k in type(given).model_fields if getattr(recorded, k) != getattr(given, k)]
    if differing:
        values = "; ".join(
            f"{section}.{k} is {getattr(recorded, k)!r} there, {getattr(given, k)!r} in the params" for k in differing
        )
        raise ValueError(
            f"{where} records other detection settings than the params: {values}. The {writer} stage "
            f"records the section it ran with (`dvc repro` reruns it after a change); rerun it, or set "
            f"the params back to the record"
        )


def read_checked_meta(model_dir: Path, detection: DetectionConfig) -> dict[str, Any]:
    """An LACP folder's model.json, after refusing it when its recorded detection settings differ
    from `detection` (`check_recorded_settings`: the stages that apply the params' section).

    Args:
        model_dir: an LACP model folder (train's, or the copy a detector folder fuses with).
        detection: the params' detection section, LACP's keys.

    Returns:
        The record (`read_model_meta`).
    """
    meta = read_model_meta(model_dir)
    check_recorded_settings(
        DetectionConfig(**meta["detection"]),
        detection,
        where=Path(model_dir) / "model.json",
        section="detection",
        writer="train",
    )
    return meta


def load_model(model_dir: Path, *, device: torch.device | str = "cpu") -> LACPNet:
    """Rebuild the network from model.json and load model.pt (weights only), in eval mode.

    model.pt is read first and its tensors' shapes are compared with the ones model.json's sizes
    give (a network on the meta device: no memory), so the network is allocated only for weights
    that exist and fit it.

    Raises:
        FileNotFoundError: the folder lacks model.pt or model.json.
        ValueError: model.json is refused by `read_model_meta`; model.pt is not a readable
            tensor-only state_dict (truncated, or a pickle that would run code: refused by
            `torch.load(weights_only=True)`), or its weights do not fit the network described by
            model.json (the first key that differs, with both shapes).
    """
    model_dir = Path(model_dir)
    meta = read_model_meta(model_dir)
    weights = model_dir / "model.pt"
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} not found (run the train stage first)")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as err:
        raise ValueError(
            f"{weights}: cannot be loaded as a tensor-only state_dict "
            f"(torch.load with weights_only=True: {_first_reason(err)})"
        ) from None
    sizes = {"num_classes": len(meta["classes"]), "feature_dim": meta["feature_dim"], "embed_dim": meta["embed_dim"]}
    with torch.device("meta"):
        described = {k: tuple(v.shape) for k, v in LACPNet(**sizes).state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()} if isinstance(state, dict) else {}
    for key in sorted(set(described) | set(found)):
        if described.get(key) != found.get(key):
            raise ValueError(
                f"{weights} does not match {model_dir / 'model.json'} ({sizes}): '{key}' is "
                f"{found.get(key, 'absent')} in model.pt, model.json's sizes give "
                f"{described.get(key, 'no such key')}"
            )
    model = LACPNet(**sizes, dropout=meta["dropout"])
    model.load_state_dict(state)
    return model.to(device).eval()


def _first_reason(err: Exception) -> str:
    """What torch.load refused (e.g. 'unsupported GLOBAL posix.system'), without its advice to
    turn the check off."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    useful = [
        line
        for line in lines
        if not line.startswith(("Weights only load failed", "Please file an issue", "Check the documentation"))
    ]
    return (useful or lines or [type(err).__name__])[0]
