"""decode stage: per-video failures reported by id, the rest finished, reruns skip, params changes redo."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest

from core.files import write_json
from stages.common import run_plan
from stages.decode import DecodeParams, plan
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
    write_json(root / "videos.json", {v: f"videos/{v}.mp4" for v in ["good_a", "good_b", "short", "empty", "text"]} | {"gone": "videos/gone.mp4"})
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
    assert "source file not found" in failed["gone"]
    assert summary["decoded"] == 2 and summary["failed"] == 4
    assert sorted(p.name for p in out.iterdir()) == ["good_a.json", "good_a.mp4", "good_b.json", "good_b.mp4", "manifest.json"]


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
