"""Export the HDF5 feature store to the per-video `.npy` layouts other tools read.

Layouts written under OUT:
    lacp          ``{train,test}/{rgb,flow}/<video_id>.npy``, float32 (T, 1024) each: the released
                  LACP code's layout (and most weakly-supervised TAL code's), the subset from the
                  annotations; `features.lacp_import.import_lacp_features` reads it back.
    actionformer  ``<video_id>.npy``, float32 (T, 2048) = RGB then flow per snippet: one file per
                  video, as ActionFormer-style detectors read THUMOS'14 I3D features.

Both layouts also get `MANIFEST` (``features.json``): the store's file attrs (time grid, crop,
weights SHA-256, flow method...) and each video's attrs (frames, source_fps) and subset, so an
import restores the store exactly and a reader knows what the numbers are.

Every array is written, through a temporary name, flushed to disk and renamed, and the manifest
last, so the manifest never describes numbers other than the ones beside it. An export goes into
a new or empty folder, or over an earlier export whose manifest is the one it would write (the
same store exported again); anything else, an interrupted export included, is refused without
`force`, and with it the earlier export's arrays that this one does not rewrite are removed.
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

__all__ = ["LAYOUTS", "MANIFEST", "ExportFolderError", "ExportSummary", "export_features", "read_manifest"]

LAYOUTS = ("lacp", "actionformer")
Layout = Literal["lacp", "actionformer"]
MANIFEST = "features.json"
SUBSETS = ("train", "test")  # the released layout's folder names


class ExportFolderError(ValueError):
    """An export folder that holds something other than this export, refused without `force`."""


@dataclass(frozen=True)
class ExportSummary:
    """What `export_features` wrote: the folder, the layout, the videos written, and the arrays
    of an earlier export it removed (`force`)."""

    out: Path
    layout: str
    written: int
    removed: int


def _arrays(out: Path, layout: str, vid: str, subset: str | None) -> list[Path]:
    """The files a video is written to: lacp `<subset>/{rgb,flow}/<vid>.npy`, actionformer `<vid>.npy`."""
    if layout == "lacp":
        return [out / str(subset) / stream / f"{vid}.npy" for stream in ("rgb", "flow")]
    return [out / f"{vid}.npy"]


def _check_folder(out: Path, manifest: dict[str, Any], *, force: bool) -> list[Path]:
    """Refuse `out` unless it is new, empty, or an earlier export with this `manifest` (or `force`).

    Returns:
        The earlier export's arrays (from its manifest), to be removed where this one does not
        rewrite them.

    Raises:
        ExportFolderError: naming the folder, what is there, and `force`.
    """
    if not out.exists():
        return []
    if not out.is_dir():
        raise ExportFolderError(f"{out}: exists and is not a folder; choose another export folder")
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return []
    try:
        earlier = read_manifest(out)
    except ValueError:
        earlier = None
    if earlier == manifest:
        return []
    if not force:
        what = (
            f"an export of another store or layout (its {MANIFEST} differs from this one's)"
            if earlier
            else f"{len(entries)} entries but no readable {MANIFEST} ({', '.join(entries[:5])}"
            f"{', ...' * (len(entries) > 5)}): not an export, or an interrupted one"
        )
        raise ExportFolderError(
            f"{out}: holds {what}; export into a new or empty folder, or pass --force to rewrite "
            f"every array there (an earlier export's arrays not rewritten are removed)"
        )
    if earlier is None or earlier.get("layout") not in LAYOUTS or not isinstance(earlier["videos"], dict):
        return []
    inside = out.resolve()
    listed = [
        path
        for vid, entry in earlier["videos"].items()
        for path in _arrays(out, earlier["layout"], str(vid), (entry if isinstance(entry, dict) else {}).get("subset"))
    ]
    return [path for path in listed if inside in path.resolve().parents]  # a manifest names nothing outside its folder


def export_features(
    store_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    layout: Layout,
    subsets: Mapping[str, str] | None = None,
    force: bool = False,
) -> ExportSummary:
    """Write every video of the store in `layout` under `out_dir`.

    Args:
        store_path: the HDF5 feature store.
        out_dir: the export folder (created): new, empty, or an earlier export with the manifest
            this one writes (same store attrs, videos and subsets, same layout).
        layout: "lacp" or "actionformer" (module docstring).
        subsets: video id -> "train" or "test" (the annotations' subsets); required for "lacp",
            recorded in the manifest for both when given.
        force: export into a folder that holds anything else, rewriting every array; the arrays
            an earlier export's manifest lists that this export does not rewrite are removed.

    Returns:
        An `ExportSummary`.

    Raises:
        ValueError: an unknown layout, or (lacp) a video without a train/test subset, named.
        ExportFolderError: `out_dir` holds something else and `force` is not set.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
    out = Path(out_dir)
    with FeatureStore(store_path) as store:
        if layout == "lacp":
            missing = [v for v in store if (subsets or {}).get(v) not in SUBSETS]
            if missing:
                raise ValueError(
                    f"{store_path}: {len(missing)} video(s) have no train/test subset in the annotations "
                    f"(the lacp layout needs one): {', '.join(missing[:20])}"
                )
        videos: dict[str, dict[str, Any]] = {
            vid: {**store.video_attrs(vid), **({"subset": subsets[vid]} if subsets and vid in subsets else {})}
            for vid in store
        }
        manifest = {"layout": layout, "attrs": store.attrs, "videos": videos}
        earlier = _check_folder(out, json.loads(json.dumps(manifest)), force=force)  # compared as it reads back
        (out / MANIFEST).unlink(missing_ok=True)  # until every array is rewritten, no manifest vouches for them
        written: set[Path] = set()
        for vid in store:
            features = store[vid]  # (T, 2048): RGB then flow
            paths = _arrays(out, layout, vid, videos[vid].get("subset"))
            for i, path in enumerate(paths):  # lacp: (T, 1024) per stream; actionformer: (T, 2048)
                array = features if len(paths) == 1 else features[:, i * FEATURE_DIM : (i + 1) * FEATURE_DIM]
                with atomic_path(path, fsync=True) as tmp, open(tmp, "wb") as fh:
                    np.save(fh, np.ascontiguousarray(array), allow_pickle=False)
                written.add(path)
        stale = [path for path in earlier if path not in written and path.is_file()]
        for path in stale:
            path.unlink()
        write_json(out / MANIFEST, manifest)
    return ExportSummary(out=out, layout=layout, written=len(videos), removed=len(stale))


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
