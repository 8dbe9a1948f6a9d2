"""Tests of features.store: resumable writer, reader, validation, corrupt files."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

import features.store as store
from core.files import remove_stale_tmp
from features.store import (
    FeatureStore,
    FeatureStoreError,
    FeatureStoreWriter,
    VideoNotFoundError,
    atomic_h5_file,
    validate_video_id,
)

ATTRS = {
    "fps": 25.0,
    "snippet": 16,
    "stride": 16,
    "crop": 224,
    "backbone": "i3d",
    "weights_sha256": "ab" * 32,
    "flow_method": "tvl1",
    "flow_init": "kinetics",
}
VIDEOS = {"v_a": 3, "v_b": 1, "v_c": 5}  # id -> T


def _features(vid: str, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct, reproducible (T, 1024) rgb and flow matrices for one video."""
    seed = sum(map(ord, vid))
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((t, 1024)).astype(np.float32), rng.standard_normal((t, 1024)).astype(np.float32))


def _write(writer: FeatureStoreWriter, vid: str) -> None:
    rgb, flow = _features(vid, VIDEOS[vid])
    writer.write(vid, rgb=rgb, flow=flow, frames=16 * VIDEOS[vid] - 3, source_fps=30.0)


def _store_contents(path: Path) -> tuple[dict, dict[str, np.ndarray], dict[str, dict]]:
    with FeatureStore(path) as fs:
        return fs.attrs, {v: fs[v] for v in fs.videos}, {v: fs.video_attrs(v) for v in fs.videos}


def test_uninterrupted_write_and_exact_read(tmp_path: Path) -> None:
    out = tmp_path / "features.h5"
    writer = FeatureStoreWriter(out, attrs=ATTRS)
    for vid in VIDEOS:
        _write(writer, vid)
    assert writer.finalize() == out
    assert not writer.parts_dir.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features.h5"]
    with FeatureStore(out) as fs:
        assert fs.videos == ["v_a", "v_b", "v_c"] and len(fs) == 3 and "v_b" in fs
        assert fs.attrs == ATTRS
        for vid, t in VIDEOS.items():
            rgb, flow = _features(vid, t)
            x = fs[vid]
            assert x.shape == (t, 2048) and x.dtype == np.float32
            np.testing.assert_array_equal(x[:, :1024], rgb)
            np.testing.assert_array_equal(x[:, 1024:], flow)
            assert fs.video_attrs(vid) == {"frames": 16 * t - 3, "source_fps": 30.0}
    with h5py.File(out, "r") as h5:  # raw schema check
        assert h5["rgb/v_c"].shape == (5, 1024) and h5["flow/v_c"].dtype == np.float32


def test_resume_after_interruption_matches_uninterrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ref = tmp_path / "ref" / "features.h5"
    ref_writer = FeatureStoreWriter(ref, attrs=ATTRS)
    for vid in VIDEOS:
        _write(ref_writer, vid)
    ref_writer.finalize()

    out = tmp_path / "run" / "features.h5"
    first = FeatureStoreWriter(out, attrs=ATTRS)
    _write(first, "v_a")
    _write(first, "v_c")

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # killed in the middle of writing v_b

    monkeypatch.setattr(store, "_write_video", crash)
    with pytest.raises(KeyboardInterrupt):
        _write(first, "v_b")
    monkeypatch.undo()
    (first.parts_dir / ".tmp-v_b.h5.x1y2").write_bytes(b"half")  # a SIGKILLed write's leftover
    del first

    second = FeatureStoreWriter(out, attrs=ATTRS)  # the rerun
    assert second.pending(list(VIDEOS)) == ["v_b"]
    assert second.finished() == ["v_a", "v_c"]
    assert not out.exists()
    _write(second, "v_b")
    second.finalize()

    got, want = _store_contents(out), _store_contents(ref)
    assert got[0] == want[0] and got[2] == want[2]
    assert got[1].keys() == want[1].keys()
    for vid in VIDEOS:
        np.testing.assert_array_equal(got[1][vid], want[1][vid])


def test_parts_written_under_other_attrs_are_discarded(tmp_path: Path) -> None:
    out = tmp_path / "features.h5"
    _write(FeatureStoreWriter(out, attrs=ATTRS), "v_a")
    assert FeatureStoreWriter(out, attrs=ATTRS).done("v_a")
    other = FeatureStoreWriter(out, attrs={**ATTRS, "weights_sha256": "cd" * 32})
    assert other.pending(["v_a"]) == ["v_a"]


