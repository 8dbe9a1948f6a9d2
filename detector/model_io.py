"""The self-trained detector's model folder: model.pt, model.json (kind "detector").

model.json records what evaluation and `python -m pipeline detect` need to rebuild and apply the
network without any params file: `kind` ("detector"; LACP's folders say "lacp",
`lacp.model_io`), `classes`, `config` (`DetectorConfig`), `inference` (`InferenceConfig`: how
outputs become detections), `features` (the feature store's record, `lacp.model_io.feature_record`),
`pseudo_source` (which instances it was trained on), `weights` (EMA or final step),
`video_scores` ("lacp": scores fused with the video-level scores of the LACP model copied into
`VIDEO_SCORER/`; "none") and `project`.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from core.files import atomic_path, write_json
from core.version import PROJECT, project_version
from detector.config import DetectorConfig, InferenceConfig

__all__ = ["DETECTOR_KIND", "VIDEO_SCORER", "load_detector_weights", "read_detector_meta", "save_detector"]

DETECTOR_KIND = "detector"  # model.json's `kind` for this package's folders
VIDEO_SCORER = "lacp"  # the subfolder holding the LACP model whose video scores the detections are fused with

# The largest value each size in model.json's `config` may declare, checked before the network is
# built (a folder may come from anywhere: `python -m pipeline detect --model DIR`). A real detector
# is far below each (ActionFormer on THUMOS'14: 2048 features, D 512, 6 levels, window 19).
LIMITS: dict[str, int] = {
    "feature_dim": 8192,
    "embed_dim": 4096,
    "num_heads": 64,
    "window": 4097,
    "stem_blocks": 32,
    "num_levels": 16,
    "mlp_ratio": 16,
    "head_layers": 16,
}
MAX_CLASSES = 1000


def save_detector(
    model_dir: Path,
    state_dict: Mapping[str, torch.Tensor],
    *,
    classes: list[str],
    config: DetectorConfig,
    inference: InferenceConfig,
    features: Mapping[str, Any],
    pseudo_source: str,
    weights: str,
    video_scores: str = "none",
) -> None:
    """Write model.pt (fsynced before model.json names it) and model.json atomically.

    Args:
        model_dir: the folder.
        state_dict: the trained weights.
        classes: class names, in the order of the classification outputs.
        config: the network and training settings.
        inference: the detection settings evaluation and `detect` apply.
        features: the feature store's record (what `detect` remakes new videos' features with).
        pseudo_source: the instances' source (the pseudo stage's `source`).
        weights: which weights these are ("ema (decay d)" or "final step").
        video_scores: "lacp" (class probabilities fused with the video-level scores of the LACP
            model in `VIDEO_SCORER/`, `InferenceConfig.own_class_weight`) or "none".
    """
    model_dir = Path(model_dir)
    buffer = io.BytesIO()
    torch.save(dict(state_dict), buffer)
    with atomic_path(model_dir / "model.pt", fsync=True) as tmp:
        tmp.write_bytes(buffer.getvalue())
    write_json(
        model_dir / "model.json",
        {
            "kind": DETECTOR_KIND,
            "classes": list(classes),
            "config": config.model_dump(),
            "inference": inference.model_dump(),
            "features": dict(features),
            "pseudo_source": pseudo_source,
            "weights": weights,
            "video_scores": video_scores,
            "project": {"name": PROJECT, "version": project_version()},
        },
    )


def read_detector_meta(model_dir: Path) -> tuple[dict[str, Any], DetectorConfig, InferenceConfig]:
    """model.json of a detector folder and its two configs, validated.

    Raises:
        FileNotFoundError: no model.json.
        ValueError: not a detector folder, a size above its `LIMITS` entry, or a config key or
            value it cannot take (each named with the file).
    """
    path = Path(model_dir) / "model.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (run the selftrain stage first)")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not JSON ({err}); the selftrain stage writes it: rerun it") from None
    if not isinstance(meta, dict) or meta.get("kind") != DETECTOR_KIND:
        raise ValueError(f"{path}: not a self-trained detector's model.json (expected kind {DETECTOR_KIND!r})")
    if meta.setdefault("video_scores", "none") not in ("lacp", "none"):
        raise ValueError(f"{path} key 'video_scores': expected 'lacp' or 'none', got {meta['video_scores']!r:.100}")
    classes = meta.get("classes")
    if not (isinstance(classes, list) and 0 < len(classes) <= MAX_CLASSES and all(isinstance(c, str) for c in classes)):
        raise ValueError(f"{path} key 'classes': expected a list of 1 to {MAX_CLASSES} class names")
    for key, limit in LIMITS.items():
        value = meta.get("config", {}).get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value > limit:
            raise ValueError(
                f"{path} key 'config.{key}': expected a whole number of at most {limit}, got {value!r:.100}"
            )
    configs = []
    for key, cls, known in (
        ("config", DetectorConfig, set(DetectorConfig.model_fields)),
        ("inference", InferenceConfig, set(InferenceConfig.model_fields)),
    ):
        unknown = sorted(set(meta.get(key, {})) - known)
        if unknown:
            raise ValueError(f"{path}: unknown key(s) {unknown} in '{key}' (expected some of {sorted(known)})")
        try:
            configs.append(cls(**meta.get(key, {})))
        except ValidationError as err:  # InferenceConfig: the first refused value, by its key
            first = err.errors()[0]
            raise ValueError(
                f"{path} key '{key}.{first['loc'][0]}': {first['msg']}, got {first['input']!r:.100}"
            ) from None
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path} key '{key}': {err}") from None
    return meta, configs[0], configs[1]


def load_detector_weights(model_dir: Path) -> dict[str, torch.Tensor]:
    """model.pt of a detector folder (tensors only: `weights_only`)."""
    path = Path(model_dir) / "model.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (run the selftrain stage first)")
    return torch.load(path, map_location="cpu", weights_only=True)
