"""Presets: every preset file matches the params schema; applying one edits only its keys, comments kept."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser

from pipeline import cli
from pipeline.code_deps import input_deps
from pipeline.params import load_params
from pipeline.presets import (
    PRESET_DIR,
    apply_preset,
    list_presets,
    load_preset,
    preset_set_args,
    schema_keys,
)
from sources.annotations import read_gt_json
from sources.synthetic import SyntheticSpec
from tests.conftest import REPO
from tests.shared_data import SHARED

PRESETS = sorted(list_presets())

RELEASED = {  # the released LACP code's value of each documented departure switch
    "train.oic_outer": "released",
    "train.search_method": "beam",
    "train.feat_last_class_only": True,
    "train.video_end": "released",
    "train.label_delay": "released",
    "detection.faithful": True,
}


def _flat(data: dict, prefix: str = "") -> dict:
    """Leaf values of a nested params mapping, by dotted key (mappings that are values stay whole)."""
    keys = schema_keys()
    out = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and dotted not in keys:
            out.update(_flat(value, f"{dotted}."))
        else:
            out[dotted] = value
    return out


@pytest.fixture
def params_copy(tmp_path: Path) -> Path:
    path = tmp_path / "params.yaml"
    shutil.copyfile(REPO / "params.yaml", path)
    return path


def test_project_presets_are_listed_with_their_header():
    presets = list_presets()
    assert {"released", "heldout", "default-seed1-loguniform"} <= set(presets)
    assert PRESET_DIR == REPO / "presets"
    for name, header in presets.items():
        assert header and not header.startswith("#"), name


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_key_is_in_the_schema_and_validates(name: str, params_copy: Path):
    values = load_preset(name)
    assert values and set(values) <= set(schema_keys())
    assert not any(key.startswith("paths.") for key in values)  # DVC stages read params.yaml's paths
    apply_preset(params_copy, name)
    merged = _flat(load_params(params_copy).model_dump(mode="json"))
    for key, value in values.items():
        assert merged[key] == value, key


@pytest.mark.parametrize("name", PRESETS)
def test_set_args_read_back_to_the_preset_values(name: str):
    """DVC parses `-S` with Hydra's override grammar: each argument must give back the preset's value."""
    args = preset_set_args(name)
    parsed = OverridesParser.create().parse_overrides(overrides=args)
    assert {o.key_or_group: o.value() for o in parsed} == load_preset(name)


def test_released_preset_sets_every_departure_switch_to_the_released_value():
    values = load_preset("released")
    assert {key: values.get(key) for key in RELEASED} == RELEASED


DATASET_PRESETS = {  # name: (tIoU thresholds of its protocol, train.num_segments, subsets of its gt.json)
    "thumos14": ([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7], 0, {"train": "train", "test": "test"}),
    "gtea": ([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7], 0, {"training": "train", "validation": "test"}),
    "beoid": ([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7], 0, {"training": "train", "validation": "test"}),
    "activitynet13": (
        [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95],
        50,
        {"training": "train", "validation": "test", "testing": "skip"},
    ),
}
SHARED_SUBSET_COUNTS = {
    "thumos14": {"train": 200, "test": 210},
    "gtea": {"train": 21, "test": 7},
    "beoid": {"train": 46, "test": 12},
}


def _inputs_and_sections(params_path: Path) -> tuple[dict, dict]:
    """What a dataset preset decides: the user files each stage reads, and the sections it sets."""
    params = load_params(params_path)
    dump = params.model_dump(mode="json")
    return input_deps(params), {k: dump[k] for k in ("dataset", "decode", "flow", "extract", "train", "evaluate")}


@pytest.mark.parametrize("name", sorted(DATASET_PRESETS))
def test_dataset_presets_read_their_files_under_datasets_name(name: str, params_copy: Path):
    tiou, num_segments, subsets = DATASET_PRESETS[name]
    apply_preset(params_copy, name)
    params = load_params(params_copy)
    d = params.dataset.directory
    assert params.dataset.source == "directory"
    assert (d.video_dir, d.gt_json) == (f"datasets/{name}/videos", f"datasets/{name}/gt.json")
    inputs = input_deps(params)  # the files dvc.yaml tracks after `code-deps --write`
    assert all(path.startswith(f"datasets/{name}/") for paths in inputs.values() for path in paths)
    assert dict(d.subsets) == subsets
    assert (params.decode.short_side, params.extract.crop, params.extract.frame_step) == (256, 224, 1)
    assert params.flow.method == "tvl1" and params.extract.snippet == params.extract.stride == 16
    assert params.evaluate.tiou == tiou and params.train.num_segments == num_segments
    assert params.train.steps == 2000
    assert params.train.validation_share == 0  # the published protocol: every training video is trained on
    expected_points = {"thumos14": "file", "gtea": "manual", "beoid": "manual", "activitynet13": "gaussian"}[name]
    assert params.points.distribution == expected_points
    if expected_points == "manual":
        assert len(params.points.manual_files) == 4 and params.points.annotator == "random"


@pytest.mark.parametrize("first", sorted(DATASET_PRESETS))
@pytest.mark.parametrize("second", sorted(DATASET_PRESETS))
def test_dataset_presets_do_not_depend_on_the_one_applied_before(first: str, second: str, tmp_path: Path):
    alone, after = tmp_path / "alone.yaml", tmp_path / "after.yaml"
    shutil.copyfile(REPO / "params.yaml", alone)
    shutil.copyfile(REPO / "params.yaml", after)
    apply_preset(alone, second)
    apply_preset(after, first)
    apply_preset(after, second)
    assert _inputs_and_sections(after) == _inputs_and_sections(alone)


@pytest.mark.skipif(not (SHARED / "datasets").is_dir(), reason="shared annotation files absent")
@pytest.mark.parametrize("name", sorted(SHARED_SUBSET_COUNTS))
def test_dataset_presets_match_the_published_files(name: str, params_copy: Path):
    """The preset's file names are those of the published release, and its subsets read its gt.json."""
    apply_preset(params_copy, name)
    params = load_params(params_copy)
    folder = SHARED / "datasets" / name
    for paths in input_deps(params).values():
        for path in paths:
            if not path.endswith("/videos"):
                assert (folder / Path(path).name).is_file(), path
    ann = read_gt_json(folder / "gt.json", subsets=dict(params.dataset.directory.subsets))
    counts = {s: sum(v["subset"] == s for v in ann["database"].values()) for s in ("train", "test")}
    assert counts == SHARED_SUBSET_COUNTS[name]