def test_parts_are_kept_when_only_run_bookkeeping_differs(tmp_path: Path) -> None:
    out = tmp_path / "features.h5"
    first = FeatureStoreWriter(
        out, attrs={**ATTRS, "excluded_videos": '{"v_b": "corrupt"}', "compute_dtype": "bfloat16"}
    )
    rgb, flow = _features("v_a", 3)
    first.write("v_a", rgb=rgb, flow=flow, frames=45, source_fps=30.0, compute_dtype="bfloat16")
    # the rerun: v_b fixed (nothing excluded), on a machine that computes in float32
    second = FeatureStoreWriter(out, attrs={**ATTRS, "excluded_videos": "{}", "compute_dtype": "float32"})
    assert second.finished() == ["v_a"] and second.done("v_a")
    rgb, flow = _features("v_b", 1)
    second.write("v_b", rgb=rgb, flow=flow, frames=13, source_fps=30.0, compute_dtype="float32")
    second.finalize()
    with FeatureStore(out) as fs:
        assert fs.videos == ["v_a", "v_b"]
        assert fs.attrs["excluded_videos"] == "{}"  # the last run's
        assert fs.attrs["compute_dtype"] == (
            "mixed: bfloat16 (1 video), float32 (1 video); each video's compute_dtype attr says which"
        )
        assert fs.video_attrs("v_a") == {"frames": 45, "source_fps": 30.0, "compute_dtype": "bfloat16"}
        assert fs.video_attrs("v_b")["compute_dtype"] == "float32"


def test_a_part_is_reused_only_for_the_input_it_was_made_from(tmp_path: Path) -> None:
    writer = FeatureStoreWriter(tmp_path / "features.h5", attrs=ATTRS)
    rgb, flow = _features("v_a", 3)
    writer.write("v_a", rgb=rgb, flow=flow, frames=45, source_fps=30.0, input_id="video 1")
    assert writer.done("v_a", input_id="video 1")
    assert not writer.done("v_a", input_id="video 1, replaced")
    assert writer.done("v_a")  # no identity asked: any part
    writer.part_path("v_b").write_bytes(b"torn")  # unreadable: computed again
    assert not writer.done("v_b", input_id="video 2")


def test_finalize_merges_only_the_videos_it_is_given(tmp_path: Path) -> None:
    out = tmp_path / "features.h5"
    writer = FeatureStoreWriter(out, attrs=ATTRS)
    for vid in VIDEOS:
        _write(writer, vid)
    with pytest.raises(FeatureStoreError, match=r"features\.h5\.parts: no part for video\(s\) \['v_x'\]"):
        writer.finalize(["v_a", "v_x"])
    writer.finalize(["v_c", "v_a"])  # v_b's part was left by a run in which it succeeded; now it fails
    with FeatureStore(out) as fs:
        assert fs.videos == ["v_a", "v_c"]
    assert not writer.parts_dir.exists()


def test_finalize_replaces_existing_store(tmp_path: Path) -> None:
    out = tmp_path / "features.h5"
    w = FeatureStoreWriter(out, attrs=ATTRS)
    _write(w, "v_a")
    w.finalize()
    w = FeatureStoreWriter(out, attrs=ATTRS)
    _write(w, "v_b")
    w.finalize()
    with FeatureStore(out) as fs:
        assert fs.videos == ["v_b"]
    with pytest.raises(FeatureStoreError, match="no finished video"):
        FeatureStoreWriter(out, attrs=ATTRS).finalize()


def test_missing_video_names_file_and_video(tmp_path: Path) -> None:
    out = tmp_path / "features.h5"
    w = FeatureStoreWriter(out, attrs=ATTRS)
    _write(w, "v_a")
    w.finalize()
    with FeatureStore(out) as fs:
        with pytest.raises(VideoNotFoundError, match=r"features\.h5.*'v_zzz'"):
            fs["v_zzz"]
        with pytest.raises(KeyError):
            fs["v_zzz"]
        with pytest.raises(ValueError, match=r"'a/b'"):
            fs["a/b"]


@pytest.mark.parametrize("bad", ["", "a/b", "..", "x..y", ".", "a\\b", 7])
def test_invalid_video_ids_are_rejected(tmp_path: Path, bad: object) -> None:
    with pytest.raises(ValueError, match="video id"):
        validate_video_id(bad)
    writer = FeatureStoreWriter(tmp_path / "f.h5", attrs=ATTRS)
    rgb, flow = _features("x", 2)
    with pytest.raises(ValueError, match="video id"):
        writer.write(bad, rgb=rgb, flow=flow, frames=32, source_fps=25.0)  # type: ignore[arg-type]
    assert validate_video_id("video_test_0000004") == "video_test_0000004"


def test_bad_features_and_attrs_are_rejected(tmp_path: Path) -> None:
    writer = FeatureStoreWriter(tmp_path / "f.h5", attrs=ATTRS)
    rgb, flow = _features("x", 3)
    with pytest.raises(ValueError, match=r"'v'.*rgb.*\(3, 1000\)"):
        writer.write("v", rgb=rgb[:, :1000], flow=flow, frames=48, source_fps=25.0)
    with pytest.raises(ValueError, match=r"'v'.*3 snippets.*2"):
        writer.write("v", rgb=rgb, flow=flow[:2], frames=48, source_fps=25.0)
    bad = flow.copy()
    bad[1, 5] = np.nan
    with pytest.raises(ValueError, match=r"'v'.*flow.*NaN"):
        writer.write("v", rgb=rgb, flow=bad, frames=48, source_fps=25.0)
    assert writer.finished() == []
    with pytest.raises(ValueError, match="weights_sha256"):
        FeatureStoreWriter(tmp_path / "g.h5", attrs={k: v for k, v in ATTRS.items() if k != "weights_sha256"})


