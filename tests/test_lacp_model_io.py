"""lacp/model_io.py: a model folder's declared sizes and settings are checked before anything is
built from them (issue 26, item 11)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import lacp.model_io as model_io
from lacp.model import LACPNet
from lacp.model_io import LIMITS, load_model, read_model_meta, save_model


def _model_folder(tmp_path: Path, **changes) -> Path:
    """An honest two-class model folder whose model.json then gets `changes`."""
    folder = tmp_path / "model"
    save_model(
        folder,
        LACPNet(num_classes=2).state_dict(),
        classes=["jump", "run"],
        feature_dim=2048,
        embed_dim=2048,
        dropout=0.7,
    )
    meta = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps({**meta, **changes}))
    return folder


@pytest.mark.parametrize(
    ("key", "value", "limit"),
    [
        ("feature_dim", 10**6, LIMITS["feature_dim"][0]),
        ("embed_dim", 2**40, LIMITS["embed_dim"][0]),
        ("num_segments", 10**9, LIMITS["num_segments"][0]),
        ("classes", [f"class {i}" for i in range(5000)], LIMITS["classes"][0]),
    ],
)
def test_sizes_above_their_limit_are_refused_naming_key_and_limit(tmp_path: Path, key: str, value, limit: int) -> None:
    folder = _model_folder(tmp_path, **{key: value})
    with pytest.raises(
        ValueError, match=rf"model.json key '{key}'.*<= {limit}.*got {5000 if key == 'classes' else value}"
    ):
        read_model_meta(folder)
    with pytest.raises(ValueError, match=f"<= {limit}"):
        load_model(folder)


def test_unknown_detection_key_is_named_not_a_type_error(tmp_path: Path) -> None:
    """`nms_iou` (a typo of nms_tiou): a ValueError naming it and the keys there are, where the
    detection config used to be built with it (TypeError: unexpected keyword argument)."""
    folder = _model_folder(tmp_path, detection={"r_act": 8, "nms_iou": 0.5})
    with pytest.raises(ValueError, match=r"key 'detection': unknown setting\(s\) \['nms_iou'\].*'nms_tiou'"):
        read_model_meta(folder)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("r_act", 0, "Input should be greater than or equal to 1"),
        ("r_act", 8.0, "Input should be a valid integer"),
        ("nms_tiou", 7, "Input should be less than or equal to 1"),
        ("faithful", "yes", "Input should be a valid boolean"),
    ],
)
def test_detection_values_of_the_wrong_kind_are_named(tmp_path: Path, key: str, value, expected: str) -> None:
    """Checked strictly against `DetectionConfig` (its ranges; no "yes" for true, no 8.0 for 8)."""
    folder = _model_folder(tmp_path, detection={key: value})
    with pytest.raises(ValueError, match=rf"key 'detection' '{key}': {expected}, got {value!r}"):
        read_model_meta(folder)


def test_weights_are_compared_with_the_declared_sizes_before_the_network_is_built(tmp_path: Path, monkeypatch) -> None:
    """model.json declares 8000 feature channels (within the limit), model.pt holds 2048: refused,
    naming the tensor and both shapes, with no network allocated (only the meta-device one)."""
    built: list[str] = []

    class Recorded(LACPNet):
        def __init__(self, **sizes) -> None:
            super().__init__(**sizes)
            built.append(self.embedding.weight.device.type)

    monkeypatch.setattr(model_io, "LACPNet", Recorded)
    folder = _model_folder(tmp_path, feature_dim=8000)
    with pytest.raises(
        ValueError,
        match=r"model.pt does not match .*model.json.*'embedding.weight' is \(2048, 2048, 3\) "
        r"in model.pt, model.json's sizes give \(2048, 8000, 3\)",
    ):
        load_model(folder)
    assert built == ["meta"]
    built.clear()
    honest = _model_folder(tmp_path / "honest")
    assert load_model(honest).feature_dim == 2048 and built == ["meta", "cpu"]
