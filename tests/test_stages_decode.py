"""decode stage: per-video failures reported by id, the rest finished, reruns skip, params changes redo."""

from __future__ import annotations

import json
import logging
import os
from fractions import Fraction
from pathlib import Path

import pytest

from core.files import write_json
from stages.artifacts import available_videos
from stages.common import VideoError, run_plan
from stages.decode import DecodeParams, SourcesUnreachableError, plan
from tests.videos import write_indexed_video


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """A dataset folder with two good videos and three bad ones."""
    root = tmp_path / "dataset"
    vids = root / "videos"
    vids.mkdir(parents=True)
    write_indexed_video(vids / "good_a.mp4", list(range(30)), time_base=Fraction(1, 30))
    write_indexed_video(vids / "good_b.mp4", list(range(20)), time_base=Fraction(1, 25))
    write_indexed_video(vids / "short.mp4", list(range(5)), time_base=Fraction(1, 25))
    (vids / "empty.mp4").write_bytes(b"")
    (vids / "text.mp4").write_text("not a video\n")
    write_json(
        root / "videos.json",
        {v: f"videos/{v}.mp4" for v in ["good_a", "good_b", "short", "empty", "text"]} | {"gone": "videos/gone.mp4"},
    )
    return root


def test_failures_are_reported_and_the_rest_finishes(dataset: Path, tmp_path: Path):
    out = tmp_path / "decoded"
    summary = run_plan(plan(DecodeParams(short_side=48), dataset_dir=dataset, out_dir=out))
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["videos"]) == ["good_a", "good_b"]
    assert manifest["videos"]["good_a"]["frames_out"] == 25
    assert manifest["videos"]["good_b"]["frames_out"] == 20
    failed = manifest["failed"]
    assert set(failed) == {"short", "empty", "text", "gone"}
    assert "too short: 5 frames" in failed["short"]
    assert "empty file" in failed["empty"]
    assert "not a readable video" in failed["text"]
    assert failed["gone"] == (
        f"source file not found: {dataset / 'videos' / 'gone.mp4'} (restore it, or reconnect its folder, and rerun)"
    )
    assert summary["decoded"] == 2 and summary["failed"] == 4 and summary["missing_sources"] == 1
    assert sorted(p.name for p in out.iterdir()) == [
        "good_a.json",
        "good_a.mp4",
        "good_b.json",
        "good_b.mp4",
        "manifest.json",
    ]


def test_rerun_skips_finished_videos_and_params_change_redoes_them(dataset: Path, tmp_path: Path):
    out = tmp_path / "decoded"
    run_plan(plan(DecodeParams(short_side=48), dataset_dir=dataset, out_dir=out))
    first = (out / "good_a.mp4").read_bytes()

    again = run_plan(plan(DecodeParams(short_side=48), dataset_dir=dataset, out_dir=out))
    assert again["skipped"] == 2 and again["decoded"] == 0
    assert (out / "good_a.mp4").read_bytes() == first

    changed = run_plan(plan(DecodeParams(short_side=32), dataset_dir=dataset, out_dir=out))
    assert changed["decoded"] == 2 and changed["skipped"] == 0
    assert json.loads((out / "manifest.json").read_text())["videos"]["good_a"]["height"] == 32


