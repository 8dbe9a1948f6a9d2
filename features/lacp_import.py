"""Import pre-extracted features in the released LACP layout into the HDF5 feature store.

Layout read: ``SRC/{train,test}/{rgb,flow}/<video_id>.npy``, each float (T, 1024), one row
per 16-frame snippet at 25 fps (the released THUMOS'14 two-stream I3D features).

Policy on disagreement between the two streams of a video (a choice, tested):
    - a width other than 1024, a non-2-D array, or a video with only one of rgb/flow is an
      error naming the file / video; so is a header declaring more bytes than its file holds,
      checked before anything is allocated;
    - a different snippet count T between rgb and flow is an error by default
      (``on_mismatch="error"``); with ``on_mismatch="trim"`` both are cut to the smaller T
      and a warning names the video and both counts.
The subset (train/test) of each video is returned in the summary; the store itself does not
hold it (annotations do). A video id found in both subsets is an error.

A folder written by ``python -m pipeline export-features --layout lacp``
(`features.feature_export`) carries a manifest (``features.json``) of the store it came from:
its file attrs and each video's frames and source_fps are then restored as they were, so
export then import gives back the same store.

Otherwise, per-video attrs: ``frames`` is T * snippet (the decoded frame count is not part of the
release; this is the frame span the snippets cover) and ``source_fps`` comes from the
``source_fps`` mapping (e.g. THUMOS'14 ``fps_dict.json``) or, without one, equals ``fps``.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.lib import format as npy_format

from features.feature_export import read_manifest
from features.store import FEATURE_DIM, FeatureStoreWriter, validate_video_id

log = logging.getLogger(__name__)

SUBSETS = ("train", "test")
NPY_VERSIONS = ((1, 0), (2, 0), (3, 0))  # the .npy header versions numpy writes
OnMismatch = Literal["error", "trim"]


@dataclass(frozen=True)
class ImportSummary:
    """What ``import_lacp_features`` wrote.

    Attributes:
        out: the store file.
        subsets: video id -> "train" or "test".
        snippets: video id -> T stored.
        trimmed: video id -> (T rgb, T flow) for videos cut to the smaller T.
    """

    out: Path
    subsets: dict[str, str]
    snippets: dict[str, int]
    trimmed: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def videos(self) -> int:
        """Number of videos imported."""
        return len(self.subsets)


def _declared_shape(path: Path, vid: str) -> tuple[int, ...]:
    """The shape a .npy file's header declares, refused unless the file holds that many bytes.

    Read before `np.load`, so a header that declares more than the file holds (damage, or a
    crafted (2**36, 1024)) is an error naming the file instead of an allocation of that size.
    """
    try:
        with open(path, "rb") as handle:
            version = npy_format.read_magic(handle)
            if version not in NPY_VERSIONS:
                raise ValueError(f".npy format version {version}, expected one of {NPY_VERSIONS}")
            read_header = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
            shape, _, dtype = read_header(handle)
            data_bytes = path.stat().st_size - handle.tell()
    except (OSError, ValueError) as err:
        raise ValueError(f"video {vid!r}: cannot read {path}: {err}") from err
    declared = math.prod(shape) * dtype.itemsize
    if declared > data_bytes:
        raise ValueError(
            f"video {vid!r}: {path} declares shape {shape} of {dtype} ({declared} bytes) but holds "
            f"{data_bytes} bytes of data: a damaged or truncated file; export or copy it again"
        )
    return shape


def _load(path: Path, vid: str) -> np.ndarray:
    """Load one stream of one video and check it is (T >= 1, 1024), the header first."""
    shape = _declared_shape(path, vid)
    if len(shape) != 2 or shape[1] != FEATURE_DIM or shape[0] < 1:
        raise ValueError(f"video {vid!r}: {path} has shape {shape}, expected (T >= 1, {FEATURE_DIM})")
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"video {vid!r}: cannot read {path}: {err}") from err
    return arr.astype(np.float32, copy=False)


def _scan(src: Path) -> dict[str, str]:
    """Map each video id to its subset, checking that rgb and flow files pair up."""
    subsets: dict[str, str] = {}
    for subset in SUBSETS:
        streams = {s: {p.stem for p in (src / subset / s).glob("*.npy")} for s in ("rgb", "flow")}
        unpaired = sorted(streams["rgb"] ^ streams["flow"])
        if unpaired:
            vid = unpaired[0]
            has = "rgb" if vid in streams["rgb"] else "flow"
            raise ValueError(
                f"video {vid!r} in {src / subset}: has {has} features but no "
                f"{'flow' if has == 'rgb' else 'rgb'} ({len(unpaired)} unpaired in all)"
            )
        for vid in sorted(streams["rgb"]):
            validate_video_id(vid)
            if vid in subsets:
                raise ValueError(f"video {vid!r}: present in both {subsets[vid]} and {subset}")
            subsets[vid] = subset
    if not subsets:
        raise ValueError(f"{src}: no features found; expected {{train,test}}/{{rgb,flow}}/<video_id>.npy")
    return subsets


def import_lacp_features(
    src_dir: str | os.PathLike[str],
    out_h5: str | os.PathLike[str],
    *,
    fps: float = 25.0,
    snippet: int = 16,
    on_mismatch: OnMismatch = "error",
    source_fps: Mapping[str, float] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> ImportSummary:
    """Import released LACP-layout features into a feature store file.

    Resumable: the store is written with ``FeatureStoreWriter``, so a rerun after an
    interruption skips the videos already imported.

    Args:
        src_dir: folder holding ``{train,test}/{rgb,flow}/<video_id>.npy``.
        out_h5: the store file to write.
        fps: frame rate the features were extracted at.
        snippet: frames per snippet (also the stride).
        on_mismatch: "error" or "trim" when rgb and flow have different T (see module doc).
        source_fps: video id -> source frame rate; every video must be present if given.
        attrs: overrides of the file attrs (defaults: crop 224, backbone "i3d",
            weights_sha256 "unknown", flow_method "tvl1", flow_init "unknown",
            source "lacp-release").

    Returns:
        An ``ImportSummary``.
    """
    src = Path(src_dir)
    if on_mismatch not in ("error", "trim"):
        raise ValueError(f"on_mismatch {on_mismatch!r}: expected 'error' or 'trim'")
    if not src.is_dir():
        raise ValueError(f"{src}: not a folder")
    subsets = _scan(src)
    manifest = read_manifest(src)  # an export of this project's store: restore its attrs
    restore = manifest is not None and attrs is None and source_fps is None
    if restore:
        fps, snippet = float(manifest["attrs"]["fps"]), int(manifest["attrs"]["snippet"])
        source_fps = {v: float(a["source_fps"]) for v, a in manifest["videos"].items()}
    recorded_frames = {v: int(a["frames"]) for v, a in manifest["videos"].items()} if manifest else {}
    if source_fps is not None:
        missing = [v for v in subsets if v not in source_fps]
        if missing:
            raise ValueError(f"source_fps: no entry for video {missing[0]!r} ({len(missing)} missing)")
    file_attrs: dict[str, Any] = {
        "fps": float(fps),
        "snippet": int(snippet),
        "stride": int(snippet),
        "crop": 224,
        "backbone": "i3d",
        "weights_sha256": "unknown",
        "flow_method": "tvl1",
        "flow_init": "unknown",
        "source": "lacp-release",
    }
    file_attrs.update(attrs or {})
    if restore:
        file_attrs = dict(manifest["attrs"])
    writer = FeatureStoreWriter(out_h5, attrs=file_attrs)
    snippets: dict[str, int] = {}
    trimmed: dict[str, tuple[int, int]] = {}
    for vid, subset in subsets.items():
        rgb = _load(src / subset / "rgb" / f"{vid}.npy", vid)  # (T_rgb, 1024)
        flow = _load(src / subset / "flow" / f"{vid}.npy", vid)  # (T_flow, 1024)
        t = min(len(rgb), len(flow))
        if len(rgb) != len(flow):
            if on_mismatch == "error":
                raise ValueError(f"video {vid!r} ({subset}): rgb has {len(rgb)} snippets, flow has {len(flow)}")
            log.warning("video %r: rgb has %d snippets, flow %d; trimming both to %d", vid, len(rgb), len(flow), t)
            trimmed[vid] = (len(rgb), len(flow))
        snippets[vid] = t
        if writer.done(vid):
            continue
        writer.write(
            vid,
            rgb=rgb[:t],
            flow=flow[:t],
            frames=recorded_frames.get(vid, t * int(snippet)) if not trimmed.get(vid) else t * int(snippet),
            source_fps=float(source_fps[vid]) if source_fps is not None else float(fps),
        )
    return ImportSummary(out=writer.finalize(), subsets=subsets, snippets=snippets, trimmed=trimmed)
