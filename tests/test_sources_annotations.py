"""Tests of sources.annotations: gt.json / fps readers, validation, clipping, writing."""

from __future__ import annotations

import collections
import json
import logging
from pathlib import Path

import pytest

from sources.annotations import (
    AnnotationError,
    ClippedSegment,
    clip_segments,
    read_annotations,
    read_fps_dict,
    read_gt_json,
    validate_annotations,
    write_annotations,
)
from tests.shared_data import BEOID, GTEA, SFNET_SUBSETS, needs_beoid, needs_gtea

SHARED = Path(__file__).parents[2] / "shared"
THUMOS = SHARED / "datasets" / "thumos14"


def _write(tmp_path: Path, text: str, name: str = "gt.json") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _gt(database: dict) -> str:
    return json.dumps({"database": database})


GOOD_VIDEO = {"subset": "train", "annotations": [{"segment": ["1.5", "3.0"], "label": "Jump"}]}


@pytest.fixture
def thumos_gt() -> Path:
    if not THUMOS.is_dir():
        pytest.skip("shared THUMOS'14 files absent")
    return THUMOS / "gt.json"


def test_real_thumos_gt(thumos_gt: Path) -> None:
    ann = read_gt_json(thumos_gt)
    db = ann["database"]
    subsets = collections.Counter(v["subset"] for v in db.values())
    assert subsets == {"train": 200, "test": 210}
    raw = json.loads(thumos_gt.read_text())["database"]
    expected = collections.Counter(a["label"] for v in raw.values() for a in v["annotations"])
    got = collections.Counter(a["label"] for v in db.values() for a in v["annotations"])
    assert got == expected
    assert got["Diving"] == 887 and got["GolfSwing"] == 67  # counted by hand from the file
    assert len(ann["classes"]) == 20 and ann["classes"] == sorted(expected)
    assert ann["classes"][0] == "BaseballPitch"
    # segments are strings in the file; parsed to floats in file order
    first = db["video_test_0000896"]["annotations"][0]
    assert first == {"segment": [18.6, 24.8], "label": "HighJump"}
    assert list(db) == sorted(db)
    assert "duration" not in db["video_test_0000896"] and "fps" not in db["video_test_0000896"]


def test_real_thumos_fps(thumos_gt: Path) -> None:
    fps = read_fps_dict(THUMOS / "fps_dict.json")
    assert len(fps) == 2584
    assert fps["video_test_0000168"] == pytest.approx(30.00003000003)
    ann = read_gt_json(thumos_gt, fps=fps)
    assert all(v["fps"] > 23 for v in ann["database"].values())


def test_fps_and_durations_arguments(tmp_path: Path) -> None:
    path = _write(tmp_path, _gt({"b": GOOD_VIDEO, "a": {**GOOD_VIDEO, "subset": "test"}}))
    ann = read_gt_json(path, fps=25, durations={"a": 10, "b": 20.5})
    assert ann["database"] == {
        "a": {
            "subset": "test",
            "duration": 10.0,
            "fps": 25.0,
            "annotations": [{"segment": [1.5, 3.0], "label": "Jump"}],
        },
        "b": {
            "subset": "train",
            "duration": 20.5,
            "fps": 25.0,
            "annotations": [{"segment": [1.5, 3.0], "label": "Jump"}],
        },
    }
    assert ann["classes"] == ["Jump"]
    with pytest.raises(AnnotationError, match="video 'b' has no 'fps'"):
        read_gt_json(path, fps={"a": 25.0})


def test_subset_mapping(tmp_path: Path) -> None:
    path = _write(tmp_path, _gt({"v1": {**GOOD_VIDEO, "subset": "validation"}}))
    with pytest.raises(AnnotationError, match=r"video 'v1' key 'subset': unknown subset 'validation'.*allowed"):
        read_gt_json(path)
    ann = read_gt_json(path, subsets={"validation": "train"})
    assert ann["database"]["v1"]["subset"] == "train"
    with pytest.raises(AnnotationError, match="target must be one of"):
        read_gt_json(path, subsets={"validation": "val"})


def test_skip_subset_leaves_its_videos_out(tmp_path: Path) -> None:
    """ActivityNet's unannotated `testing` subset: mapped to skip, its videos are not read at all."""
    path = _write(
        tmp_path,
        _gt(
            {
                "a": {**GOOD_VIDEO, "subset": "training"},
                "b": {"subset": "validation", "annotations": [{"segment": [0, 1], "label": "Throw"}]},
                "c": {"subset": "testing", "annotations": [{"segment": [0, 1], "label": "Other"}], "duration": "bad"},
            }
        ),
    )
    ann = read_gt_json(path, subsets={"training": "train", "validation": "test", "testing": "skip"})
    assert {vid: v["subset"] for vid, v in ann["database"].items()} == {"a": "train", "b": "test"}
    assert ann["classes"] == ["Jump", "Throw"]  # classes of the kept videos only
    with pytest.raises(AnnotationError, match=r"video 'c' key 'subset': unknown subset 'testing'"):
        read_gt_json(path, subsets={"training": "train", "validation": "test"})