def test_interrupted_write_leaves_no_output(dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A crash mid-encode leaves neither a half-written mp4 nor a sidecar; a rerun completes."""
    import stages.decode as decode

    out = tmp_path / "decoded"

    def crash(src, dst, **kwargs):
        Path(dst).write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(decode, "decode_to_mp4", crash)
    with pytest.raises(KeyboardInterrupt):
        run_plan(plan(DecodeParams(short_side=48), dataset_dir=dataset, out_dir=out))
    assert not (out / "good_a.mp4").exists() and not list(out.glob(".tmp-*"))
    monkeypatch.undo()
    summary = run_plan(plan(DecodeParams(short_side=48), dataset_dir=dataset, out_dir=out))
    assert summary["decoded"] == 2


def test_code_change_redoes_finished_videos(dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """DVC reruns the stage when its code changes; the stage must then redo, not skip, videos."""
    import stages.decode as decode

    out = tmp_path / "decoded"
    run_plan(plan(DecodeParams(short_side=48), dataset_dir=dataset, out_dir=out))
    monkeypatch.setattr(decode, "code_fingerprint", lambda *modules: "another-code-version")
    summary = run_plan(plan(DecodeParams(short_side=48), dataset_dir=dataset, out_dir=out))
    assert summary["decoded"] == 2 and summary["skipped"] == 0


def _outputs(out: Path) -> dict[str, bytes]:
    """Every decoded mp4 and sidecar of a decode folder, by name (the manifest aside)."""
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.name != "manifest.json"}


def test_unreachable_video_folder_deletes_nothing(dataset: Path, tmp_path: Path):
    """The video folder out of reach (renamed): the rerun stops, names the folder and the sources,
    and every decoded mp4, sidecar and the manifest stay byte-identical; once it is back, all skip."""
    out = tmp_path / "decoded"
    run_plan(plan(DecodeParams(short_side=48), dataset_dir=dataset, out_dir=out))
    before, manifest = _outputs(out), (out / "manifest.json").read_bytes()
    assert sorted(before) == ["good_a.json", "good_a.mp4", "good_b.json", "good_b.mp4"]

    (dataset / "videos").rename(dataset / "unmounted")
    with pytest.raises(SourcesUnreachableError) as err:
        run_plan(plan(DecodeParams(short_side=48), dataset_dir=dataset, out_dir=out))
    message = str(err.value)
    assert f"none of the 6 source videos can be found ({dataset / 'videos' / 'empty.mp4'}, " in message
    assert f"their folder {dataset / 'videos'} looks unreachable" in message
    assert _outputs(out) == before and (out / "manifest.json").read_bytes() == manifest

    (dataset / "unmounted").rename(dataset / "videos")
    again = run_plan(plan(DecodeParams(short_side=48), dataset_dir=dataset, out_dir=out))
    assert again["skipped"] == 2 and again["decoded"] == 0 and _outputs(out) == before


class _Store(dict):
    """What `available_videos` reads of a feature store: the ids it holds and its attrs."""

    def __init__(self, videos: list[str], excluded: dict[str, str]):
        super().__init__((v, None) for v in videos)
        self.attrs = {"excluded_videos": json.dumps(excluded)}


def test_a_missing_source_keeps_its_video_and_stops_training(dataset: Path, tmp_path: Path, caplog):
    """One source moved away: that video fails naming its path, its earlier mp4 and sidecar are
    kept byte-identical, the others finish; train and evaluate then refuse to go on without it
    (a bad video is still left out with a warning)."""
    out = tmp_path / "decoded"
    run_plan(plan(DecodeParams(short_side=48), dataset_dir=dataset, out_dir=out))
    before = _outputs(out)
    moved = dataset / "good_a.mp4"
    (dataset / "videos" / "good_a.mp4").rename(moved)

    summary = run_plan(plan(DecodeParams(short_side=48), dataset_dir=dataset, out_dir=out))
    assert _outputs(out) == before
    assert summary["skipped"] == 1 and summary["failed"] == 5 and summary["missing_sources"] == 2  # good_a, gone
    failed = json.loads((out / "manifest.json").read_text())["failed"]
    assert failed["good_a"] == (
        f"source file not found: {dataset / 'videos' / 'good_a.mp4'}; its decoded video of "
        "an earlier run is kept (restore it, or reconnect its folder, and rerun)"
    )

    store = _Store(["good_b"], failed)  # extract records decode's failures as the store's excluded videos
    with pytest.raises(ValueError) as err:
        available_videos(store, ["good_a", "good_b"], features=tmp_path / "features.h5", what="training")
    assert str(err.value).startswith(
        f"{tmp_path / 'features.h5'}: 1 training video(s) have no features because "
        f"decode could not find their source: good_a (first: {failed['good_a']})"
    )
    with caplog.at_level(logging.WARNING):
        assert available_videos(store, ["good_b", "short"], features=tmp_path / "features.h5", what="test") == [
            "good_b"
        ]
    assert "1 test video(s) failed upstream and are left out: short" in caplog.text

    moved.rename(dataset / "videos" / "good_a.mp4")
    again = run_plan(plan(DecodeParams(short_side=48), dataset_dir=dataset, out_dir=out))
    assert again["skipped"] == 2 and _outputs(out) == before


def test_extreme_video_fails_alone(tmp_path: Path):
    """A valid 16x4096 video is this video's failure, named in the manifest (and a `VideoError`,
    which `detect` reports per video); the stage finishes the others."""
    root = tmp_path / "dataset"
    (root / "videos").mkdir(parents=True)
    write_indexed_video(root / "videos" / "good.mp4", list(range(20)), time_base=Fraction(1, 25))
    write_indexed_video(
        root / "videos" / "strip.mp4", list(range(20)), time_base=Fraction(1, 25), size=(16, 4096), lossless=False
    )
    write_json(root / "videos.json", {"good": "videos/good.mp4", "strip": "videos/strip.mp4"})
    out = tmp_path / "decoded"
    stage = plan(DecodeParams(short_side=128), dataset_dir=root, out_dir=out)
    with pytest.raises(VideoError, match="aspect ratio of 256:1, above the limit of 8:1"):
        stage.process("strip")
    summary = run_plan(stage)
    manifest = json.loads((out / "manifest.json").read_text())
    assert summary["decoded"] == 1 and summary["failed"] == 1 and list(manifest["videos"]) == ["good"]
    assert manifest["failed"]["strip"].startswith(f"{root / 'videos' / 'strip.mp4'}: 16x4096 px frames have an aspect")
    assert sorted(p.name for p in out.iterdir()) == ["good.json", "good.mp4", "manifest.json"]


def test_decoded_mp4_is_on_disk_before_its_sidecar(dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A power cut after the sidecar must not find an empty mp4: the mp4 (the very file, by inode)
    is fsynced before its sidecar is written."""
    import stages.decode as decode

    events: list[tuple[str, int]] = []
    fsync, write_json_ = os.fsync, decode.write_json

    def recording_fsync(fd: int) -> None:
        events.append(("fsync", os.fstat(fd).st_ino))
        fsync(fd)

    def recording_write_json(path, obj, **kwargs) -> None:
        path = Path(path)
        if path.name != "manifest.json":
            events.append(("sidecar", path.with_suffix(".mp4").stat().st_ino))
        write_json_(path, obj, **kwargs)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(decode, "write_json", recording_write_json)
    run_plan(plan(DecodeParams(short_side=48), dataset_dir=dataset, out_dir=tmp_path / "decoded"))
    sidecars = [i for i, (kind, _) in enumerate(events) if kind == "sidecar"]
    assert len(sidecars) == 2
    for i in sidecars:
        assert ("fsync", events[i][1]) in events[:i]
