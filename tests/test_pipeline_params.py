"""params.yaml validation: the real file loads; bad keys and values name the key and the allowed values."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, TypeAdapter

from pipeline.params import Params, ParamsError, load_params
from tests.conftest import REPO


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def raw() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def test_project_params_load_with_defaults():
    params = load_params(REPO / "params.yaml")
    assert params.decode.fps == 25
    assert params.points.distribution == "gaussian"
    assert params.extract.snippet == 16
    assert str(params.paths.features) == "data/features.h5"
    assert params.train.lambdas == (1.0, 0.5, 1.0, 1.0, 1.0)


def test_every_key_in_params_yaml_is_commented():
    """Every key that holds a value carries a comment on its line."""
    uncommented = []
    for line in (REPO / "params.yaml").read_text().splitlines():
        code = line.split("#", 1)[0]
        key, sep, value = code.partition(":")
        if sep and value.strip() and "#" not in line:
            uncommented.append(line)
    assert uncommented == []


def test_unknown_key_is_named(tmp_path: Path, raw: dict):
    raw["decode"]["shortside"] = 128
    with pytest.raises(ParamsError, match=r"decode\.shortside: unknown key"):
        load_params(_write(tmp_path, raw))


def test_unknown_section_is_named(tmp_path: Path, raw: dict):
    raw["decoder"] = {}
    with pytest.raises(ParamsError, match=r"decoder: unknown key"):
        load_params(_write(tmp_path, raw))


def test_bad_choice_lists_allowed_values(tmp_path: Path, raw: dict):
    raw["points"]["distribution"] = "gausian"
    with pytest.raises(ParamsError) as err:
        load_params(_write(tmp_path, raw))
    message = str(err.value)
    assert "points.distribution" in message
    for allowed in ("center", "gaussian", "uniform", "beta", "manual", "file"):
        assert allowed in message
    assert "gausian" in message


def test_wrong_type_is_named(tmp_path: Path, raw: dict):
    raw["train"]["steps"] = "many"
    with pytest.raises(ParamsError, match=r"train\.steps: Input should be a valid integer"):
        load_params(_write(tmp_path, raw))


def test_out_of_range_is_named(tmp_path: Path, raw: dict):
    raw["decode"]["crf"] = 99
    with pytest.raises(ParamsError, match=r"decode\.crf: Input should be less than or equal to 51"):
        load_params(_write(tmp_path, raw))


def test_frame_step_longer_than_snippet_is_named(tmp_path: Path, raw: dict):
    raw["extract"]["frame_step"] = 32
    with pytest.raises(ParamsError, match=r"extract: Value error, frame_step \(32\) must not exceed snippet \(16\)"):
        load_params(_write(tmp_path, raw))


def test_directory_source_needs_its_paths(tmp_path: Path, raw: dict):
    raw["dataset"]["source"] = "directory"
    with pytest.raises(ParamsError, match="directory.video_dir and directory.gt_json"):
        load_params(_write(tmp_path, raw))


@pytest.mark.parametrize(
    ("setting", "named"),
    [({"lacp_proposals": True}, "lacp_proposals: true"), ({"own_class_weight": 0.5}, "own_class_weight: 0.5")],
)
def test_settings_that_apply_the_lacp_copy_are_refused_on_load_without_it(
    tmp_path: Path, raw: dict, setting: dict, named: str
):
    """The merge takes LACP's proposals, and own_class_weight below 1 LACP's video scores, from the
    LACP model copied into the detector's folder (`selftrain.video_scores: lacp`): without it either
    setting is refused before anything trains, named with its value and the way out."""
    raw["selftrain"]["video_scores"] = "none"
    raw["detection"]["detector"].update(lacp_proposals=False, own_class_weight=1.0)
    assert load_params(_write(tmp_path, raw)).selftrain.video_scores == "none"
    raw["detection"]["detector"].update(setting)
    with pytest.raises(
        ParamsError,
        match=rf"1 invalid value\(s\)\n  Value error, detection\.detector {named} need "
        r"selftrain\.video_scores: lacp .* or set lacp_proposals: false and own_class_weight: 1",
    ):
        load_params(_write(tmp_path, raw))


def test_searched_pseudo_instances_without_the_searches_are_refused_on_load(tmp_path: Path, raw: dict):
    """The point-only baseline (`train.completeness: false`) runs no search, so `pseudo.source:
    search` is refused before it trains, naming both keys and the way out; proposals load."""
    raw["train"]["completeness"] = False
    with pytest.raises(
        ParamsError,
        match=r"1 invalid value\(s\)\n  Value error, pseudo\.source: search needs train\.completeness: true "
        r".* set pseudo\.source: proposals or ground_truth",
    ):
        load_params(_write(tmp_path, raw))
    raw["pseudo"]["source"] = "proposals"
    assert not load_params(_write(tmp_path, raw)).train.completeness


def test_missing_and_malformed_files(tmp_path: Path):
    with pytest.raises(ParamsError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("decode: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)


def test_overrides_merge_into_sections():
    params = load_params(REPO / "params.yaml", overrides={"points": {"distribution": "uniform"}})
    assert params.points.distribution == "uniform"
    assert params.points.seed == 0  # untouched keys keep the file's values


def test_fingerprint_changes_with_values():
    a = load_params(REPO / "params.yaml")
    b = load_params(REPO / "params.yaml", overrides={"decode": {"crf": 30}})
    assert a.decode.fingerprint() != b.decode.fingerprint()
    assert a.flow.fingerprint() == b.flow.fingerprint()


def _defaults_differing(model: type[BaseModel], data: dict, prefix: str) -> list[str]:
    """Keys of `data` (a params.yaml section) whose value is not the model field's default."""
    out = []
    for key, value in data.items():
        field = model.model_fields[key]
        nested = field.annotation
        if isinstance(value, dict) and isinstance(nested, type) and issubclass(nested, BaseModel):
            out += _defaults_differing(nested, value, f"{prefix}{key}.")
            continue
        adapter = TypeAdapter(field.annotation)
        default = adapter.dump_python(field.get_default(call_default_factory=True), mode="json")
        given = adapter.dump_python(adapter.validate_python(value), mode="json")
        if given != default:
            out.append(f"{prefix}{key}: params.yaml {value!r}, code default {default!r}")
    return out


def test_params_yaml_equals_the_models_defaults_key_by_key():
    """Each default is stated once: the shipped params.yaml is exactly the models' defaults
    (paths, which have none, excepted), so the YAML and the code cannot drift apart."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    differing = []
    for section, data in raw.items():
        if section == "paths":
            continue
        differing += _defaults_differing(Params.model_fields[section].annotation, data, f"{section}.")
    assert differing == []
    assert Params.model_fields.keys() == raw.keys()
