"""Tests of sources.directory: finding user videos, container durations, missing-video errors."""

from __future__ import annotations

import json
import logging
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from sources.annotations import AnnotationError
from sources.directory import DatasetError, find_videos, prepare_directory, probe_video
from tests.shared_data import GTEA, SFNET_SUBSETS, needs_gtea

SHARED = Path(__file__).parents[2] / "shared"
THUMOS = SHARED / "datasets" / "thumos14"


def _tiny_video(path: Path, *, frames: int = 10, fps: int = 10) -> Path:
    """Write a 32x32 H.264 video of `frames` frames at `fps` (duration frames / fps)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(frames):
            image = np.full((32, 32, 3), (10 * i) % 256, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def _gt_file(tmp_path: Path, database: dict) -> Path:
    path = tmp_path / "gt.json"
    path.write_text(json.dumps({"database": database}))
    return path


def test_prepare_small_folder(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    videos_dir = tmp_path / "videos"
    a = _tiny_video(videos_dir / "vid_a.mp4", frames=10, fps=10)  # 1.0 s
    b = _tiny_video(videos_dir / "nested" / "vid_b.MKV", frames=30, fps=15)  # 2.0 s, found recursively
    _tiny_video(videos_dir / "unannotated.mp4")
    gt = _gt_file(
        tmp_path,
        {
            "vid_a": {
                "subset": "validation",
                "annotations": [
                    {"segment": ["0.2", "0.5"], "label": "Jump"},
                    {"segment": ["0.8", "1.5"], "label": "Jump"},
                ],
            },
            "vid_b": {"subset": "test", "annotations": [{"segment": [0.5, 1.0], "label": "Throw"}]},
        },
    )
    before = sorted(p.name for p in videos_dir.rglob("*"))
    with caplog.at_level(logging.WARNING):
        ann, videos = prepare_directory(videos_dir, gt, subsets={"validation": "train"})
    assert videos == {"vid_a": str(a.resolve()), "vid_b": str(b.resolve())}  # referenced, absolute
    assert sorted(p.name for p in videos_dir.rglob("*")) == before  # nothing written or copied
    db = ann["database"]
    assert db["vid_a"]["subset"] == "train" and db["vid_b"]["subset"] == "test"
    assert db["vid_a"]["duration"] == pytest.approx(1.0) and db["vid_b"]["duration"] == pytest.approx(2.0)
    assert db["vid_a"]["fps"] == 10.0 and db["vid_b"]["fps"] == 15.0
    # the second segment ran past the 1 s video: clipped, with a warning
    assert [x["segment"] for x in db["vid_a"]["annotations"]] == [[0.2, 0.5], [0.8, pytest.approx(1.0)]]
    assert "1 clipped, 0 dropped" in caplog.text
    assert ann["classes"] == ["Jump", "Throw"]


def test_fps_json_overrides_container(tmp_path: Path) -> None:
    _tiny_video(tmp_path / "v" / "vid_a.mp4")
    gt = _gt_file(tmp_path, {"vid_a": {"subset": "train", "annotations": [{"segment": [0, 0.5], "label": "Jump"}]}})
    fps = tmp_path / "fps.json"
    fps.write_text('{"vid_a": 29.97}')
    ann, _ = prepare_directory(tmp_path / "v", gt, fps_json=fps)
    assert ann["database"]["vid_a"]["fps"] == 29.97
    fps.write_text('{"other": 25}')
    with pytest.raises(DatasetError, match=r"fps.json: no frame rate for 1 video\(s\): vid_a"):
        prepare_directory(tmp_path / "v", gt, fps_json=fps)


def test_frame_rate_precedence_fps_json_then_gt_then_container(tmp_path: Path) -> None:
    _tiny_video(tmp_path / "v" / "with_fps.mp4", fps=10)
    _tiny_video(tmp_path / "v" / "without.mp4", fps=10)
    ann_gt = {"subset": "train", "annotations": [{"segment": [0, 0.5], "label": "Jump"}]}
    gt = _gt_file(tmp_path, {"with_fps": {**ann_gt, "fps": 15, "num_frames": 15}, "without": ann_gt})
    db = prepare_directory(tmp_path / "v", gt)[0]["database"]
    assert db["with_fps"]["fps"] == 15.0 and db["without"]["fps"] == 10.0  # gt.json's, else the container's
    assert db["with_fps"]["duration"] == pytest.approx(1.0)  # durations are the containers' (10 frames at 10 fps)
    fps = tmp_path / "fps.json"
    fps.write_text('{"with_fps": 29.97, "without": 25}')
    db = prepare_directory(tmp_path / "v", gt, fps_json=fps)[0]["database"]
    assert db["with_fps"]["fps"] == 29.97 and db["without"]["fps"] == 25.0  # the fps file wins


@needs_gtea
def test_real_gtea_gt_through_the_directory_source(tmp_path: Path) -> None:
    """Two stand-in videos for the published gt.json: subsets mapped, gt.json's 15 fps kept over the container's 10."""
    folder = tmp_path / "gtea"
    _tiny_video(folder / "S1_Cheese_C1.mp4", frames=20, fps=10)
    _tiny_video(folder / "S1_Tea_C1.mp4", frames=20, fps=10)
    with pytest.raises(DatasetError, match=r"26 of 28 annotated videos not found"):
        prepare_directory(folder, GTEA / "gt.json", subsets=SFNET_SUBSETS)
    ann, videos = prepare_directory(folder, GTEA / "gt.json", subsets=SFNET_SUBSETS, allow_missing=True)
    db = ann["database"]
    assert sorted(videos) == ["S1_Cheese_C1", "S1_Tea_C1"]
    assert {vid: (v["subset"], v["fps"]) for vid, v in db.items()} == {
        "S1_Cheese_C1": ("train", 15.0),
        "S1_Tea_C1": ("test", 15.0),
    }
    assert len(ann["classes"]) == 7


def test_probe_video_reads_header(tmp_path: Path) -> None:
    info = probe_video(_tiny_video(tmp_path / "x.mp4", frames=25, fps=25))
    assert info.fps == 25.0 and info.duration == pytest.approx(1.0)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    with pytest.raises(DatasetError, match=r"bad.mp4: cannot read the video header"):
        probe_video(bad)


def test_real_gt_reports_missing_thumos_videos(tmp_path: Path) -> None:
    if not THUMOS.is_dir():
        pytest.skip("shared THUMOS'14 files absent")
    folder = tmp_path / "thumos"
    _tiny_video(folder / "video_test_0000004.mp4")
    _tiny_video(folder / "video_validation_0000051.avi", frames=100, fps=25)  # avi ending, h264 inside
    with pytest.raises(DatasetError) as info:
        prepare_directory(folder, THUMOS / "gt.json")
    message = str(info.value)
    assert message.startswith(f"{folder}: 408 of 410 annotated videos not found")
    # the first 20 missing ids in sorted order, then a count of the rest
    assert "video_test_0000006, video_test_0000007," in message and "... and 388 more" in message
    assert "video_test_0000004," not in message and "video_validation_0000051" not in message

    ann, videos = prepare_directory(folder, THUMOS / "gt.json", fps_json=THUMOS / "fps_dict.json", allow_missing=True)
    assert sorted(videos) == ["video_test_0000004", "video_validation_0000051"]
    db = ann["database"]
    assert db["video_validation_0000051"]["subset"] == "train" and db["video_validation_0000051"][
        "duration"
    ] == pytest.approx(4.0)
    assert db["video_validation_0000051"]["fps"] == 30.0  # from fps_dict.json, not the container's 25
    assert len(ann["classes"]) == 20  # the dataset's class list is kept


def test_missing_with_allow_missing_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _tiny_video(tmp_path / "v" / "here.mp4")
    (tmp_path / "v" / "broken.mp4").write_bytes(b"\x00" * 100)
    ann_gt = {"subset": "train", "annotations": [{"segment": [0, 0.5], "label": "Jump"}]}
    gt = _gt_file(tmp_path, {"here": ann_gt, "gone": ann_gt, "broken": ann_gt})
    with pytest.raises(DatasetError, match=r"1 of 3 annotated videos not found .*: gone\. 1 unreadable: .*broken.mp4"):
        prepare_directory(tmp_path / "v", gt)
    with caplog.at_level(logging.WARNING, logger="sources.directory"):
        ann, videos = prepare_directory(tmp_path / "v", gt, allow_missing=True)
    assert list(videos) == ["here"] and list(ann["database"]) == ["here"]
    assert "Dropped (allow_missing)" in caplog.text and "gone" in caplog.text


def test_nothing_left_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "v").mkdir()
    gt = _gt_file(tmp_path, {"gone": {"subset": "train", "annotations": [{"segment": [0, 1], "label": "Jump"}]}})
    with pytest.raises(DatasetError, match="No annotated video is left"):
        prepare_directory(tmp_path / "v", gt, allow_missing=True)


def test_empty_folder_looks_unreachable(tmp_path: Path) -> None:
    """An unmounted drive's mount point is an empty folder: not one video there says so."""
    (tmp_path / "v").mkdir()
    ann = {"subset": "train", "annotations": [{"segment": [0, 1], "label": "Jump"}]}
    gt = _gt_file(tmp_path, {"a": ann, "b": ann})
    with pytest.raises(
        DatasetError,
        match=r"2 of 2 annotated videos not found .*: a, b\. Not one is there: the "
        r"folder looks unreachable \(an unmounted drive or share",
    ):
        prepare_directory(tmp_path / "v", gt)


