"""Tests of features.lacp_import on tiny LACP-layout folders built in tmp_path."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from features.lacp_import import import_lacp_features
from features.store import FeatureStore
from pipeline.cli import IMPORTED_FEATURES, main
from pipeline.params import load_params
from tests.conftest import REPO

SHARED = Path(__file__).resolve().parents[2] / "shared"
THUMOS_FPS = SHARED / "datasets" / "thumos14" / "fps_dict.json"


def _save(src: Path, subset: str, vid: str, rgb: np.ndarray, flow: np.ndarray) -> None:
    for stream, arr in (("rgb", rgb), ("flow", flow)):
        folder = src / subset / stream
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / f"{vid}.npy", arr)


def _arrays(t: int, seed: int, t_flow: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((t, 1024)).astype(np.float32),
        rng.standard_normal((t_flow or t, 1024)).astype(np.float32),
    )


def test_import_tiny_layout_values_and_attrs(tmp_path: Path) -> None:
    src = tmp_path / "lacp"
    data = {"video_validation_0000051": ("train", *_arrays(4, 0)), "video_test_0000004": ("test", *_arrays(2, 1))}
    for vid, (subset, rgb, flow) in data.items():
        _save(src, subset, vid, rgb, flow)
    out = tmp_path / "features.h5"
    summary = import_lacp_features(src, out, source_fps={"video_validation_0000051": 30.0, "video_test_0000004": 29.97})
    assert summary.videos == 2 and summary.out == out
    assert summary.subsets == {"video_validation_0000051": "train", "video_test_0000004": "test"}
    assert summary.snippets == {"video_validation_0000051": 4, "video_test_0000004": 2}
    assert summary.trimmed == {}
    assert not out.with_name("features.h5.parts").exists()
    with FeatureStore(out) as fs:
        assert fs.videos == sorted(data)
        assert fs.attrs["fps"] == 25.0 and fs.attrs["snippet"] == 16 and fs.attrs["stride"] == 16
        assert fs.attrs["flow_method"] == "tvl1" and fs.attrs["source"] == "lacp-release"
        for vid, (_, rgb, flow) in data.items():
            np.testing.assert_array_equal(fs[vid], np.concatenate([rgb, flow], axis=1))
        assert fs.video_attrs("video_test_0000004") == {"frames": 32, "source_fps": 29.97}


def test_float64_input_and_attr_override(tmp_path: Path) -> None:
    rgb, flow = _arrays(3, 2)
    _save(tmp_path / "src", "train", "v1", rgb.astype(np.float64), flow.astype(np.float64))
    import_lacp_features(tmp_path / "src", tmp_path / "f.h5", attrs={"backbone": "i3d-kinetics"})
    with FeatureStore(tmp_path / "f.h5") as fs:
        assert fs.attrs["backbone"] == "i3d-kinetics"
        assert fs.video_attrs("v1") == {"frames": 48, "source_fps": 25.0}
        np.testing.assert_array_equal(fs["v1"][:, :1024], rgb)


def test_length_mismatch_errors_by_default(tmp_path: Path) -> None:
    _save(tmp_path / "src", "train", "v_ok", *_arrays(3, 0))
    _save(tmp_path / "src", "test", "v_odd", *_arrays(5, 1, t_flow=4))
    with pytest.raises(ValueError, match=r"'v_odd'.*rgb has 5 snippets, flow has 4"):
        import_lacp_features(tmp_path / "src", tmp_path / "f.h5")
    assert not (tmp_path / "f.h5").exists()


def test_length_mismatch_trim_warns_and_cuts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rgb, flow = _arrays(5, 1, t_flow=4)
    _save(tmp_path / "src", "test", "v_odd", rgb, flow)
    with caplog.at_level(logging.WARNING, logger="features.lacp_import"):
        summary = import_lacp_features(tmp_path / "src", tmp_path / "f.h5", on_mismatch="trim")
    assert "v_odd" in caplog.text
    assert summary.trimmed == {"v_odd": (5, 4)} and summary.snippets == {"v_odd": 4}
    with FeatureStore(tmp_path / "f.h5") as fs:
        np.testing.assert_array_equal(fs["v_odd"], np.concatenate([rgb[:4], flow], axis=1))


def test_bad_layouts_name_the_video(tmp_path: Path) -> None:
    rgb, flow = _arrays(3, 0)
    _save(tmp_path / "wide", "train", "v_wide", rgb, np.zeros((3, 2048), np.float32))
    with pytest.raises(ValueError, match=r"'v_wide'.*\(3, 2048\).*1024"):
        import_lacp_features(tmp_path / "wide", tmp_path / "a.h5")
    _save(tmp_path / "lonely", "train", "v_pair", rgb, flow)
    (tmp_path / "lonely" / "train" / "rgb" / "v_alone.npy").write_bytes(b"")
    with pytest.raises(ValueError, match=r"'v_alone'.*no flow"):
        import_lacp_features(tmp_path / "lonely", tmp_path / "b.h5")
    _save(tmp_path / "dup", "train", "v_dup", rgb, flow)
    _save(tmp_path / "dup", "test", "v_dup", rgb, flow)
    with pytest.raises(ValueError, match=r"'v_dup'.*both"):
        import_lacp_features(tmp_path / "dup", tmp_path / "c.h5")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no features found"):
        import_lacp_features(tmp_path / "empty", tmp_path / "d.h5")
    _save(tmp_path / "ok", "test", "v_ok", rgb, flow)
    with pytest.raises(ValueError, match=r"source_fps.*'v_ok'"):
        import_lacp_features(tmp_path / "ok", tmp_path / "e.h5", source_fps={"v_other": 30.0})


def test_npy_header_declaring_more_than_its_file_holds_is_refused_before_any_allocation(tmp_path: Path) -> None:
    """A header declaring (2**36, 1024) float32 (256 TiB) over 4 KiB of data: a ValueError naming
    the file and both sizes, where np.load used to try to allocate it (MemoryError)."""
    rgb, flow = _arrays(3, 0)
    _save(tmp_path / "src", "train", "v_big", rgb, flow)
    crafted = tmp_path / "src" / "train" / "rgb" / "v_big.npy"
    with open(crafted, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": "<f4", "fortran_order": False, "shape": (2**36, 1024)})
        handle.write(bytes(4096))
    with pytest.raises(
        ValueError,
        match=rf"'v_big': {crafted} declares shape \(68719476736, 1024\) of float32 "
        rf"\(281474976710656 bytes\) but holds 4096 bytes",
    ):
        import_lacp_features(tmp_path / "src", tmp_path / "f.h5")
    assert not (tmp_path / "f.h5").exists()


@pytest.mark.skipif(not THUMOS_FPS.is_file(), reason="/work/shared data not available")
def test_thumos_fps_dict_as_source_fps(tmp_path: Path) -> None:
    fps_dict = json.loads(THUMOS_FPS.read_text())
    _save(tmp_path / "src", "test", "video_test_0000004", *_arrays(2, 3))
    _save(tmp_path / "src", "train", "video_validation_0000051", *_arrays(2, 4))
    import_lacp_features(tmp_path / "src", tmp_path / "f.h5", source_fps=fps_dict)
    with FeatureStore(tmp_path / "f.h5") as fs:
        for vid in fs.videos:
            assert fs.video_attrs(vid)["source_fps"] == pytest.approx(fps_dict[vid])


def test_import_features_refuses_dvc_outputs_and_the_docs_next_step_names_its_default(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """`import-features` used to write data/features.h5, the extract stage's output, which the next
    `dvc repro` deletes: an output of a dvc.yaml stage (or a file inside one) is refused, naming the
    path, the stage and the default; the default is no stage's output, and the params line of
    docs/USAGE.md "Starting from public features" names it."""
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    _save(tmp_path / "src", "train", "v1", *_arrays(3, 0))
    monkeypatch.chdir(tmp_path)
    for out, stage in (("data/features.h5", "extract"), ("data/flow/v1.h5", "flow")):
        assert main(["import-features", "src", "--out", out]) == 2
        assert f"error: {out} is an output of the DVC stage '{stage}' (dvc.yaml)" in capsys.readouterr().err
        assert not Path(out).exists()
    assert main(["import-features", "src"]) == 0
    with FeatureStore(IMPORTED_FEATURES) as store:
        assert store.videos == ["v1"]
    usage = (REPO / "docs" / "USAGE.md").read_text()
    sed = next(line for line in usage.splitlines() if line.startswith("sed ") and "imported.yaml" in line)
    subprocess.run(["bash", "-c", sed], check=True)
    assert load_params(tmp_path / "imported.yaml").paths.features == Path(IMPORTED_FEATURES)
