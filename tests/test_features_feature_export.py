"""features/feature_export.py: the store out to the LACP and ActionFormer .npy layouts, and back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from features.feature_export import MANIFEST, export_features, read_manifest
from features.lacp_import import import_lacp_features
from features.store import FeatureStore
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
    assert (summary.written, summary.kept) == (7, 0)
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
    assert manifest["layout"] == "lacp" and manifest["videos"]["e1"] == {"frames": 190, "source_fps": 25.0, "subset": "test"}
    again = export_features(store_path, tmp_path / "lacp", layout="lacp", subsets=SUBSETS)  # a rerun keeps the files
    assert (again.written, again.kept) == (0, 7)


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
        export_features(store_path, tmp_path / "x", layout="lacp", subsets={k: v for k, v in SUBSETS.items() if k != "e2"})
    with pytest.raises(ValueError, match="layout 'npz'"):
        export_features(store_path, tmp_path / "x", layout="npz")  # type: ignore[arg-type]