def test_find_videos_ambiguous_and_extensions(tmp_path: Path) -> None:
    (tmp_path / "a.mp4").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.MP4").write_bytes(b"")
    (tmp_path / "b.mov").write_bytes(b"")
    (tmp_path / "c.txt").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"several files for one video id .*a: .*a.mp4, .*a.MP4"):
        find_videos(tmp_path, ["a", "b"])
    found, missing = find_videos(tmp_path, ["b", "c", "d"], extensions=[".MOV", "txt"])
    assert found == {"b": (tmp_path / "b.mov").resolve(), "c": (tmp_path / "c.txt").resolve()}
    assert missing == ["d"]


def test_bad_folder_and_gt(tmp_path: Path) -> None:
    gt = _gt_file(tmp_path, {"v/1": {"subset": "train", "annotations": [{"segment": [0, 1], "label": "Jump"}]}})
    (tmp_path / "v").mkdir()
    with pytest.raises(AnnotationError, match=r"video id 'v/1' contains '/'"):
        prepare_directory(tmp_path / "v", gt)
    good = _gt_file(tmp_path, {"v1": {"subset": "train", "annotations": [{"segment": [0, 1], "label": "Jump"}]}})
    with pytest.raises(DatasetError, match="video folder not found"):
        prepare_directory(tmp_path / "absent", good)
    with pytest.raises(DatasetError, match="extensions: expected non-empty file endings"):
        prepare_directory(tmp_path / "v", good, extensions=[])
