"""features/feature_export.py: the store out to the LACP and ActionFormer .npy layouts, and back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from features.feature_export import MANIFEST, ExportFolderError, export_features, read_manifest
from features.lacp_import import import_lacp_features
from features.store import FeatureStore, FeatureStoreWriter
from tests.test_lacp_splits import ANNOTATIONS, write_tiny_inputs

SUBSETS = {vid: e["subset"] for vid, e in ANNOTATIONS["database"].items()}


def _released_loader(root: Path, split: str, video_ids: list[str]) -> dict[str, np.ndarray]:
    """The released code's reading, from its layout's description: per video of a split,
    `{split}/rgb/<vid>.npy` and `{split}/flow/<vid>.npy`, each (T, 1024), side by side."""
    out = {}
    for vid in video_ids:
        rgb, flow = np.load(root / split / "rgb" / f"{vid}.npy"), np.load(root / split / "flow" / f"{vid}.npy")
        assert rgb.ndim == 2 and rgb.shape[1] == 1024 and rgb.shape == flow.shape
        out[vid] = np.concatenate([rgb, flow], axis=1)
    return out


def test_lacp_export_then_import_gives_the_same_store(tmp_path: Path) -> None:
    store_path = write_tiny_inputs(tmp_path)["features"]
    summary = export_features(store_path, tmp_path / "lacp", layout="lacp", subsets=SUBSETS)
    assert (summary.written, summary.removed) == (7, 0)
    assert sorted(p.name for p in (tmp_path / "lacp" / "test" / "flow").iterdir()) == ["e1.npy", "e2.npy"]
    import_lacp_features(tmp_path / "lacp", tmp_path / "back.h5")
    with FeatureStore(store_path) as a, FeatureStore(tmp_path / "back.h5") as b:
        assert a.videos == b.videos and a.attrs == b.attrs
        for vid in a:
            assert a[vid].dtype == b[vid].dtype == np.float32
            assert a[vid].tobytes() == b[vid].tobytes()
            assert a.video_attrs(vid) == b.video_attrs(vid)
        loaded = _released_loader(tmp_path / "lacp", "train", ["t1", "t2", "t3", "t4", "t5"])
        for vid, features in loaded.items():
            np.testing.assert_array_equal(features, a[vid])
    manifest = read_manifest(tmp_path / "lacp")
    assert manifest["layout"] == "lacp" and manifest["videos"]["e1"] == {
        "frames": 190,
        "source_fps": 25.0,
        "subset": "test",
    }
    again = export_features(store_path, tmp_path / "lacp", layout="lacp", subsets=SUBSETS)  # the same export again
    assert (again.written, again.removed) == (7, 0)


def _rewrite_store(store_path: Path, *, seed: int, videos: list[str] | None = None, **attrs) -> dict[str, np.ndarray]:
    """Replace the store by one with other numbers (the same attrs but `attrs`), for `videos` (default: the
    same ones); returns its (T, 2048) arrays."""
    with FeatureStore(store_path) as store:
        kept_attrs = {**store.attrs, **attrs}
        frames = {vid: store.video_attrs(vid) for vid in store}
        videos = videos or store.videos
    store_path.unlink()
    rng = np.random.default_rng(seed)
    writer = FeatureStoreWriter(store_path, attrs=kept_attrs)
    arrays = {vid: rng.random((12, 2048), dtype=np.float32) for vid in videos}
    for vid, array in arrays.items():
        writer.write(vid, rgb=array[:, :1024], flow=array[:, 1024:], **frames[vid])
    writer.finalize()
    return arrays


def _exported(folder: Path) -> dict[str, np.ndarray]:
    """The lacp-layout arrays of a folder, rgb | flow side by side."""
    return {
        p.stem: np.concatenate([np.load(p), np.load(p.parents[1] / "flow" / p.name)], axis=1)
        for p in sorted(folder.glob("*/rgb/*.npy"))
    }


def test_export_again_writes_every_array_of_the_new_store(tmp_path: Path) -> None:
    """Export, re-extract the store with the same settings (other numbers), export again to the same
    folder: every array holds the new store's numbers (an array of the right shape used to be kept)."""
    store_path = write_tiny_inputs(tmp_path)["features"]
    export_features(store_path, tmp_path / "lacp", layout="lacp", subsets=SUBSETS)
    new = _rewrite_store(store_path, seed=1)
    export_features(store_path, tmp_path / "lacp", layout="lacp", subsets=SUBSETS)
    got = _exported(tmp_path / "lacp")
    assert sorted(got) == sorted(new)
    for vid, array in new.items():
        np.testing.assert_array_equal(got[vid], array)


