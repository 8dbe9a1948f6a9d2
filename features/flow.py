"""Optical flow between consecutive frames, quantised to uint8, and per-video flow files.

Methods:
    "tvl1"  OpenCV Dual TV-L1 (``cv2.optflow.DualTVL1OpticalFlow_create``): the reference
            method of the I3D / THUMOS'14 features; slow (about 1 s per 224x224 frame on one core).
    "tvl1_torch"
            the same Dual TV-L1 model, parameters and stopping rule in PyTorch
            (``features.tvl1``), computed for ``tvl1_torch_batch`` consecutive pairs at a time on a CPU
            or a CUDA device; it agrees with "tvl1" to the amount by which OpenCV's own
            result moves when its input moves by 1e-3 grey levels, and runs several times
            faster per core (bench/flow.py).
    "dis"   OpenCV DIS (``cv2.DISOpticalFlow_create``): presets "ultrafast" and "fast" run at
            400+ frames/s at 224x224 on one core, "medium" at about 90 (bench/flow.py).

Direction: flow[i] maps frame i to frame i+1, i.e. frame_i(y, x) ~ frame_{i+1}(y + dy, x + dx);
channel 0 is dx, channel 1 is dy, in pixels. Content that moves right gives dx > 0.

Alignment: a video of N frames gives N flow fields. The N-1 fields of consecutive pairs come
first and the last one is repeated, so flow[i] is aligned with frame i; N = 1 gives zero flow.

Quantisation (the usual I3D convention): v is clipped to [-bound, bound] and stored as
    q = round((v + bound) * 255 / (2 * bound))            (uint8, round half to even)
``dequantize_pixels`` maps q back to q * 2 * bound / 255 - bound; for v inside the bound the
round trip error is at most half a step, bound / 255 (0.078 px for bound 20), and a clipped v
comes back as +-bound. ``dequantize`` gives the I3D input scale (q / 255) * 2 - 1 in [-1, 1],
which equals v / bound up to the same half step (1 / 255).

Flow file (``data/flow/<vid>.h5``): dataset ``flow`` uint8 (N, H, W, 2), chunked one frame per
chunk, gzip or lzf compressed; attrs ``method``, ``bound``, ``frames`` (= N) and ``params`` (a
JSON string of the method settings). Written under a temporary name and ``os.replace``d.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import cv2
import h5py
import numpy as np
import torch
from pydantic import Field

from core.closing import Closing
from core.config import Config
from features.store import atomic_h5_file, open_hdf5
from features.tvl1 import TVL1Settings, TVL1Solver, tvl1_flow

FlowMethod = Literal["dis", "tvl1", "tvl1_torch"]
DisPreset = Literal["ultrafast", "fast", "medium"]
Compression = Literal["gzip", "lzf"]

TORCH_BATCH = 8
"""Frame pairs per ``tvl1_torch`` batch unless told otherwise."""
DIS_PRESETS: dict[str, int] = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}
# TV-L1 parameter name (features.tvl1.TVL1Solver, whose defaults are OpenCV's) -> its setter on
# the OpenCV object.
TVL1_PARAMS: dict[str, str] = {
    "tau": "setTau",
    "lambda_": "setLambda",
    "theta": "setTheta",
    "nscales": "setScalesNumber",
    "warps": "setWarpingsNumber",
    "epsilon": "setEpsilon",
    "inner_iterations": "setInnerIterations",
    "outer_iterations": "setOuterIterations",
    "scale_step": "setScaleStep",
    "gamma": "setGamma",
    "median_filtering": "setMedianFiltering",
}
FLOW_DATASET = "flow"

PairFlow = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(prev (H, W) uint8, next (H, W) uint8) -> flow (H, W, 2) float32 in pixels."""


class FlowFileError(ValueError):
    """A flow file is missing, truncated, corrupt or not in the flow file schema."""