def test_per_video_fps_and_num_frames(tmp_path: Path) -> None:
    """GTEA/BEOID layout: fps and num_frames per video; num_frames / fps is the duration when none is given."""
    path = _write(
        tmp_path,
        _gt(
            {
                "with_duration": {**GOOD_VIDEO, "fps": 15, "num_frames": 1168, "duration": 77.8},
                "frames_only": {**GOOD_VIDEO, "fps": 30, "num_frames": "1534"},
                "no_fps": {**GOOD_VIDEO, "num_frames": 100},
            }
        ),
    )
    db = read_gt_json(path)["database"]
    assert db["with_duration"]["fps"] == 15.0 and db["with_duration"]["duration"] == 77.8  # duration wins
    assert db["frames_only"]["fps"] == 30.0 and db["frames_only"]["duration"] == pytest.approx(1534 / 30)
    assert "duration" not in db["no_fps"] and "fps" not in db["no_fps"]  # left to the container
    assert read_gt_json(path, fps=25)["database"]["frames_only"]["duration"] == pytest.approx(1534 / 25)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, r"key 'num_frames': expected a positive number, got 0"),
        (12.5, r"key 'num_frames': expected a whole number of frames, got 12.5"),
        ("many", r"key 'num_frames': expected a number, got 'many'"),
    ],
)
def test_bad_num_frames_names_file_video_and_key(tmp_path: Path, value, message: str) -> None:
    path = _write(tmp_path, _gt({"v1": {**GOOD_VIDEO, "fps": 15, "num_frames": value}}))
    with pytest.raises(AnnotationError, match=rf"gt.json: video 'v1' {message}"):
        read_gt_json(path)


def _instances_per_class(ann: dict, subset: str) -> collections.Counter:
    return collections.Counter(
        a["label"] for v in ann["database"].values() if v["subset"] == subset for a in v["annotations"]
    )


@needs_gtea
def test_real_gtea_gt() -> None:
    """GTEA as published with SF-Net: 28 videos at 15 fps, 7 classes, validation = the test split."""
    ann = read_gt_json(GTEA / "gt.json", subsets=SFNET_SUBSETS)
    db = ann["database"]
    assert collections.Counter(v["subset"] for v in db.values()) == {"train": 21, "test": 7}
    assert ann["classes"] == ["close", "open", "pour", "put", "scoop", "stir", "take"]
    assert {v["fps"] for v in db.values()} == {15.0}
    train, test = _instances_per_class(ann, "train"), _instances_per_class(ann, "test")
    assert sum(train.values()) == 367 and sum(test.values()) == 130
    assert train["take"] + test["take"] == 133 and train["stir"] + test["stir"] == 14  # counted from the file
    raw = json.loads((GTEA / "gt.json").read_text())["database"]
    assert all(db[vid]["duration"] == pytest.approx(raw[vid]["num_frames"] / 15) for vid in db)
    with pytest.raises(AnnotationError, match=r"video '\S+' key 'subset': unknown subset 'training'"):
        read_gt_json(GTEA / "gt.json")  # the THUMOS'14 default mapping does not know these subsets


