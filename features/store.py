"""The HDF5 feature store: ``/rgb/<vid>`` and ``/flow/<vid>`` float32 (T, 1024) per video.

Schema (see docs/ARCHITECTURE.md):
    file attrs      fps, snippet, stride, crop, backbone, weights_sha256, flow_method,
                    flow_init (required; extra scalar attrs are kept as provenance)
    /rgb/<vid>      float32 (T, 1024), attrs frames (int), source_fps (float),
                    compute_dtype (str) where the writer was told what the network ran in, and
                    input_id (str) where it was told the identity of the video's input
    /flow/<vid>     float32 (T, 1024), same T as rgb

Write design (resumable, never a half-written file):
    ``FeatureStoreWriter(out, attrs=...)`` writes each finished video to its own part file
    ``<out>.parts/<vid>.h5`` (a one-video store with the same schema) through a temporary
    name in that folder and ``os.replace``, so a part either exists complete or not at all.
    A rerun after a crash builds a writer on the same ``out``: ``done(vid, input_id=...)`` is
    True for the videos whose part exists and was made from the same input, so only the
    others are computed again. The file attrs that make the numbers what they are (all but
    ``RUN_ATTR_KEYS``) are recorded in ``<out>.parts/attrs.json``; parts written under other
    ones (other weights, other snippet length, other code, ...) are stale and are deleted when
    the writer opens. A rerun after a finished run (one video fixed or added) reuses the
    finished ``out`` the same way: ``reuse(vid, input_id=...)`` is also True for a video that
    ``out`` holds, written under the same settings from the same input, and copies its arrays
    and per-video attrs into its part exactly as ``write`` would have written them, so the
    merged store is the same bytes whether a video was reused or computed again. Run bookkeeping
    does not make a part stale: ``excluded_videos`` (which videos failed upstream this time) is
    the last run's in the final store, and the dtype the network ran in is recorded per video,
    the file attr naming the mix when parts differ.
    ``finalize(videos)`` copies the parts of ``videos`` into a temporary file beside ``out``
    (video by video, never the whole store in memory), ``os.replace``s it onto ``out`` and
    removes the parts folder. An interruption inside ``finalize`` leaves the parts in place
    (or, after the replace, the complete ``out``), so rerunning is always safe.

    Different videos may be written concurrently (threads or processes) by writers built
    with the same ``out`` and attrs; ``finalize`` runs once, after all of them.

Read: ``FeatureStore(path)`` opens the file, checks the schema, and reads one video at a time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from core.closing import Closing
from core.files import TMP_PREFIX, atomic_path, write_bytes_atomic
from features.timegrid import TimeGrid

log = logging.getLogger(__name__)

FEATURE_DIM = 1024
"""Width of one stream's feature vector (I3D Mixed_5c pooled)."""

STREAMS = ("rgb", "flow")
FILE_ATTR_KEYS = (
    "fps",
    "snippet",
    "stride",
    "crop",
    "backbone",
    "weights_sha256",
    "flow_method",
    "flow_init",
)
VIDEO_ATTR_KEYS = ("frames", "source_fps")
COMPUTE_DTYPE = "compute_dtype"
"""The dtype the network ran in: a per-video attr, and a file attr (the one value, or the mix)."""
INPUT_ID = "input_id"
"""A per-video attr: the identity of the input the video's features were made from (compared
by ``FeatureStoreWriter.done`` and ``reuse``)."""
RUN_ATTR_KEYS = ("excluded_videos", COMPUTE_DTYPE)
"""File attrs that describe one run, not how the numbers are made: parts (and a finished
store's videos) written under other values are still valid and are kept."""

_PARTS_ATTRS = "attrs.json"


class FeatureStoreError(ValueError):
    """A feature store file is missing parts of the schema, truncated or corrupt."""