class FlowSettings(Config):
    """How ``iter_flow`` computes and quantises a video's flow (the flow section of params.yaml
    but where it runs)."""

    method: FlowMethod = "dis"  # "dis" (fast), "tvl1" (reference) or "tvl1_torch" (the same in PyTorch)
    bound: float = Field(20.0, gt=0, allow_inf_nan=False)  # flow clipped to [-bound, bound] px, then quantised
    dis_preset: DisPreset = "fast"  # "dis" only
    tvl1_torch_batch: int = Field(TORCH_BATCH, ge=1)  # "tvl1_torch" only: frame pairs computed at once
    tvl1: TVL1Settings = TVL1Settings()  # "tvl1" and "tvl1_torch"


def _check_bound(bound: float) -> float:
    bound = float(bound)
    if not (np.isfinite(bound) and bound > 0):
        raise ValueError(f"flow bound: expected a finite value > 0, got {bound}")
    return bound


def make_pair_flow(settings: FlowSettings = FlowSettings()) -> PairFlow:
    """Build a function computing the flow of one frame pair with a fresh OpenCV object.

    The returned function is not thread-safe; build one per thread / video. For
    "tvl1_torch" it runs ``features.tvl1.tvl1_flow`` on one pair on the CPU (``iter_flow``
    batches pairs instead).

    Args:
        settings: the method and its settings (the bound and the batch are not used here).

    Returns:
        ``fn(prev, next) -> (H, W, 2) float32`` flow in pixels.
    """
    if settings.method == "tvl1":
        algo = cv2.optflow.DualTVL1OpticalFlow_create()
        for key, value in settings.tvl1.model_dump().items():
            getattr(algo, TVL1_PARAMS[key])(value)
    elif settings.method == "dis":
        algo = cv2.DISOpticalFlow_create(DIS_PRESETS[settings.dis_preset])
    else:
        return _torch_pair_flow(_solver(settings.tvl1))

    def pair_flow(prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        return algo.calc(prev, nxt, None)  # (H, W, 2) float32

    return pair_flow


def _solver(tvl1: TVL1Settings) -> TVL1Solver:
    """The TV-L1 settings with OpenCV's defaults for what they leave out (a `TVL1Solver` as is)."""
    return TVL1Solver(**tvl1.model_dump())


def _torch_pair_flow(solver: TVL1Solver) -> PairFlow:
    """``make_pair_flow`` for "tvl1_torch": one pair at a time on the CPU."""

    def pair_flow(prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        a, b = torch.from_numpy(np.ascontiguousarray(prev)), torch.from_numpy(np.ascontiguousarray(nxt))
        return tvl1_flow(a[None], b[None], settings=solver)[0].numpy()  # (H, W, 2)

    return pair_flow


def quantize(flow: np.ndarray, bound: float) -> np.ndarray:
    """Clip flow to [-bound, bound] pixels and map it to uint8.

    Args:
        flow: (..., 2) float flow in pixels.
        bound: clipping bound in pixels (> 0).

    Returns:
        uint8 array of the same shape: round((clip(v) + bound) * 255 / (2 * bound)).
    """
    bound = _check_bound(bound)
    v = np.clip(np.asarray(flow, dtype=np.float32), -bound, bound)
    return np.rint((v + bound) * np.float32(255.0 / (2.0 * bound))).astype(np.uint8)


def dequantize(q: np.ndarray, bound: float) -> np.ndarray:
    """Map quantised flow to the I3D flow input scale, (q / 255) * 2 - 1.

    The result is v / bound in [-1, 1] (within 1/255); it does not depend on ``bound``, which
    is taken (and checked) so that callers pass the file's ``bound`` attr explicitly, as for
    ``dequantize_pixels``.

    Args:
        q: uint8 quantised flow, any shape.
        bound: the bound the flow was quantised with (> 0).

    Returns:
        float32 array of the same shape in [-1, 1].
    """
    _check_bound(bound)
    return np.asarray(q, dtype=np.float32) * np.float32(2.0 / 255.0) - np.float32(1.0)


def dequantize_pixels(q: np.ndarray, bound: float) -> np.ndarray:
    """Map quantised flow back to pixels: q * 2 * bound / 255 - bound.

    Error versus the original value (inside the bound) is at most bound / 255.

    Args:
        q: uint8 quantised flow, any shape.
        bound: the bound the flow was quantised with (> 0).

    Returns:
        float32 array of the same shape in [-bound, bound].
    """
    bound = _check_bound(bound)
    return np.asarray(q, dtype=np.float32) * np.float32(2.0 * bound / 255.0) - np.float32(bound)


def _check_gray(frame: np.ndarray, index: int, shape: tuple[int, ...] | None) -> np.ndarray:
    """Validate one grayscale frame: (H, W) uint8, same shape as the first frame."""
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 2:
        raise ValueError(f"frame {index}: expected a grayscale (H, W) uint8 array, got {frame.dtype} {frame.shape}")
    if shape is not None and frame.shape != shape:
        raise ValueError(f"frame {index}: shape {frame.shape} differs from the first frame {shape}")
    return np.ascontiguousarray(frame)


def iter_flow(
    frames_gray: Iterable[np.ndarray],
    settings: FlowSettings = FlowSettings(),
    *,
    device: str | torch.device = "cpu",
) -> Iterator[np.ndarray]:
    """Stream quantised flow from a stream of grayscale frames.

    The OpenCV methods hold one previous frame; "tvl1_torch" holds at most
    ``settings.tvl1_torch_batch`` + 1 frames and computes their pairs at once. Output, order
    and quantisation are the same for every method.

    Args:
        frames_gray: iterable of (H, W) uint8 frames (e.g. a decoder generator).
        settings: the method, the quantisation bound and the method's settings.
        device: torch device of "tvl1_torch" ("cpu", "cuda", a ``torch.device``).

    Yields:
        (H, W, 2) uint8 quantised flow, as many as there are frames (last pair repeated;
        zero flow for a single frame).

    Raises:
        ValueError: if there is no frame, or a frame is not (H, W) uint8 of a common shape.
    """
    if settings.method == "tvl1_torch":
        yield from _iter_flow_torch(frames_gray, settings=settings, device=device)
        return
    pair_flow = make_pair_flow(settings)
    it = iter(frames_gray)
    first = next(it, None)
    if first is None:
        raise ValueError("compute flow: no frame given; expected at least 1")
    prev = _check_gray(first, 0, None)
    last: np.ndarray | None = None
    for index, frame in enumerate(it, start=1):
        cur = _check_gray(frame, index, prev.shape)
        last = quantize(pair_flow(prev, cur), settings.bound)  # (H, W, 2)
        yield last
        prev = cur
    if last is None:
        last = quantize(np.zeros((*prev.shape, 2), dtype=np.float32), settings.bound)
    yield last


def _iter_flow_torch(
    frames_gray: Iterable[np.ndarray],
    *,
    settings: FlowSettings,
    device: str | torch.device,
) -> Iterator[np.ndarray]:
    """``iter_flow`` for "tvl1_torch": batches of consecutive pairs, at most batch + 1 frames held."""
    solver, bound = _solver(settings.tvl1), settings.bound
    device = torch.device(device)
    it = iter(frames_gray)
    first = next(it, None)
    if first is None:
        raise ValueError("compute flow: no frame given; expected at least 1")
    first = _check_gray(first, 0, None)
    held = torch.empty((settings.tvl1_torch_batch + 1, *first.shape), dtype=torch.uint8)  # (batch + 1, H, W)
    held[0] = torch.from_numpy(first)
    count = 1  # frames in `held`; held[0] is the first frame of the next pair
    last: np.ndarray | None = None

    def pairs_of(n: int) -> Iterator[np.ndarray]:
        frames = held[:n].to(device)  # (n, H, W)
        flow = tvl1_flow(frames[:-1], frames[1:], settings=solver).cpu().numpy()  # (n-1, H, W, 2)
        for f in flow:
            yield quantize(f, bound)  # (H, W, 2)

    for index, frame in enumerate(it, start=1):
        held[count] = torch.from_numpy(_check_gray(frame, index, first.shape))
        count += 1
        if count == held.shape[0]:
            for last in pairs_of(count):
                yield last
            held[0] = held[count - 1]
            count = 1
    if count > 1:
        for last in pairs_of(count):
            yield last
    if last is None:
        last = quantize(np.zeros((*first.shape, 2), dtype=np.float32), bound)
    yield last


def compute_flow(
    frames_gray: np.ndarray,
    settings: FlowSettings = FlowSettings(),
    *,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Quantised optical flow of a whole clip.

    Args:
        frames_gray: (N, H, W) uint8 grayscale frames, N >= 1.
        settings, device: as for ``iter_flow``.

    Returns:
        (N, H, W, 2) uint8 flow, flow[i] from frame i to i+1, the last pair repeated.
    """
    frames = np.asarray(frames_gray)
    if frames.ndim != 3 or frames.dtype != np.uint8 or frames.shape[0] < 1:
        raise ValueError(f"compute_flow: expected (N >= 1, H, W) uint8 frames, got {frames.dtype} {frames.shape}")
    n, h, w = frames.shape
    out = np.empty((n, h, w, 2), dtype=np.uint8)  # (N, H, W, 2)
    for i, q in enumerate(iter_flow(frames, settings, device=device)):
        out[i] = q
    return out


def write_flow_frames(
    path: str | os.PathLike[str],
    flow_frames: Iterable[np.ndarray],
    *,
    method: str,
    bound: float,
    compression: Compression = "gzip",
    params: Mapping[str, Any] | None = None,
) -> int:
    """Write a stream of quantised flow frames to a flow file, atomically.

    Frames are appended one at a time, so a whole video never has to be in memory
    (``write_flow_frames(p, iter_flow(decoder, ...), ...)``).

    Args:
        path: destination ``.h5`` file.
        flow_frames: iterable of (H, W, 2) uint8 frames of one shape.
        method: flow method name stored in the ``method`` attr.
        bound: quantisation bound stored in the ``bound`` attr.
        compression: "gzip" (smaller) or "lzf" (faster).
        params: method settings, stored as a JSON string in the ``params`` attr.

    Returns:
        The number of frames written.

    Raises:
        ValueError: if there is no frame or a frame is not (H, W, 2) uint8 of a common shape.
    """
    bound = _check_bound(bound)
    if compression not in ("gzip", "lzf"):
        raise ValueError(f"flow compression {compression!r}: expected 'gzip' or 'lzf'")
    with atomic_h5_file(path) as h5:
        dset: h5py.Dataset | None = None
        n = 0
        for frame in flow_frames:
            frame = np.asarray(frame)
            if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 2:
                raise ValueError(f"{path}: flow frame {n}: expected (H, W, 2) uint8, got {frame.dtype} {frame.shape}")
            if dset is None:
                dset = h5.create_dataset(
                    FLOW_DATASET,
                    shape=(0, *frame.shape),
                    maxshape=(None, *frame.shape),
                    chunks=(1, *frame.shape),
                    dtype=np.uint8,
                    compression=compression,
                )  # (N, H, W, 2)
            elif frame.shape != dset.shape[1:]:
                raise ValueError(f"{path}: flow frame {n}: shape {frame.shape} differs from {dset.shape[1:]}")
            dset.resize(n + 1, axis=0)
            dset[n] = frame
            n += 1
        if dset is None:
            raise ValueError(f"{path}: no flow frame to write")
        h5.attrs["method"] = str(method)
        h5.attrs["bound"] = bound
        h5.attrs["frames"] = n
        h5.attrs["params"] = json.dumps(dict(params or {}), sort_keys=True)
    return n


def write_flow(
    path: str | os.PathLike[str],
    flow_u8: np.ndarray,
    *,
    method: str,
    bound: float,
    compression: Compression = "gzip",
    params: Mapping[str, Any] | None = None,
) -> int:
    """Write a whole (N, H, W, 2) uint8 flow array to a flow file, atomically.

    Args:
        path: destination ``.h5`` file.
        flow_u8: (N, H, W, 2) uint8 quantised flow, N >= 1.
        method, bound, compression, params: as in ``write_flow_frames``.

    Returns:
        The number of frames written.
    """
    flow_u8 = np.asarray(flow_u8)
    if flow_u8.ndim != 4:
        raise ValueError(f"{path}: expected flow of shape (N, H, W, 2), got {flow_u8.shape}")
    return write_flow_frames(path, iter(flow_u8), method=method, bound=bound, compression=compression, params=params)


class FlowReader(Closing):
    """Lazy read access to a flow file; slicing reads only the requested frames.

    Args:
        path: a flow file written by ``write_flow`` / ``write_flow_frames``.

    Raises:
        FlowFileError: naming the file, if it is missing, truncated, corrupt or not a flow file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._h5 = open_hdf5(self.path, what="flow file", error=FlowFileError, missing=FlowFileError)
        try:
            self._dset = self._check()
        except BaseException:
            self._h5.close()
            raise

    def _check(self) -> h5py.Dataset:
        dset = self._h5.get(FLOW_DATASET)
        missing = [k for k in ("method", "bound", "frames") if k not in self._h5.attrs]
        if not isinstance(dset, h5py.Dataset) or missing:
            raise FlowFileError(
                f"flow file {self.path}: expected dataset {FLOW_DATASET!r} and attrs "
                f"method, bound, frames (missing attrs {missing})"
            )
        shape = dset.shape
        if dset.dtype != np.uint8 or len(shape) != 4 or shape[3] != 2:
            raise FlowFileError(f"flow file {self.path}: expected uint8 (N, H, W, 2), got {dset.dtype} {shape}")
        if int(self._h5.attrs["frames"]) != shape[0]:
            raise FlowFileError(
                f"flow file {self.path}: attr frames={int(self._h5.attrs['frames'])} "
                f"but the dataset has {shape[0]} frames"
            )
        return dset

    @property
    def attrs(self) -> dict[str, Any]:
        """``method`` (str), ``bound`` (float), ``frames`` (int), ``params`` (dict)."""
        a = self._h5.attrs
        method = a["method"]
        return {
            "method": method.decode() if isinstance(method, bytes) else str(method),
            "bound": float(a["bound"]),
            "frames": int(a["frames"]),
            "params": json.loads(a.get("params", "{}")),
        }

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(N, H, W, 2)."""
        return self._dset.shape

    def __len__(self) -> int:
        return self._dset.shape[0]

    def __getitem__(self, index: int | slice) -> np.ndarray:
        """Frames ``index`` as uint8, (H, W, 2) for an int, (n, H, W, 2) for a slice."""
        try:
            return self._dset[index]
        except OSError as err:
            raise FlowFileError(f"flow file {self.path}: cannot read frames {index}: {err}") from err

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self[i]  # (H, W, 2)

    def close(self) -> None:
        """Close the underlying file."""
        self._h5.close()


def read_flow(path: str | os.PathLike[str]) -> tuple[np.ndarray, dict[str, Any]]:
    """Read a whole flow file.

    Args:
        path: a flow file.

    Returns:
        ((N, H, W, 2) uint8 flow, attrs dict as in ``FlowReader.attrs``).
    """
    with FlowReader(path) as reader:
        return reader[:], reader.attrs


def iter_flow_frames(path: str | os.PathLike[str]) -> Iterator[np.ndarray]:
    """Yield a flow file's (H, W, 2) uint8 frames one at a time (the file stays open meanwhile)."""
    with FlowReader(path) as reader:
        yield from reader