@needs_beoid
def test_real_beoid_gt() -> None:
    """BEOID as published with SF-Net: 58 videos at 30 fps, 34 classes, validation = the test split."""
    ann = read_gt_json(BEOID / "gt.json", subsets=SFNET_SUBSETS)
    db = ann["database"]
    assert collections.Counter(v["subset"] for v in db.values()) == {"train": 46, "test": 12}
    assert len(ann["classes"]) == 34 and {v["fps"] for v in db.values()} == {30.0}
    train, test = _instances_per_class(ann, "train"), _instances_per_class(ann, "test")
    assert sum(train.values()) == 594 and sum(test.values()) == 148
    total = train + test
    assert total["press_button"] == 184 and total["fill_cup"] == 5 and total["pull_rowing-machine"] == 114
    lengths = sorted(e - s for v in db.values() for s, e in (a["segment"] for a in v["annotations"]))
    assert lengths[len(lengths) // 2] == pytest.approx(1.2, abs=0.05)  # median instance 1.2 s (datasets README)


@pytest.mark.parametrize(
    ("database", "message"),
    [
        ({"v1": {"annotations": []}}, r"video 'v1'.*missing key 'subset'"),
        ({"v1": {"subset": "train"}}, r"video 'v1'.*missing key 'annotations'"),
        (
            {"v1": {"subset": "train", "annotations": [{"label": "Jump"}]}},
            r"video 'v1' annotation 0.*missing key 'segment'",
        ),
        (
            {"v1": {"subset": "train", "annotations": [{"segment": [1, 2]}]}},
            r"video 'v1' annotation 0.*missing key 'label'",
        ),
        (
            {"v1": {"subset": "train", "annotations": [{"segment": ["5.0", "4.0"], "label": "Jump"}]}},
            r"video 'v1' annotation 0 key 'segment': end 4.0 is before start 5.0",
        ),
        (
            {"v1": {"subset": "train", "annotations": [{"segment": ["abc", "4.0"], "label": "Jump"}]}},
            r"video 'v1' annotation 0 key 'segment' start: expected a number, got 'abc'",
        ),
        (
            {"v1": {"subset": "train", "annotations": [{"segment": [1.0], "label": "Jump"}]}},
            r"expected \[start, end\]",
        ),
        (
            {"v1": {"subset": "train", "annotations": [{"segment": [-1.0, 2.0], "label": "Jump"}]}},
            r"start -1.0 is negative",
        ),
        ({"v1": {"subset": "train", "annotations": []}}, r"no labelled segments, so no classes"),
        ({"../evil": GOOD_VIDEO}, r"video id '../evil' contains '/'"),
        ({"a..b": GOOD_VIDEO}, r"video id 'a..b' contains '..'"),
        ({"dir/v1": GOOD_VIDEO}, r"video id 'dir/v1' contains '/'"),
        ({"dir\\v1": GOOD_VIDEO}, r"contains '\\\\'"),
        ({"": GOOD_VIDEO}, r"must be a non-empty file name"),
    ],
)
def test_bad_gt(tmp_path: Path, database: dict, message: str) -> None:
    path = _write(tmp_path, _gt(database))
    with pytest.raises(AnnotationError, match=message) as info:
        read_gt_json(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "vid, message",
    [
        (".tmp-x", r"starts with '\.tmp-', the prefix of the temporary files that every stage deletes"),
        ("manifest", r"is the name of the decode and flow stages' manifest\.json"),
        ("Manifest", r"is the name of the decode and flow stages' manifest\.json"),  # one file on macOS
        (".hidden", r"starts with '\.' \(a hidden file name\)"),
        ("a:b", r"contains ':'; ids become file names"),
        ("tab\there", r"contains '\\t'; ids become file names"),
        ("v" * 201, r"is 201 bytes long, above the limit of 200 \(sources\.annotations\.MAX_ID_BYTES"),
    ],
)
def test_ids_that_collide_with_stage_files_are_refused(tmp_path: Path, vid: str, message: str) -> None:
    """Ids become file names beside the atomic writer's temporary files and the stages' manifests:
    `.tmp-x` was deleted by every stage, `manifest` overwrote the manifest; both are refused, in
    every reader, naming the id and the file."""
    path = _write(tmp_path, _gt({vid: GOOD_VIDEO, "v1": GOOD_VIDEO}))
    with pytest.raises(AnnotationError, match=message) as info:
        read_gt_json(path)
    assert str(info.value).startswith(f"{path}: video id {vid[:40]!r}")
    fps = _write(tmp_path, json.dumps({vid: 25}), "fps.json")
    with pytest.raises(AnnotationError, match=message):
        read_fps_dict(fps)
    project = {
        "database": {vid: {"subset": "test", "duration": 5.0, "fps": 25.0, "annotations": []}},
        "classes": ["Jump"],
    }
    with pytest.raises(AnnotationError, match=message):
        validate_annotations(project, where="annotations.json")


def test_gt_with_tmp_and_manifest_ids(tmp_path: Path) -> None:
    """The issue's gt.json: both ids in one file; the first refused names itself and the file."""
    path = _write(tmp_path, _gt({".tmp-x": GOOD_VIDEO, "manifest": GOOD_VIDEO}))
    with pytest.raises(AnnotationError, match=rf"^{path}: video id '\.tmp-x' starts with '\.tmp-'"):
        read_gt_json(path)
    path = _write(tmp_path, _gt({"v1": GOOD_VIDEO, "manifest": GOOD_VIDEO}))
    with pytest.raises(AnnotationError, match=rf"^{path}: video id 'manifest' is the name of"):
        read_gt_json(path)


def test_duplicate_video_ids(tmp_path: Path) -> None:
    video = json.dumps(GOOD_VIDEO)
    path = _write(tmp_path, f'{{"database": {{"v1": {video}, "v2": {video}, "v1": {video}}}}}')
    with pytest.raises(AnnotationError, match=r"key 'database': duplicate video id\(s\) 'v1'"):
        read_gt_json(path)


def test_missing_database_and_bad_json(tmp_path: Path) -> None:
    with pytest.raises(AnnotationError, match="missing key 'database'"):
        read_gt_json(_write(tmp_path, '{"videos": {}}'))
    with pytest.raises(AnnotationError, match="not a valid JSON"):
        read_gt_json(_write(tmp_path, '{"database": '))
    with pytest.raises(AnnotationError, match="not found"):
        read_gt_json(tmp_path / "absent.json")


def test_bad_fps_dict(tmp_path: Path) -> None:
    with pytest.raises(AnnotationError, match=r"video 'v1' fps: expected a positive number, got 0"):
        read_fps_dict(_write(tmp_path, '{"v1": 0}', "fps.json"))
    with pytest.raises(AnnotationError, match=r"duplicate video id\(s\) 'v1'"):
        read_fps_dict(_write(tmp_path, '{"v1": 25, "v1": 30}', "fps.json"))
    assert read_fps_dict(_write(tmp_path, '{"v1": 25, "v2": "29.97"}', "fps.json")) == {"v1": 25.0, "v2": 29.97}


def _project(segments: list[list[float]], *, duration: float = 10.0) -> dict:
    return {
        "database": {
            "v1": {
                "subset": "test",
                "duration": duration,
                "fps": 30.0,
                "annotations": [
                    {"segment": s, "label": "Jump", "salient": s[0] + 0.5 * (s[1] - s[0])} for s in segments
                ],
            }
        },
        "classes": ["Jump"],
    }


def test_clip_segments(caplog: pytest.LogCaptureFixture) -> None:
    ann = _project([[2.0, 5.0], [8.0, 14.0], [11.0, 13.0]], duration=20.0)
    with caplog.at_level(logging.WARNING, logger="sources.annotations"):
        clipped, report = clip_segments(ann, {"v1": 10.0})
    segments = clipped["database"]["v1"]["annotations"]
    assert segments == [
        {"segment": [2.0, 5.0], "label": "Jump", "salient": 3.5},
        {"segment": [8.0, 10.0], "label": "Jump", "salient": 10.0},  # salient 11 moved onto the end
    ]
    assert clipped["database"]["v1"]["duration"] == 10.0
    assert report == [
        ClippedSegment("v1", "Jump", (8.0, 14.0), (8.0, 10.0)),
        ClippedSegment("v1", "Jump", (11.0, 13.0), None),
    ]
    assert "2 segment(s) extend past the end of their video: 1 clipped, 1 dropped" in caplog.text
    assert len(ann["database"]["v1"]["annotations"]) == 3  # input untouched


def test_clip_segments_nothing_to_do(caplog: pytest.LogCaptureFixture) -> None:
    ann = _project([[2.0, 5.0]])
    with caplog.at_level(logging.WARNING, logger="sources.annotations"):
        clipped, report = clip_segments(ann)
    assert clipped == ann and report == [] and caplog.text == ""
    with pytest.raises(AnnotationError, match="no duration given for video 'v1'"):
        clip_segments(ann, {"other": 3.0})


def test_write_and_read_annotations(tmp_path: Path) -> None:
    ann = _project([[2.0, 5.0], [6.0, 7.5]])
    path = tmp_path / "out" / "annotations.json"
    write_annotations(path, ann)
    assert read_annotations(path) == ann
    assert [p.name for p in path.parent.iterdir()] == ["annotations.json"]  # no temp file left


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a["database"]["v1"]["annotations"][0].update(label="Run"), "label 'Run' is not in 'classes'"),
        (
            lambda a: a["database"]["v1"]["annotations"][0].update(salient=9.0),
            r"salient time 9.0 is outside \[2.0, 5.0\]",
        ),
        (
            lambda a: a["database"]["v1"]["annotations"][0].update(segment=[2.0, 12.0]),
            "end 12.0 is after the video end 10.0",
        ),
        (lambda a: a["database"]["v1"].update(subset="validation"), "'validation' is not one of"),
        (lambda a: a["database"]["v1"].pop("fps"), "missing key 'fps'"),
        (lambda a: a.update(classes=["b", "a"]), "must be sorted"),
    ],
)
def test_write_rejects_bad_annotations(tmp_path: Path, change, message: str) -> None:
    ann = _project([[2.0, 5.0]])
    change(ann)
    path = tmp_path / "annotations.json"
    with pytest.raises(AnnotationError, match=message):
        write_annotations(path, ann)
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_validate_accepts_project_file() -> None:
    validate_annotations(_project([[0.0, 10.0]]))