class VideoNotFoundError(FeatureStoreError, KeyError):
    """A video id is not in the store (a KeyError too, for mapping-style callers)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def validate_video_id(vid: object) -> str:
    """Check that a video id can be used as an HDF5 name and as a file name.

    Args:
        vid: the candidate id.

    Returns:
        The id, unchanged.

    Raises:
        ValueError: naming the id, if it is not a non-empty string, contains '/', '\\', '..'
            or a NUL character, or is '.'.
    """
    if not isinstance(vid, str) or not vid:
        raise ValueError(f"video id {vid!r}: expected a non-empty string")
    for bad in ("/", "\\", "..", "\x00"):
        if bad in vid:
            raise ValueError(f"video id {vid!r}: must not contain {bad!r}")
    if vid == "." or vid.startswith(TMP_PREFIX):
        raise ValueError(f"video id {vid!r}: reserved name")
    return vid


@contextlib.contextmanager
def atomic_h5_file(path: str | os.PathLike[str]) -> Iterator[h5py.File]:
    """Open a new HDF5 file that appears at ``path`` only once it is complete.

    Written through `core.files.atomic_path` (a temporary name in the same folder, flushed to
    disk, then ``os.replace``); on an exception ``path`` is left untouched. A killed process
    can leave the temporary file behind (``.tmp-*``); `core.files.remove_stale_tmp` clears those.

    Args:
        path: final location; its folder is created if needed.

    Yields:
        The open ``h5py.File``.
    """
    with atomic_path(path, fsync=True) as tmp:
        with h5py.File(tmp, "w") as h5:
            yield h5


def open_hdf5(
    path: Path, *, what: str, error: type[Exception], missing: type[Exception] = FileNotFoundError
) -> h5py.File:
    """Open an existing HDF5 file read-only, naming it (`what` and the path) when it cannot be.

    Raises:
        missing: the file does not exist.
        error: the file is truncated or not HDF5.
    """
    if not Path(path).is_file():
        raise missing(f"{what} {path}: no such file")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise error(f"{what} {path}: cannot open (truncated or not an HDF5 file): {err}") from err


def _attr_value(value: Any) -> Any:
    """Convert an HDF5 attribute value to a plain Python scalar."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _check_file_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the store-level attrs: the required keys present, scalar values only."""
    missing = [k for k in FILE_ATTR_KEYS if k not in attrs]
    if missing:
        raise ValueError(f"feature store attrs: missing {missing}; required {list(FILE_ATTR_KEYS)}")
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        value = _attr_value(value)
        if not isinstance(value, (str, int, float, bool)):
            raise ValueError(
                f"feature store attr {key!r}: expected str, int, float or bool, got {type(value).__name__}"
            )
        out[str(key)] = value
    return out


