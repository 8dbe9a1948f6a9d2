"""Tests of lacp.points.formats: LACP points CSV, SF-Net clicks, THUMOS'14 ground truth."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from lacp.points.formats import (
    LACP_COLUMNS,
    Click,
    Point,
    PointFileError,
    read_points_csv,
    read_sfnet_clicks,
    write_points_csv,
)
from tests.shared_data import THUMOS, needs_thumos, thumos_annotations


def _annotations() -> dict:
    return {
        "database": {
            "v1": {
                "subset": "train",
                "duration": 10.0,
                "fps": 25.0,
                "annotations": [{"segment": [1.0, 2.0], "label": "Jump"}],
            },
            "v2": {
                "subset": "train",
                "duration": 8.0,
                "fps": 30.0,
                "annotations": [{"segment": [0.2, 0.5], "label": "Run"}],
            },
            "t1": {
                "subset": "test",
                "duration": 5.0,
                "fps": 25.0,
                "annotations": [{"segment": [1.0, 2.0], "label": "Run"}],
            },
        },
        "classes": ["Jump", "Run"],
    }


def _write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode())
    return path


def test_write_points_csv_exact_bytes_and_no_temp_left(tmp_path):
    points = [Point("v1", "Jump", 0, 25, 50, 38, 1.52), Point("v2", "Run", 1, 6, 15, 11, 11 / 30)]
    out = tmp_path / "sub" / "points.csv"
    write_points_csv(points, out)
    assert out.read_text() == (
        "class,class_index,start_frame,stop_frame,video_id,point,time\n"
        "Jump,0,25,50,v1,38,1.520000\n"
        "Run,1,6,15,v2,11,0.366667\n"
    )
    assert [p.name for p in out.parent.iterdir()] == ["points.csv"]


def test_points_csv_round_trip(tmp_path):
    points = [Point("v1", "Jump", 0, 25, 50, 38, 1.52), Point("v2", "Run", 1, 6, 15, 11, 0.366667)]
    write_points_csv(points, tmp_path / "p.csv")
    assert read_points_csv(tmp_path / "p.csv", _annotations()) == points


def test_read_points_csv_without_time_uses_source_fps(tmp_path):
    path = _write(tmp_path / "p.csv", ",".join(LACP_COLUMNS) + "\r\nRun,1,6,15,v2,12\r\n\r\n")
    (point,) = read_points_csv(path, _annotations())
    assert point == Point("v2", "Run", 1, 6, 15, 12, 0.4)  # 12 frames / 30 fps


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ("Jump,0,25,50,v9,38", "video 'v9' is not in the annotations"),
        ("Run,1,25,50,t1,38", "'test' video; points may only label training videos"),
        ("Walk,0,25,50,v1,38", "class 'Walk' (video 'v1') is not one of the annotation classes"),
        ("Jump,1,25,50,v1,38", "class_index 1 of class 'Jump' should be 0"),
        ("Jump,0,50,50,v1,38", "expected 0 <= start_frame < stop_frame, got 50, 50"),
        ("Jump,0,25,50,v1,-1", "point must be >= 0"),
        ("Jump,0,25,5x,v1,38", "column 'stop_frame' must be an integer frame, got '5x'"),
        ("Jump,0,25,50,v1", "expected 6 fields, got 5"),
    ],
)
def test_read_points_csv_errors_name_file_line_and_expectation(tmp_path, row, expected):
    path = _write(tmp_path / "p.csv", ",".join(LACP_COLUMNS) + "\nJump,0,25,50,v1,38\n" + row + "\n")
    with pytest.raises(PointFileError) as err:
        read_points_csv(path, _annotations())
    assert f"{path}:3: " in str(err.value)
    assert expected in str(err.value)
    assert err.value.line == 3
    assert isinstance(err.value, ValueError)


def test_read_points_csv_rejects_bad_header_and_missing_file(tmp_path):
    path = _write(tmp_path / "p.csv", "class,index,start_frame,stop_frame,video_id,point\n")
    expected = r"p\.csv:1: header must hold .*missing \['class_index'\], unknown \['index'\]"
    with pytest.raises(PointFileError, match=expected):
        read_points_csv(path, _annotations())
    with pytest.raises(PointFileError, match="points file not found"):
        read_points_csv(tmp_path / "none.csv", _annotations())


def test_read_sfnet_clicks_accepts_crlf_blank_lines_and_spaces(tmp_path):
    path = _write(tmp_path / "m.txt", "v1,1.5,Jump\r\n\r\nv2, 0.25 , Run \r\n\r\n\n v1,3,Jump")
    assert read_sfnet_clicks(path) == [
        Click("v1", 1.5, "Jump", 1),
        Click("v2", 0.25, "Run", 3),
        Click("v1", 3.0, "Jump", 6),
    ]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("v1,1.5", "expected 'video_id,seconds,class'"),
        ("v1,1.5,Jump,extra", "expected 'video_id,seconds,class'"),
        ("v1,,Jump", "column 'seconds' must be a number"),
        ("v1,abc,Jump", "column 'seconds' must be a number, got 'abc'"),
        ("v1,nan,Jump", "column 'seconds' must be finite"),
        ("v1,-2,Jump", "click time must be >= 0 s"),
    ],
)
def test_read_sfnet_clicks_errors(tmp_path, line, expected):
    path = _write(tmp_path / "m.txt", "v1,1.5,Jump\r\n\r\n" + line + "\r\n")
    with pytest.raises(PointFileError, match=r"m\.txt:3: ") as err:
        read_sfnet_clicks(path)
    assert expected in str(err.value)


@needs_thumos
def test_released_thumos_points_read_back_inside_their_instances():
    ann = thumos_annotations()
    points = read_points_csv(THUMOS / "point_labels_gaussian.csv", ann)
    assert len(points) == 3003
    assert len({p.video_id for p in points}) == 200
    assert all(p.start_frame <= p.point <= p.stop_frame for p in points)
    # class_index is the index in the alphabetically sorted class list (checked per row by the reader)
    assert ann["classes"][0] == "BaseballPitch" and ann["classes"][19] == "VolleyballSpiking"
    assert {p.class_index for p in points} == set(range(20))


@needs_thumos
def test_released_thumos_frames_are_rounded_seconds_times_fps():
    """The released file's instance frames are rint(seconds * fps), except that a segment
    starting at 0.0 s is written with start frame 1; four ground-truth instances (two videos)
    have no row."""
    ann = thumos_annotations()
    points = read_points_csv(THUMOS / "point_labels_gaussian.csv", ann)
    released = {(p.video_id, p.class_name, p.start_frame, p.stop_frame) for p in points}
    missing = []
    for vid, entry in ann["database"].items():
        if entry["subset"] != "train":
            continue
        for a in entry["annotations"]:
            start, stop = (round(t * entry["fps"]) for t in a["segment"])
            key = (vid, a["label"], max(start, 1), stop)
            if key in released:
                released.discard(key)
            else:
                missing.append((vid, a["label"], *a["segment"]))
    assert released == set()
    assert sorted(missing) == [
        ("video_validation_0000364", "HighJump", 113.6, 117.3),
        ("video_validation_0000364", "HighJump", 120.5, 127.0),
        ("video_validation_0000856", "SoccerPenalty", 84.3, 85.5),
        ("video_validation_0000856", "SoccerPenalty", 85.9, 91.5),
    ]


@needs_thumos
@pytest.mark.parametrize(("index", "count"), [(1, 2980), (2, 2920), (3, 3014), (4, 2986)])
def test_released_manual_click_counts(index, count):
    clicks = read_sfnet_clicks(THUMOS / f"manual_THUMOS{index}.txt")
    assert len(clicks) == count
    assert all(c.class_name == c.class_name.strip() and math.isfinite(c.seconds) for c in clicks)
    assert np.all(np.array([c.seconds for c in clicks]) >= 0)
