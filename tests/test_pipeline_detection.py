"""The params' `detection` section: read by every stage that makes detections, recorded in the
model folder by train, checked by evaluate against that record, applied by detect with its flags
overriding each key; dvc.yaml lists it for exactly those stages."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
import yaml

from detector.config import InferenceConfig
from lacp.proposals import DetectionConfig
from pipeline.cli import build_parser, detection_overrides
from pipeline.detect import ModelFolderError, detection_settings
from pipeline.params import load_params
from pipeline.stage_table import STAGES
from stages import STAGE_MODULES, STAGE_NAMES
from tests.conftest import REPO
from tests.test_lacp_splits import write_tiny_inputs


def _tiny_params(root: Path, **detection):
    """params.yaml's values with a 2-step training on `write_tiny_inputs`' files under `root`, and
    `detection` overriding the section's keys (what `-S detection.<key>=...` does to params.yaml)."""
    inputs = write_tiny_inputs(root)
    paths = {
        "dataset": inputs["dataset_dir"],
        "features": inputs["features"],
        "points": inputs["points_dir"],
        "model": root / "model",
        "train_log": root / "log",
        "pseudo_labels": root / "pseudo_labels.h5",
        "evaluation": root / "eval",
    }
    return load_params(
        REPO / "params.yaml",
        overrides={
            "paths": {k: str(v) for k, v in paths.items()},
            "train": {"steps": 2, "batch": 2, "search_every": 2, "checkpoint_every": 0, "device": "cpu"},
            "evaluate": {"timelines": 0, "device": "cpu"},
            "detection": detection,
        },
    )


def test_an_override_reaches_train_evaluate_and_detect(tmp_path: Path) -> None:
    """detection.class_threshold 0.3: train records it in model.json, evaluate applies it, detect
    reads it back from the folder, and detect's flag overrides the record."""
    params = _tiny_params(tmp_path, class_threshold=0.3)
    STAGES["train"](params, lambda step, steps, row: None)
    recorded = json.loads((params.paths.model / "model.json").read_text())["detection"]
    assert recorded == {"r_act": 8, "class_threshold": 0.3, "nms_tiou": 0.7, "faithful": True}
    STAGES["evaluate"](params, lambda step, steps, row: None)
    assert (params.paths.evaluation / "metrics.json").is_file()

    config, _, settings = detection_settings(params.paths.model, kind="lacp", overrides={})
    assert config.class_threshold == 0.3 and settings == recorded
    config, _, settings = detection_settings(
        params.paths.model, kind="lacp", overrides={"class_threshold": 0.6, "faithful": False}
    )
    assert (config.class_threshold, config.faithful, config.r_act) == (0.6, False, 8)
    assert settings == {**recorded, "class_threshold": 0.6, "faithful": False}


def test_evaluate_refuses_a_folder_whose_record_differs_from_the_params(tmp_path: Path) -> None:
    """Trained with class_threshold 0.3, evaluated with the default 0.5: an error naming the key,
    both values and the model.json, before anything is written."""
    params = _tiny_params(tmp_path, class_threshold=0.3)
    STAGES["train"](params, lambda step, steps, row: None)
    default = load_params(
        REPO / "params.yaml",
        overrides={"paths": params.paths.model_dump(mode="json"), "evaluate": {"timelines": 0, "device": "cpu"}},
    )
    with pytest.raises(
        ValueError,
        match=r"model\.json records other detection settings than the params: "
        r"detection\.class_threshold is 0\.3 there, 0\.5 in the params",
    ):
        STAGES["evaluate"](default, lambda step, steps, row: None)
    assert not (params.paths.evaluation / "metrics.json").exists()


def test_detect_refuses_settings_the_folder_does_not_use_and_names_a_bad_flag(tmp_path: Path) -> None:
    params = _tiny_params(tmp_path)
    STAGES["train"](params, lambda step, steps, row: None)
    with pytest.raises(ModelFolderError, match=r"--nms-sigma set the self-trained detector's post-processing"):
        detection_settings(params.paths.model, kind="lacp", overrides={"detector": {"nms_sigma": 0.3}})
    with pytest.raises(ValueError, match=r"detect --class-threshold 2\.0: Input should be less than or equal to 1"):
        detection_settings(params.paths.model, kind="lacp", overrides={"class_threshold": 2.0})


def test_detect_has_a_flag_for_every_key_of_the_section() -> None:
    """Each LACP key and each detector key is a flag; unset flags override nothing."""
    parser = build_parser()
    args = parser.parse_args(
        [
            "detect",
            "v.mp4",
            "--r-act",
            "4",
            "--class-threshold",
            "0.3",
            "--nms-tiou",
            "0.5",
            "--no-faithful",
            "--score-threshold",
            "0.01",
            "--pre-nms-topk",
            "50",
            "--min-length",
            "0.1",
            "--nms-sigma",
            "0.3",
            "--min-score",
            "0.01",
            "--max-segments",
            "20",
        ]
    )
    assert detection_overrides(args) == {
        "r_act": 4,
        "class_threshold": 0.3,
        "nms_tiou": 0.5,
        "faithful": False,
        "detector": {
            "score_threshold": 0.01,
            "pre_nms_topk": 50,
            "min_length": 0.1,
            "nms_sigma": 0.3,
            "min_score": 0.01,
            "max_segments": 20,
        },
    }
    assert set(DetectionConfig.model_fields) | set(InferenceConfig.model_fields) <= set(vars(args))
    assert detection_overrides(parser.parse_args(["detect", "v.mp4"])) == {}


def test_dvc_yaml_lists_the_detection_keys_for_exactly_the_stages_that_take_them() -> None:
    """A stage whose `run` takes `detection` (LACP's keys) lists them, one that takes `inference`
    lists `detection.detector` (or the whole section covers either); no other stage lists any."""
    import importlib

    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    lacp_keys = {f"detection.{k}" for k in DetectionConfig.model_fields}
    for name in STAGE_NAMES:
        module = importlib.import_module(f"stages.{STAGE_MODULES[name]}")
        takes = set(inspect.signature(module.run).parameters) if hasattr(module, "run") else set()
        listed = {p for p in stages[name].get("params", []) if isinstance(p, str) and p.startswith("detection")}
        wanted = (lacp_keys if "detection" in takes else set()) | (
            {"detection.detector"} if "inference" in takes else set()
        )
        if "detection" in listed:
            assert wanted, f"{name} lists detection but takes none of it"
        else:
            assert listed == wanted, name
    assert stages["evaluate_selftrain"]["params"][-1] == "detection"


def test_an_old_key_names_where_it_moved(tmp_path: Path) -> None:
    """evaluate.class_threshold and selftrain.inference in a params file (or an override): an error
    naming each key and its new place."""
    from pipeline.params import ParamsError

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["evaluate"]["class_threshold"] = 0.3
    raw["selftrain"]["inference"] = {"nms_sigma": 0.3}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError) as err:
        load_params(path)
    assert "evaluate.class_threshold: moved to detection.class_threshold" in str(err.value)
    assert "selftrain.inference: moved to detection.detector" in str(err.value)
    with pytest.raises(ParamsError, match=r"train\.r_act: moved to detection\.r_act"):
        load_params(REPO / "params.yaml", overrides={"train": {"r_act": 4}})