def _check_features(vid: str, stream: str, array: np.ndarray) -> np.ndarray:
    """Validate one stream's (T, 1024) feature matrix and return it as float32."""
    arr = np.asarray(array, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != FEATURE_DIM or arr.shape[0] < 1:
        raise ValueError(f"video {vid!r}, {stream}: expected shape (T >= 1, {FEATURE_DIM}), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"video {vid!r}, {stream}: contains NaN or inf")
    return arr


def _settings(attrs: Mapping[str, Any]) -> str:
    """The file attrs that make the numbers what they are (all but ``RUN_ATTR_KEYS``), as the
    canonical JSON that parts and finished stores are compared on."""
    return json.dumps({k: _attr_value(v) for k, v in attrs.items() if k not in RUN_ATTR_KEYS}, sort_keys=True)


def _write_video(
    h5: h5py.File,
    vid: str,
    rgb: np.ndarray,
    flow: np.ndarray,
    *,
    frames: int,
    source_fps: float,
    compute_dtype: str | None,
    input_id: str | None,
) -> None:
    """Write one video's two streams and per-video attrs into an open store file."""
    for stream, arr in (("rgb", rgb), ("flow", flow)):
        dset = h5.require_group(stream).create_dataset(vid, data=arr)  # (T, 1024)
        dset.attrs["frames"] = int(frames)
        dset.attrs["source_fps"] = float(source_fps)
        if compute_dtype is not None:
            dset.attrs[COMPUTE_DTYPE] = compute_dtype
        if input_id is not None:
            dset.attrs[INPUT_ID] = input_id


def _recorded_input(h5: h5py.File, vid: str) -> str | None:
    """The input identity recorded for ``vid`` in an open store or part; None when it has none."""
    return _attr_value(h5["rgb"][vid].attrs.get(INPUT_ID))


def _summarise_dtypes(per_video: Mapping[str, str | None]) -> str | None:
    """The store's compute_dtype attr from its videos' own: the one value they share, or the
    mix with counts; None when no video recorded one."""
    counts = Counter(per_video.values())
    if set(counts) == {None}:
        return None
    if len(counts) == 1:
        return next(iter(counts))
    mix = ", ".join(
        f"{dtype or 'unrecorded'} ({n} video{'s' * (n != 1)})"
        for dtype, n in sorted(counts.items(), key=lambda item: str(item[0]))
    )
    return f"mixed: {mix}; each video's {COMPUTE_DTYPE} attr says which"


class FeatureStoreWriter:
    """Resumable per-video writer of a feature store (see the module docstring).

    Args:
        out: path of the final store file.
        attrs: file attrs; must hold every key of ``FILE_ATTR_KEYS``.
    """

    def __init__(self, out: str | os.PathLike[str], *, attrs: Mapping[str, Any]) -> None:
        self.out = Path(out)
        self.attrs = _check_file_attrs(attrs)
        self.parts_dir = self.out.with_name(self.out.name + ".parts")
        self._open_parts_dir()

    def _open_parts_dir(self) -> None:
        """Create the parts folder, or drop its content if it was written under other settings
        (the attrs but ``RUN_ATTR_KEYS``)."""
        recorded = self.parts_dir / _PARTS_ATTRS
        wanted = _settings(self.attrs)
        if recorded.exists():
            if recorded.read_text() == wanted:
                return
            log.warning("%s: parts were written with other settings; discarding them", self.parts_dir)
            shutil.rmtree(self.parts_dir)
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(recorded, wanted.encode())

    def part_path(self, vid: str) -> Path:
        """Path of the part file holding video ``vid``."""
        return self.parts_dir / f"{validate_video_id(vid)}.h5"

    def done(self, vid: str, *, input_id: str | None = None) -> bool:
        """Whether video ``vid`` is already written: its part file exists and, when
        ``input_id`` is given, was made from that input (``write``'s ``input_id``).

        Args:
            vid: video id.
            input_id: the identity of the video's input now; None: any part will do.

        Returns:
            True when the part can be reused; an unreadable part is not (it is rewritten).
        """
        path = self.part_path(vid)
        if not path.exists():
            return False
        if input_id is None:
            return True
        try:
            with h5py.File(path, "r") as h5:
                recorded = _recorded_input(h5, vid)
        except (OSError, KeyError):
            log.warning("%s: unreadable part; computing video %r again", path, vid)
            return False
        return recorded == input_id

    def reuse(self, vid: str, *, input_id: str) -> bool:
        """Whether video ``vid`` need not be computed: its part was made from ``input_id``
        (``done``), or the finished store ``out`` holds it, written under the same settings
        (the file attrs but ``RUN_ATTR_KEYS``) from the same input. Then its arrays and
        per-video attrs are written to its part exactly as ``write`` writes a computed video,
        so that ``finalize`` merges it like any other.

        Args:
            vid: video id.
            input_id: the identity of the video's input now.

        Returns:
            True when the video is in a part made from ``input_id`` (now, or already before).
        """
        if self.done(vid, input_id=input_id):
            return True
        if not self.out.is_file():
            return False
        try:
            with h5py.File(self.out, "r") as h5:
                if _settings(h5.attrs) != _settings(self.attrs):
                    return False
                if not all(isinstance(h5.get(s), h5py.Group) and vid in h5[s] for s in STREAMS):
                    return False
                if _recorded_input(h5, vid) != input_id:
                    return False
                rgb_d, flow_d = h5["rgb"][vid], h5["flow"][vid]
                video = {k: _attr_value(rgb_d.attrs[k]) for k in VIDEO_ATTR_KEYS}
                rgb, flow = rgb_d[()], flow_d[()]  # (T, 1024) each
                dtype = _attr_value(rgb_d.attrs.get(COMPUTE_DTYPE))
        except (OSError, KeyError) as err:
            log.warning("%s: unreadable finished store (%s); computing video %r again", self.out, err, vid)
            return False
        self.write(vid, rgb=rgb, flow=flow, compute_dtype=dtype, input_id=input_id, **video)
        return True

    def pending(self, vids: Iterable[str]) -> list[str]:
        """The ids of ``vids`` not written yet, in the given order."""
        return [v for v in vids if not self.done(v)]

    def finished(self) -> list[str]:
        """Sorted ids of the videos written so far."""
        return sorted(p.stem for p in self.parts_dir.glob("*.h5") if not p.name.startswith(TMP_PREFIX))

    def write(
        self,
        vid: str,
        *,
        rgb: np.ndarray,
        flow: np.ndarray,
        frames: int,
        source_fps: float,
        compute_dtype: str | None = None,
        input_id: str | None = None,
    ) -> Path:
        """Write one video's features atomically to its part file.

        Args:
            vid: video id (validated).
            rgb: (T, 1024) RGB-stream features.
            flow: (T, 1024) flow-stream features, same T.
            frames: number of decoded frames the features were computed from.
            source_fps: frame rate of the source video.
            compute_dtype: the dtype the network ran in (a per-video attr), if known.
            input_id: the identity of the input the features were made from (a per-video
                attr), which ``done`` and ``reuse`` compare on a rerun; None records none.

        Returns:
            The part file path.
        """
        path = self.part_path(vid)
        rgb32 = _check_features(vid, "rgb", rgb)  # (T, 1024)
        flow32 = _check_features(vid, "flow", flow)  # (T, 1024)
        if rgb32.shape[0] != flow32.shape[0]:
            raise ValueError(f"video {vid!r}: rgb has {rgb32.shape[0]} snippets, flow has {flow32.shape[0]}")
        if int(frames) < 1 or not float(source_fps) > 0:
            raise ValueError(
                f"video {vid!r}: expected frames >= 1 and source_fps > 0, got frames={frames}, source_fps={source_fps}"
            )
        with atomic_h5_file(path) as h5:
            h5.attrs.update(self.attrs)
            _write_video(
                h5,
                vid,
                rgb32,
                flow32,
                frames=frames,
                source_fps=source_fps,
                compute_dtype=compute_dtype,
                input_id=input_id,
            )
        return path

    def finalize(self, videos: Iterable[str] | None = None) -> Path:
        """Merge the parts of ``videos`` into ``out`` atomically, then remove the parts folder.

        The store gets this writer's attrs, but ``compute_dtype``: the one its videos share, or
        their mix (``_summarise_dtypes``), when the parts recorded theirs. Each video keeps its
        part's arrays and per-video attrs (``input_id`` included), so a later run can ``reuse`` it.

        Args:
            videos: the videos to merge (those that succeeded in this run; a part left by an
                earlier run for a video that now fails is not merged); None: every finished part.

        Returns:
            The path of the final store.

        Raises:
            FeatureStoreError: if there is no video to merge, or one of ``videos`` has no part.
        """
        vids = self.finished() if videos is None else sorted(videos)
        if not vids:
            raise FeatureStoreError(f"{self.parts_dir}: no finished video to merge into {self.out}")
        absent = [v for v in vids if not self.done(v)]
        if absent:
            raise FeatureStoreError(
                f"{self.parts_dir}: no part for video(s) {absent[:5]} ({len(absent)} in all) "
                f"to merge into {self.out}; rerun the stage that writes them"
            )
        dtypes: dict[str, str | None] = {}
        with atomic_h5_file(self.out) as dst:
            dst.attrs.update(self.attrs)
            groups = {s: dst.create_group(s) for s in STREAMS}
            for vid in vids:
                with h5py.File(self.part_path(vid), "r") as src:
                    for stream in STREAMS:
                        src.copy(src[stream][vid], groups[stream], name=vid)
                    dtypes[vid] = _attr_value(src["rgb"][vid].attrs.get(COMPUTE_DTYPE))
            summary = _summarise_dtypes(dtypes)
            if summary is not None:
                dst.attrs[COMPUTE_DTYPE] = summary
        shutil.rmtree(self.parts_dir)
        return self.out


class FeatureStore(Closing):
    """Read-only access to a feature store, one video at a time.

    Use as a context manager: ``with FeatureStore(path) as fs: x = fs[vid]  # (T, 2048)``.

    Args:
        path: the store file.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        FeatureStoreError: if the file is truncated, not HDF5, or not in the store schema.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._h5 = open_hdf5(self.path, what="feature store", error=FeatureStoreError)
        try:
            self._check_schema()
        except BaseException:
            self._h5.close()
            raise

    def _check_schema(self) -> None:
        """Check groups and attrs; the rgb and flow groups must hold the same videos."""
        missing = [k for k in FILE_ATTR_KEYS if k not in self._h5.attrs]
        groups = [s for s in STREAMS if not isinstance(self._h5.get(s), h5py.Group)]
        if missing or groups:
            raise FeatureStoreError(
                f"feature store {self.path}: not in the store schema (missing attrs {missing}, missing groups {groups})"
            )
        rgb, flow = set(self._h5["rgb"]), set(self._h5["flow"])
        if rgb != flow:
            odd = sorted(rgb ^ flow)[:5]
            raise FeatureStoreError(f"feature store {self.path}: videos present in only one of rgb/flow: {odd}")
        self._videos = sorted(rgb)
        self._video_set = frozenset(rgb)

    def close(self) -> None:
        """Close the underlying file."""
        self._h5.close()

    @property
    def videos(self) -> list[str]:
        """Sorted video ids."""
        return list(self._videos)

    @property
    def attrs(self) -> dict[str, Any]:
        """File attrs as plain Python values."""
        return {k: _attr_value(v) for k, v in self._h5.attrs.items()}

    def __len__(self) -> int:
        return len(self._videos)

    def __iter__(self) -> Iterator[str]:
        return iter(self._videos)

    def __contains__(self, vid: object) -> bool:
        return vid in self._video_set

    def _dataset(self, stream: str, vid: str) -> h5py.Dataset:
        validate_video_id(vid)
        if vid not in self._video_set:
            raise VideoNotFoundError(f"feature store {self.path}: no video {vid!r} in /{stream}")
        return self._h5[stream][vid]

    @property
    def time_grid(self) -> TimeGrid:
        """The snippets' time grid recorded by extract (`features.timegrid`)."""
        return TimeGrid.from_attrs(self.attrs, where=f"feature store {self.path}")

    def video_attrs(self, vid: str) -> dict[str, Any]:
        """Per-video attrs of ``vid``: frames, source_fps, and compute_dtype and input_id where recorded."""
        return {k: _attr_value(v) for k, v in self._dataset("rgb", vid).attrs.items()}

    def __getitem__(self, vid: str) -> np.ndarray:
        """Features of one video: RGB then flow, (T, 2048) float32.

        Raises:
            VideoNotFoundError: naming the file and the video, if it is absent.
            FeatureStoreError: if the stored arrays are unreadable or disagree in shape.
        """
        rgb_d, flow_d = self._dataset("rgb", vid), self._dataset("flow", vid)
        if rgb_d.shape != flow_d.shape or len(rgb_d.shape) != 2 or rgb_d.shape[1] != FEATURE_DIM:
            raise FeatureStoreError(
                f"feature store {self.path}, video {vid!r}: expected rgb and flow of shape "
                f"(T, {FEATURE_DIM}), got {rgb_d.shape} and {flow_d.shape}"
            )
        out = np.empty((rgb_d.shape[0], 2 * FEATURE_DIM), dtype=np.float32)  # (T, 2048)
        try:
            rgb_d.read_direct(out, dest_sel=np.s_[:, :FEATURE_DIM])
            flow_d.read_direct(out, dest_sel=np.s_[:, FEATURE_DIM:])
        except OSError as err:
            raise FeatureStoreError(
                f"feature store {self.path}, video {vid!r}: cannot read (corrupt file?): {err}"
            ) from err
        return out