def test_export_over_another_store_is_refused_then_forced(tmp_path: Path) -> None:
    """New settings (crop) and two videos fewer: refused without force, naming the folder and --force,
    every file as it was; with force, the arrays equal the new store's, the dropped videos' four
    arrays are removed and the manifest says the new crop, so an import gives back the new store."""
    store_path = write_tiny_inputs(tmp_path)["features"]
    out = tmp_path / "lacp"
    export_features(store_path, out, layout="lacp", subsets=SUBSETS)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    new = _rewrite_store(store_path, seed=2, videos=["t1", "t2", "t3", "t4", "e1"], crop=48)
    with pytest.raises(ExportFolderError, match=rf"{out}: holds an export of another store or layout .*--force"):
        export_features(store_path, out, layout="lacp", subsets=SUBSETS)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    summary = export_features(store_path, out, layout="lacp", subsets=SUBSETS, force=True)
    assert (summary.written, summary.removed) == (5, 4)
    got = _exported(out)
    assert sorted(got) == sorted(new)
    for vid, array in new.items():
        np.testing.assert_array_equal(got[vid], array)
    assert read_manifest(out)["attrs"]["crop"] == 48
    import_lacp_features(out, tmp_path / "back.h5")
    with FeatureStore(tmp_path / "back.h5") as back:
        assert back.attrs["crop"] == 48 and back.videos == sorted(new)


def test_export_refuses_a_folder_that_is_not_an_export(tmp_path: Path) -> None:
    store_path = write_tiny_inputs(tmp_path)["features"]
    out = tmp_path / "released"
    (out / "train" / "rgb").mkdir(parents=True)
    (out / "train" / "rgb" / "t1.npy").write_bytes(b"someone else's features")
    with pytest.raises(ExportFolderError, match=rf"{out}: holds 1 entries but no readable {MANIFEST} \(train\)"):
        export_features(store_path, out, layout="lacp", subsets=SUBSETS)
    assert (out / "train" / "rgb" / "t1.npy").read_bytes() == b"someone else's features"


def test_actionformer_layout_is_one_t_by_2048_file_per_video(tmp_path: Path) -> None:
    store_path = write_tiny_inputs(tmp_path)["features"]
    export_features(store_path, tmp_path / "af", layout="actionformer")
    with FeatureStore(store_path) as store:
        for vid in store:
            array = np.load(tmp_path / "af" / f"{vid}.npy")
            assert array.shape == (12, 2048) and array.dtype == np.float32
            np.testing.assert_array_equal(array, store[vid])
    assert (tmp_path / "af" / MANIFEST).is_file()


def test_lacp_layout_needs_a_subset_for_every_video(tmp_path: Path) -> None:
    store_path = write_tiny_inputs(tmp_path)["features"]
    with pytest.raises(ValueError, match="1 video\\(s\\) have no train/test subset.*: e2"):
        export_features(
            store_path, tmp_path / "x", layout="lacp", subsets={k: v for k, v in SUBSETS.items() if k != "e2"}
        )
    with pytest.raises(ValueError, match="layout 'npz'"):
        export_features(store_path, tmp_path / "x", layout="npz")  # type: ignore[arg-type]
