"""One road from params to library: each stage's params model subclasses its library's settings
(`core.config.Config`), and the library receives a config built from `model_dump`.

So a setting is written once: adding one field to a library's settings class (one line of its
source, re-executed here) makes it a key of that params section and puts its value into the
object the library receives; and a bad value is refused once, on load, naming the key.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from features.flow import write_flow
from pipeline.params import ParamsError, load_params
from tests.conftest import REPO

DUMMY = "    dummy_knob: int = Field(7, ge=0)  # the one edit\n"


class _Reached(Exception):
    """Raised by a stand-in for the library call once it has the object the stage hands it."""


def _edited(monkeypatch: pytest.MonkeyPatch, *, module: str, settings: str) -> ModuleType:
    """`module` re-executed from its source with `DUMMY` as the first field of class `settings`,
    standing in sys.modules for this test only.

    Args:
        monkeypatch: restores sys.modules afterwards.
        module: the library module's dotted name.
        settings: the name of its settings class.

    Returns:
        The edited module.
    """
    spec = importlib.util.find_spec(module)
    source = Path(spec.origin).read_text()
    first_field = re.compile(r"^    \w+: ", re.M).search(source, source.index(f"\nclass {settings}("))
    edited = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, module, edited)
    exec(
        compile(source[: first_field.start()] + DUMMY + source[first_field.start() :], spec.origin, "exec"),
        edited.__dict__,
    )
    return edited


def _fresh(monkeypatch: pytest.MonkeyPatch, *, module: str) -> ModuleType:
    """`module` re-executed unchanged (so it imports the edited library), for this test only.

    Args:
        monkeypatch: restores sys.modules afterwards.
        module: the dotted name.

    Returns:
        The re-executed module.
    """
    spec = importlib.util.find_spec(module)
    fresh = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, module, fresh)
    spec.loader.exec_module(fresh)
    return fresh


def _received(monkeypatch: pytest.MonkeyPatch, stage: ModuleType, library_call: str, run: Any) -> Any:
    """What `stage.<library_call>` is handed when `run()` runs (the call replaced by a recorder)."""
    seen = []

    def record(*args: Any, **kwargs: Any) -> None:
        seen.append((args, kwargs))
        raise _Reached

    monkeypatch.setattr(stage, library_call, record)
    with pytest.raises(_Reached):
        run()
    ((args, kwargs),) = seen
    return args, kwargs


def test_a_sampling_field_reaches_sample_points(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from stages.points import PointsParams

    with pytest.raises(ValidationError, match="dummy_knob"):
        PointsParams(dummy_knob=3)  # not a key before the edit
    library = _edited(monkeypatch, module="lacp.points.sampling", settings="Sampling")
    stage = _fresh(monkeypatch, module="stages.points")
    monkeypatch.setattr(stage, "read_annotations", lambda dataset_dir: {})
    params = stage.PointsParams.model_validate({"distribution": "uniform", "dummy_knob": 3})
    (_, sampling), _ = _received(
        monkeypatch,
        stage,
        "sample_points",
        lambda: stage.run(params, dataset_dir=tmp_path, out_dir=tmp_path, report_dir=tmp_path),
    )
    assert type(sampling) is library.Sampling
    assert (sampling.dummy_knob, sampling.distribution) == (3, "uniform")


def test_a_synthetic_setting_reaches_the_renderer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    library = _edited(monkeypatch, module="sources.synthetic.spec", settings="SyntheticSettings")
    _fresh(monkeypatch, module="sources.synthetic")  # the package re-exports the spec
    stage = _fresh(monkeypatch, module="stages.prepare")
    params = stage.DatasetParams.model_validate({"synthetic": {"dummy_knob": 3, "duration_s": [5, 6]}})
    _, kwargs = _received(monkeypatch, stage, "render_videos", lambda: stage.run(params, out_dir=tmp_path))
    assert type(kwargs["spec"]) is library.SyntheticSpec
    assert (kwargs["spec"].dummy_knob, kwargs["spec"].duration_s) == (3, (5.0, 6.0))  # the key's own name


@pytest.mark.parametrize(
    ("library_module", "settings", "stage_module", "params", "config", "given"),
    [
        # train's top-k ratio comes from the detection section (one value for training and inference)
        ("lacp.trainer", "TrainSettings", "stages.train", "TrainParams", "TrainConfig", {"r_act": 4}),
        ("detector.config", "DetectorSettings", "stages.selftrain", "SelftrainParams", "DetectorConfig", {}),
    ],
)
def test_a_training_setting_reaches_the_trainers_config(
    monkeypatch: pytest.MonkeyPatch,
    library_module: str,
    settings: str,
    stage_module: str,
    params: str,
    config: str,
    given: dict,
) -> None:
    library = _edited(monkeypatch, module=library_module, settings=settings)
    stage = _fresh(monkeypatch, module=stage_module)
    received = getattr(stage, params).model_validate({"dummy_knob": 3, "seed": 5}).config(feature_dim=8, **given)
    assert all(getattr(received, key) == value for key, value in given.items())
    assert type(received) is getattr(library, config)
    assert (received.dummy_knob, received.seed, received.feature_dim) == (3, 5, 8)


def test_a_decode_setting_reaches_decode_to_mp4(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    library = _edited(monkeypatch, module="features.video", settings="DecodeSettings")
    stage = _fresh(monkeypatch, module="stages.decode")
    params = stage.DecodeParams.model_validate({"dummy_knob": 3, "short_side": 64})
    _, kwargs = _received(
        monkeypatch,
        stage,
        "decode_to_mp4",
        lambda: stage.decode_video(tmp_path / "source.mp4", out=tmp_path / "v.mp4", params=params, video_id="v"),
    )
    assert isinstance(kwargs["settings"], library.DecodeSettings)
    assert (kwargs["settings"].dummy_knob, kwargs["settings"].short_side) == (3, 64)


def test_a_flow_setting_reaches_iter_flow(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    library = _edited(monkeypatch, module="features.flow", settings="FlowSettings")
    stage = _fresh(monkeypatch, module="stages.flow")
    params = stage.FlowParams.model_validate({"dummy_knob": 3, "bound": 10.0})
    (_, settings), _ = _received(
        monkeypatch,
        stage,
        "iter_flow",
        lambda: stage.flow_video(tmp_path / "v.mp4", out=tmp_path / "v.h5", params=params, video_id="v"),
    )
    assert isinstance(settings, library.FlowSettings)
    assert (settings.dummy_knob, settings.bound) == (3, 10.0)


def test_a_tvl1_setting_reaches_the_solver(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    library = _edited(monkeypatch, module="features.tvl1", settings="TVL1Settings")
    flow = _fresh(monkeypatch, module="features.flow")  # FlowSettings' tvl1 subsection: the edited class
    stage = _fresh(monkeypatch, module="stages.flow")
    monkeypatch.setattr(stage, "_gray_frames", lambda path: iter([np.zeros((16, 16), np.uint8)] * 2))
    params = stage.FlowParams.model_validate(
        {"method": "tvl1_torch", "device": "cpu", "tvl1": {"dummy_knob": 3, "warps": 2}}
    )
    _, kwargs = _received(
        monkeypatch,
        flow,
        "tvl1_flow",
        lambda: stage.flow_video(tmp_path / "v.mp4", out=tmp_path / "v.h5", params=params, video_id="v"),
    )
    assert type(kwargs["settings"]) is library.TVL1Solver
    assert (kwargs["settings"].dummy_knob, kwargs["settings"].warps) == (3, 2)


def test_an_extract_setting_reaches_the_snippet_batches(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    library = _edited(monkeypatch, module="features.snippets", settings="SnippetSettings")
    stage = _fresh(monkeypatch, module="stages.extract")
    monkeypatch.setattr(stage, "load_stream", lambda *args: SimpleNamespace(dtype=torch.float32))  # no weights
    write_flow(tmp_path / "v.h5", np.zeros((4, 8, 8, 2), np.uint8), method="dis", bound=20.0)
    params = stage.ExtractParams.model_validate({"dummy_knob": 3, "crop": 64, "device": "cpu"})
    _, kwargs = _received(
        monkeypatch,
        stage,
        "stream_batches",
        lambda: stage.extract_video(
            "v", decoded=tmp_path / "v.mp4", flow=tmp_path / "v.h5", num_frames=4, params=params, weights_dir=tmp_path
        ),
    )
    assert isinstance(kwargs["settings"], library.SnippetSettings)
    assert (kwargs["settings"].dummy_knob, kwargs["settings"].crop) == (3, 64)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"train": {"steps": 0}}, "train.steps: Input should be greater than or equal to 1"),
        ({"train": {"select_best_on_test": True}}, "train: Value error, select_best_on_test needs eval_every > 0"),
        ({"points": {"sigma": 2}}, "points.sigma: Input should be less than or equal to 1"),
        ({"points": {"distribution": "file"}}, "points: Value error, distribution 'file' needs file"),
        ({"dataset": {"synthetic": {"crf": 99}}}, "dataset.synthetic.crf: Input should be less than or equal to 51"),
        (
            {"dataset": {"synthetic": {"duration_s": [9, 3]}}},
            "dataset.synthetic.duration_s: Value error, duration_s must be [low, high] with 0 < low <= high",
        ),
        ({"selftrain": {"window": 8}}, "selftrain: Value error, window must be odd"),
        ({"selftrain": {"lr": float("inf")}}, "selftrain.lr: Input should be a finite number"),
        ({"decode": {"short_side": 8}}, "decode.short_side: Input should be greater than or equal to 16"),
        ({"flow": {"bound": 0}}, "flow.bound: Input should be greater than 0"),
        ({"flow": {"tvl1": {"tau": float("inf")}}}, "flow.tvl1.tau: Input should be a finite number"),
        ({"extract": {"crop": 8}}, "extract.crop: Input should be greater than or equal to 32"),
        ({"extract": {"frame_step": 32}}, "extract: Value error, frame_step (32) must not exceed snippet (16)"),
    ],
)
def test_a_bad_value_is_refused_once_on_load_naming_the_key(overrides: dict, expected: str) -> None:
    with pytest.raises(ParamsError) as err:
        load_params(REPO / "params.yaml", overrides=overrides)
    message = str(err.value)
    assert "1 invalid value(s)" in message.splitlines()[0]
    assert message.count(expected) == 1


@pytest.mark.parametrize(
    ("library_module", "settings", "reach"),
    [
        ("lacp.proposals", "DetectionConfig", lambda detection: detection.lacp()),  # what LACP's stages receive
        ("detector.config", "InferenceConfig", lambda detection: detection.detector),  # what selftrain records
    ],
)
def test_a_detection_setting_reaches_the_config_the_stages_receive(
    monkeypatch: pytest.MonkeyPatch, library_module: str, settings: str, reach: Any
) -> None:
    library = _edited(monkeypatch, module=library_module, settings=settings)
    params = _fresh(monkeypatch, module="pipeline.params")
    section = {"dummy_knob": 3} if settings == "DetectionConfig" else {"detector": {"dummy_knob": 3}}
    received = reach(params.DetectionParams.model_validate(section))
    assert type(received) is getattr(library, settings)
    assert received.dummy_knob == 3
