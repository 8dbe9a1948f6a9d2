"""detector.model_io: the self-trained detector's folder round-trips; hostile model.json values are refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from detector.config import DetectorConfig, InferenceConfig
from detector.model import DetectorNet
from detector.model_io import LIMITS, load_detector_weights, read_detector_meta, save_detector
from stages.artifacts import model_kind

SMALL = DetectorConfig(feature_dim=8, embed_dim=8, num_heads=2, window=3, num_levels=2, steps=1, device="cpu")


def _saved(folder: Path) -> Path:
    net = DetectorNet(config=SMALL, num_classes=2)
    save_detector(
        folder,
        net.state_dict(),
        classes=["a", "b"],
        config=SMALL,
        inference=InferenceConfig(nms_sigma=0.3),
        features={"fps": 25},
        pseudo_source="proposals",
        weights="final step",
    )
    return folder


def test_a_saved_folder_reads_back_with_its_configs_and_weights(tmp_path: Path) -> None:
    folder = _saved(tmp_path / "m")
    meta, config, inference = read_detector_meta(folder)
    assert (meta["kind"], meta["classes"], meta["pseudo_source"]) == ("detector", ["a", "b"], "proposals")
    assert config == SMALL and inference == InferenceConfig(nms_sigma=0.3)
    assert model_kind(folder) == "detector"
    weights = load_detector_weights(folder)
    reference = DetectorNet(config=SMALL, num_classes=2).state_dict()
    assert weights.keys() == reference.keys()


def _edit(folder: Path, **changes) -> None:
    path = folder / "model.json"
    meta = json.loads(path.read_text())
    for dotted, value in changes.items():
        section, _, key = dotted.partition("__")
        if key:
            meta[section][key] = value
        else:
            meta[section] = value
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"config__embed_dim": LIMITS["embed_dim"] + 1},
            f"config.embed_dim': expected a whole number of at most {LIMITS['embed_dim']}",
        ),
        ({"config__feature_dim": 2**40}, "config.feature_dim'"),
        ({"config__surprise": 1}, r"unknown key\(s\) \['surprise'\] in 'config'"),
        ({"inference__nms_sigma": -1.0}, "key 'inference.nms_sigma': Input should be greater than 0, got -1.0"),
        ({"inference__max_segments": 2.5}, "key 'inference.max_segments': Input should be a valid integer"),
        ({"kind": "lacp"}, "not a self-trained detector's model.json"),
        ({"classes": []}, "key 'classes': expected a list of 1 to 1000 class names"),
    ],
)
def test_hostile_values_are_refused_naming_the_key(tmp_path: Path, change: dict, message: str) -> None:
    folder = _saved(tmp_path / "m")
    _edit(folder, **change)
    with pytest.raises(ValueError, match=message):
        read_detector_meta(folder)


def test_an_lacp_reader_refuses_a_detector_folder(tmp_path: Path) -> None:
    from lacp.model_io import read_model_meta

    with pytest.raises(ValueError, match="not an LACP model folder"):
        read_model_meta(_saved(tmp_path / "m"))
    assert torch.load(tmp_path / "m" / "model.pt", weights_only=True)  # tensors only
