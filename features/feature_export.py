"""Export the HDF5 feature store to the per-video `.npy` layouts other tools read.

Layouts written under OUT:
    lacp          ``{train,test}/{rgb,flow}/<video_id>.npy``, float32 (T, 1024) each: the released
                  LACP code's layout (and most weakly-supervised TAL code's), the subset from the
                  annotations; `features.lacp_import.import_lacp_features` reads it back.
    actionformer  ``<video_id>.npy``, float32 (T, 2048) = RGB then flow per snippet: one file per
                  video, as ActionFormer-style detectors read THUMOS'14 I3D features.

Both layouts also get `MANIFEST` (``features.json``): the store's file attrs (time grid, crop,
weights SHA-256, flow method...) and each video's attrs (frames, source_fps) and subset, so an
import restores the store exactly and a reader knows what the numbers are. Files are written
through a temporary name and renamed; an existing file of the right shape is kept, so a rerun
after an interruption finishes the rest.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from core.files import atomic_path, write_json
from features.store import FEATURE_DIM, FeatureStore

__all__ = ["LAYOUTS", "MANIFEST", "ExportSummary", "export_features", "read_manifest"]

LAYOUTS = ("lacp", "actionformer")
Layout = Literal["lacp", "actionformer"]
MANIFEST = "features.json"
SUBSETS = ("train", "test")  # the released layout's folder names


@dataclass(frozen=True)
class ExportSummary:
    """What `export_features` wrote: the folder, the layout, videos written and kept."""

    out: Path
    layout: str
    written: int
    kept: int


def _save(path: Path, array: np.ndarray) -> bool:
    """Write `array` as .npy unless a file of the same shape is there; True if written."""
    if path.is_file():
        try:
            if np.load(path, mmap_mode="r").shape == array.shape:
                return False
        except ValueError:  # truncated or not .npy: write it again
            pass
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array, allow_pickle=False)
    return True


def export_features(store_path: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, layout: Layout,
                    subsets: Mapping[str, str] | None = None) -> ExportSummary:
    """Write every video of the store in `layout` under `out_dir`.

    Args:
        store_path: the HDF5 feature store.
        out_dir: the export folder (created).
        layout: "lacp" or "actionformer" (module docstring).
        subsets: video id -> "train" or "test" (the annotations' subsets); required for "lacp",
            recorded in the manifest for both when given.

    Returns:
        An `ExportSummary`.

    Raises:
        ValueError: an unknown layout, or (lacp) a video without a train/test subset, named.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
    out = Path(out_dir)
    written = kept = 0
    with FeatureStore(store_path) as store:
        if layout == "lacp":
            missing = [v for v in store if (subsets or {}).get(v) not in SUBSETS]
            if missing:
                raise ValueError(f"{store_path}: {len(missing)} video(s) have no train/test subset in the annotations "
                                 f"(the lacp layout needs one): {', '.join(missing[:20])}")
        videos: dict[str, dict[str, Any]] = {}
        for vid in store:
            features = store[vid]  # (T, 2048): RGB then flow
            if layout == "lacp":
                parts = [(out / subsets[vid] / stream / f"{vid}.npy", features[:, i * FEATURE_DIM:(i + 1) * FEATURE_DIM])
                         for i, stream in enumerate(("rgb", "flow"))]
            else:
                parts = [(out / f"{vid}.npy", features)]
            done = [_save(path, np.ascontiguousarray(array)) for path, array in parts]
            written, kept = written + any(done), kept + (not any(done))
            videos[vid] = {**store.video_attrs(vid), **({"subset": subsets[vid]} if subsets and vid in subsets else {})}
        write_json(out / MANIFEST, {"layout": layout, "attrs": store.attrs, "videos": videos})
    return ExportSummary(out=out, layout=layout, written=written, kept=kept)


def read_manifest(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The export manifest of a folder, or None when it has none (e.g. the released features).

    Raises:
        ValueError: a manifest that is not JSON or lacks `attrs` / `videos`, naming the file.
    """
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not JSON ({err})") from None
    missing = [k for k in ("attrs", "videos") if k not in manifest]
    if missing:
        raise ValueError(f"{path}: missing key(s) {missing}; expected an export manifest (features.feature_export)")
    return manifest