def test_activitynet_preset_reads_the_official_layout(tmp_path: Path, params_copy: Path):
    """ActivityNet 1.3's json: training / validation / unannotated testing, extra keys, no fps."""
    apply_preset(params_copy, "activitynet13")
    subsets = dict(load_params(params_copy).dataset.directory.subsets)
    entry = {"duration": 120.5, "resolution": "1280x720", "url": "https://www.youtube.com/watch?v=x"}
    gt = tmp_path / "gt.json"
    gt.write_text(
        json.dumps(
            {
                "version": "VERSION 1.3",
                "taxonomy": [],
                "database": {
                    "-abc": {
                        **entry,
                        "subset": "training",
                        "annotations": [{"segment": [1.0, 9.5], "label": "Long jump"}],
                    },
                    "xyz": {
                        **entry,
                        "subset": "validation",
                        "annotations": [{"segment": [3.0, 40.0], "label": "Polishing shoes"}],
                    },
                    "tst": {**entry, "subset": "testing", "annotations": []},
                },
            }
        )
    )
    ann = read_gt_json(gt, subsets=subsets)
    assert {vid: v["subset"] for vid, v in ann["database"].items()} == {"-abc": "train", "xyz": "test"}
    assert ann["database"]["xyz"]["duration"] == 120.5 and "fps" not in ann["database"]["xyz"]
    assert ann["classes"] == ["Long jump", "Polishing shoes"]


def test_heldout_preset_uses_no_default_class(params_copy: Path):
    apply_preset(params_copy, "heldout")
    s = load_params(params_copy).dataset.synthetic
    heldout = SyntheticSpec(num_classes=s.num_classes, class_offset=s.class_offset).classes
    default = load_params(REPO / "params.yaml").dataset.synthetic
    seen = SyntheticSpec(num_classes=default.num_classes, class_offset=default.class_offset).classes
    assert len(heldout) == 5 and not {c.name for c in heldout} & {c.name for c in seen}
    assert not {c.shape for c in heldout} & {c.shape for c in seen}
    assert not {c.motion for c in heldout} & {c.motion for c in seen}