def test_truncated_or_foreign_file_is_a_clear_error(tmp_path: Path) -> None:
    out = tmp_path / "features.h5"
    w = FeatureStoreWriter(out, attrs=ATTRS)
    for vid in VIDEOS:
        _write(w, vid)
    w.finalize()
    data = out.read_bytes()
    out.write_bytes(data[: len(data) // 3])
    with pytest.raises(FeatureStoreError, match=r"features\.h5.*truncated"):
        FeatureStore(out)
    (tmp_path / "junk.h5").write_bytes(b"not an hdf5 file at all")
    with pytest.raises(FeatureStoreError, match=r"junk\.h5"):
        FeatureStore(tmp_path / "junk.h5")
    with pytest.raises(FileNotFoundError, match=r"absent\.h5"):
        FeatureStore(tmp_path / "absent.h5")
    with h5py.File(tmp_path / "plain.h5", "w") as h5:
        h5.create_group("rgb")
    with pytest.raises(FeatureStoreError, match=r"plain\.h5.*schema"):
        FeatureStore(tmp_path / "plain.h5")


def test_atomic_file_permissions_and_temp_cleanup(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        with atomic_h5_file(tmp_path / "a.h5") as h5:
            h5["x"] = np.arange(3)
    finally:
        os.umask(umask)
    assert (tmp_path / "a.h5").stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
    (tmp_path / ".tmp-b-0123456789ab.h5").write_bytes(b"killed")
    (tmp_path / "keep.h5").write_bytes(b"")
    assert remove_stale_tmp(tmp_path, targets=("b.h5",)) == [tmp_path / ".tmp-b-0123456789ab.h5"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5", "keep.h5"]


def _write_with_input(writer: FeatureStoreWriter, vid: str, input_id: str) -> None:
    rgb, flow = _features(vid, VIDEOS[vid])
    writer.write(
        vid,
        rgb=rgb,
        flow=flow,
        frames=16 * VIDEOS[vid] - 3,
        source_fps=30.0,
        compute_dtype="float32",
        input_id=input_id,
    )


def test_a_finished_store_is_reused_for_the_same_settings_and_input(tmp_path: Path) -> None:
    out = tmp_path / "run" / "features.h5"
    first = FeatureStoreWriter(out, attrs={**ATTRS, "excluded_videos": '{"v_c": "corrupt"}'})
    _write_with_input(first, "v_a", "a1")
    _write_with_input(first, "v_b", "b1")
    first.finalize()
    with FeatureStore(out) as fs:  # the finished store records each video's input
        assert fs.video_attrs("v_a") == {"frames": 45, "source_fps": 30.0, "compute_dtype": "float32", "input_id": "a1"}

    # the rerun: v_c recovered, v_b's input redone; the parts folder is gone
    attrs = {**ATTRS, "excluded_videos": "{}"}
    second = FeatureStoreWriter(out, attrs=attrs)
    assert second.finished() == []
    assert second.reuse("v_a", input_id="a1")
    assert not second.reuse("v_b", input_id="b2") and not second.reuse("v_c", input_id="c1")
    assert second.finished() == ["v_a"]  # copied into its part, merged like a computed one
    assert not FeatureStoreWriter(out, attrs={**attrs, "crop": 112}).reuse("v_a", input_id="a1")  # other settings
    second = FeatureStoreWriter(out, attrs=attrs)  # back to these settings: parts dropped, store intact
    assert second.reuse("v_a", input_id="a1")
    _write_with_input(second, "v_b", "b2")
    _write_with_input(second, "v_c", "c1")
    second.finalize()

    fresh = FeatureStoreWriter(tmp_path / "fresh" / "features.h5", attrs=attrs)
    for vid, input_id in (("v_a", "a1"), ("v_b", "b2"), ("v_c", "c1")):
        _write_with_input(fresh, vid, input_id)
    # h5py writes these files deterministically (no timestamps): reused = computed, byte for byte
    assert out.read_bytes() == fresh.finalize().read_bytes()


def test_a_finished_store_without_recorded_inputs_is_not_reused(tmp_path: Path) -> None:
    out = tmp_path / "features.h5"
    first = FeatureStoreWriter(out, attrs=ATTRS)
    _write(first, "v_a")  # no input_id (an imported store, say)
    first.finalize()
    second = FeatureStoreWriter(out, attrs=ATTRS)
    assert not second.reuse("v_a", input_id="a1") and second.finished() == []
    out.write_bytes(b"torn")  # an unreadable finished store: nothing reused, no error
    assert not second.reuse("v_a", input_id="a1")