@pytest.mark.parametrize("name", ["released", "heldout"])
def test_apply_changes_exactly_the_preset_keys_and_keeps_comments(name: str, params_copy: Path):
    before_text = params_copy.read_text()
    before = _flat(yaml.safe_load(before_text))
    values = load_preset(name)
    expected = {key for key, value in values.items() if before[key] != value}
    assert expected  # the project's params.yaml differs from each of these presets

    changes = apply_preset(params_copy, name)

    assert {c.key for c in changes} == expected
    assert all(before[c.key] == c.old and values[c.key] == c.new for c in changes)
    after_text = params_copy.read_text()
    after = _flat(yaml.safe_load(after_text))
    assert {key for key in before if before[key] != after[key]} == expected
    assert set(after) == set(before)
    old_lines, new_lines = before_text.splitlines(), after_text.splitlines()
    assert len(new_lines) == len(old_lines)
    changed = [i for i, (a, b) in enumerate(zip(old_lines, new_lines)) if a != b]
    assert len(changed) == len(expected)  # one line per changed key, nothing else reformatted
    for i in changed:  # each changed line keeps its comment
        assert new_lines[i].split("#", 1)[1] == old_lines[i].split("#", 1)[1]
    assert apply_preset(params_copy, name) == []  # applied twice: nothing left to change
    assert params_copy.read_text() == after_text


def test_unknown_key_is_named_with_the_preset_file(tmp_path: Path):
    (tmp_path / "typo.yaml").write_text("# a typo\ntrain:\n  oic_outter: released\n")
    with pytest.raises(ValueError, match=r"typo\.yaml: train\.oic_outter: unknown key"):
        load_preset("typo", preset_dir=tmp_path)
    (tmp_path / "section.yaml").write_text("# a section typo\ntrian:\n  steps: 3\n")
    with pytest.raises(ValueError, match=r"section\.yaml: trian: unknown key"):
        load_preset("section", preset_dir=tmp_path)
    (tmp_path / "old.yaml").write_text("# an older preset\nevaluate:\n  faithful: false\n")
    with pytest.raises(ValueError, match=r"old\.yaml: evaluate\.faithful: moved to detection\.faithful"):
        load_preset("old", preset_dir=tmp_path)


def test_bad_value_and_unknown_preset_are_named(tmp_path: Path, params_copy: Path):
    (tmp_path / "bad.yaml").write_text("# a bad value\ntrain:\n  oic_outer: roof\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: train\.oic_outer: Input should be"):
        load_preset("bad", preset_dir=tmp_path)
    with pytest.raises(ValueError, match=r"preset 'nope': .*nope\.yaml not found; presets in .*: bad"):
        load_preset("nope", preset_dir=tmp_path)
    # a check across keys runs against the file the preset is merged into; the file stays as it was
    (tmp_path / "range.yaml").write_text("# too many classes\ndataset:\n  synthetic:\n    class_offset: 9\n")
    text = params_copy.read_text()
    with pytest.raises(ValueError, match=r"(?s)range\.yaml: the preset merged into .*class_offset 9 \+ num_classes 4"):
        apply_preset(params_copy, "range", preset_dir=tmp_path)
    assert params_copy.read_text() == text


def test_cli_preset_prints_changes_and_lists(params_copy: Path, capsys: pytest.CaptureFixture[str]):
    assert cli.main(["--params", str(params_copy), "preset", "released"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # the defaults follow the recipe except the loader's label delay
    # (docs/USAGE.md "Defaults, the released recipe, ...")
    assert lines == ["train.label_delay: none -> released"]
    assert cli.main(["--params", str(params_copy), "preset", "--list"]) == 0
    listed = capsys.readouterr().out
    for name, header in list_presets().items():
        assert name in listed and header in listed


def test_cli_study_passes_the_preset_to_every_run(monkeypatch: pytest.MonkeyPatch):
    seen = {}
    monkeypatch.setattr("pipeline.study.run_study", lambda **kwargs: seen.update(kwargs))
    assert cli.main(["study", "--preset", "heldout", "-S", "train.steps=5", "--seeds", "0"]) == 0
    assert seen["extra"] == [*preset_set_args("heldout"), "train.steps=5"]
    assert "dataset.synthetic.instances_per_video=[1, 2]" in seen["extra"]


def test_cli_preset_set_args_are_shell_words_for_dvc_exp_run(params_copy: Path, capsys: pytest.CaptureFixture[str]):
    """`--set-args` prints the preset as `-S` overrides (what a study passes to dvc exp run), quoted
    for the shell, and leaves the params file alone."""
    import shlex

    from pipeline.presets import preset_set_args

    before = params_copy.read_text()
    assert cli.main(["--params", str(params_copy), "preset", "gtea", "--set-args"]) == 0
    words = shlex.split(capsys.readouterr().out)
    assert words[0::2] == ["-S"] * len(preset_set_args("gtea"))
    assert words[1::2] == preset_set_args("gtea")
    assert "dataset.directory.subsets={training: train, validation: test}" in words
    assert params_copy.read_text() == before
