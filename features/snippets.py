"""I3D input conventions: frame preprocessing and cutting a video into snippet batches.

RGB: resize so the short side is `short_side` (bilinear), centre crop `crop` x `crop`, pixels
p in [0, 255] to p / 255 * 2 - 1. Flow: stored as uint8 q = round((f + b) / (2 b) * 255) for a
flow f clipped to [-b, b]; it is centre cropped and mapped to q / 255 * 2 - 1 = f / b in [-1, 1].
A video of N frames gives `snippet_count(N)` snippets of `snippet` frames every `stride` frames;
the last one is padded by repeating the video's last frame. `SnippetSettings` states how the
extract stage does it (`stream_batches`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Literal, Self

import cv2
import numpy as np
import torch
from pydantic import Field, model_validator

from core.config import Config
from features.i3d import default_batch

__all__ = [
    "SnippetSettings",
    "center_crop",
    "flow_to_unit",
    "iter_snippet_batches",
    "preprocess_flow",
    "preprocess_rgb",
    "resize_short_side",
    "rgb_to_unit",
    "snippet_count",
    "snippet_starts",
    "stream_batches",
]


class SnippetSettings(Config):
    """How the extract stage cuts a decoded video into I3D input (`stream_batches`) and in what
    precision the network runs (the extract section of params.yaml but where it runs)."""

    snippet: int = Field(16, ge=1)  # frames per snippet
    stride: int = Field(16, ge=1)  # frames between snippet starts
    frame_step: int = Field(2, ge=1)  # the network sees every k-th frame of a snippet; 1 for real data
    crop: int = Field(112, ge=32)  # centre crop side (px); 224 for real data (short side 256)
    batch: Annotated[int, Field(ge=1)] | Literal["auto"] = "auto"  # snippets per forward pass; "auto": default_batch
    precision: Literal["bf16", "fp32"] = "bf16"  # bf16 where the hardware has it (else float32), or fp32

    @model_validator(mode="after")
    def _step_within_snippet(self) -> Self:
        if self.frame_step > self.snippet:
            raise ValueError(f"frame_step ({self.frame_step}) must not exceed snippet ({self.snippet})")
        return self


def _check_frames(frames: np.ndarray, *, channels: int, name: str) -> None:
    if frames.ndim != 4 or frames.shape[3] != channels:
        raise ValueError(f"{name}: expected frames (N, H, W, {channels}), got {tuple(frames.shape)}")
    if frames.dtype != np.uint8:
        raise ValueError(f"{name}: expected uint8 frames, got {frames.dtype}")


def resize_short_side(frames: np.ndarray, *, short_side: int) -> np.ndarray:
    """Bilinear resize keeping the aspect ratio.

    Args:
        frames: (N, H, W, C) uint8.
        short_side: target length of min(H, W); the other side is rounded to the nearest pixel.

    Returns:
        (N, H', W', C) uint8; `frames` itself when the short side already has that length.
    """
    height, width = frames.shape[1:3]
    if min(height, width) == short_side:
        return frames
    scale = short_side / min(height, width)
    size = (max(short_side, round(width * scale)), max(short_side, round(height * scale)))  # (W', H')
    resized = [cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR) for frame in frames]
    return np.stack(resized).reshape(len(frames), size[1], size[0], frames.shape[3])


def center_crop(frames: np.ndarray, *, crop: int) -> np.ndarray:
    """Args:
        frames: (N, H, W, C) with H, W >= crop.
        crop: side of the square crop; offsets are floor((H - crop) / 2), floor((W - crop) / 2).

    Returns:
        (N, crop, crop, C) view of `frames`.
    """
    height, width = frames.shape[1:3]
    if height < crop or width < crop:
        raise ValueError(f"center_crop: frames {height}x{width} are smaller than the crop {crop}")
    top, left = (height - crop) // 2, (width - crop) // 2
    return frames[:, top : top + crop, left : left + crop]


def rgb_to_unit(frames: np.ndarray) -> np.ndarray:
    """Args:
        frames: uint8 pixels.

    Returns:
        float32 p / 255 * 2 - 1 in [-1, 1], same shape.
    """
    return frames.astype(np.float32) * np.float32(2 / 255) - np.float32(1)


def flow_to_unit(flow: np.ndarray) -> np.ndarray:
    """Args:
        flow: uint8 flow quantised over [-b, b].

    Returns:
        float32 q / 255 * 2 - 1 in [-1, 1] (i.e. flow / b), same shape.
    """
    return rgb_to_unit(flow)


def preprocess_rgb(frames: np.ndarray, *, short_side: int | None = 256, crop: int | None = 224) -> np.ndarray:
    """RGB frames to I3D input values.

    Args:
        frames: (N, H, W, 3) uint8 RGB.
        short_side: resize so min(H, W) equals this (bilinear); None keeps the size.
        crop: centre crop side; None keeps the whole frame.

    Returns:
        (N, crop, crop, 3) float32 in [-1, 1].
    """
    _check_frames(frames, channels=3, name="preprocess_rgb")
    if short_side is not None:
        frames = resize_short_side(frames, short_side=short_side)
    if crop is not None:
        frames = center_crop(frames, crop=crop)
    return rgb_to_unit(frames)


def preprocess_flow(flow: np.ndarray, *, crop: int | None = 224) -> np.ndarray:
    """uint8-quantised optical flow to I3D input values.

    Flow is computed on the decoded (already resized) frames, so it is only cropped: resizing
    would also have to rescale the vectors.

    Args:
        flow: (N, H, W, 2) uint8, (x, y) displacement quantised over [-bound, bound].
        crop: centre crop side; None keeps the whole frame.

    Returns:
        (N, crop, crop, 2) float32 in [-1, 1].
    """
    _check_frames(flow, channels=2, name="preprocess_flow")
    if crop is not None:
        flow = center_crop(flow, crop=crop)
    return flow_to_unit(flow)


def snippet_count(n_frames: int, snippet: int = 16, stride: int = 16) -> int:
    """Number of snippets of a video.

    Snippets start at 0, stride, 2 * stride, ... and stop once one reaches the last frame
    (stride <= snippet) or once the next start is past it (stride > snippet). For
    stride == snippet this is ceil(n_frames / snippet).

    Args:
        n_frames: frames in the video (>= 1).
        snippet: frames per snippet.
        stride: frames between snippet starts.

    Returns:
        min(1 + ceil(max(n - snippet, 0) / stride), ceil(n / stride)).
    """
    if n_frames < 1 or snippet < 1 or stride < 1:
        raise ValueError(f"snippet_count: need n_frames, snippet, stride >= 1, got {n_frames}, {snippet}, {stride}")
    covering = 1 + math.ceil(max(n_frames - snippet, 0) / stride)
    return min(covering, math.ceil(n_frames / stride))


def snippet_starts(n_frames: int, *, snippet: int = 16, stride: int = 16) -> np.ndarray:
    """Args:
        n_frames: frames in the video.
        snippet: frames per snippet.
        stride: frames between snippet starts.

    Returns:
        (K,) int64 first frame of each snippet, K = snippet_count(n_frames, snippet, stride).
    """
    return np.arange(snippet_count(n_frames, snippet, stride), dtype=np.int64) * stride


def iter_snippet_batches(
    frames: Any,
    *,
    snippet: int = 16,
    stride: int = 16,
    batch: int = 8,
    frame_step: int = 1,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Iterator[torch.Tensor]:
    """Cut frames into snippets and yield them in batches, ready for I3D.

    Each batch reads one contiguous slice of `frames`, so `frames` may be a numpy array, a
    memmap or an h5py dataset of shape (N, H, W, C). Frame indices past the end repeat frame N-1.

    Args:
        frames: (N, H, W, C) frames, sliceable along N.
        snippet: frames per snippet.
        stride: frames between snippet starts.
        batch: snippets per yielded tensor (the last batch may be smaller).
        frame_step: keep every `frame_step`-th frame of each snippet (1 = all of them): the
            network sees ceil(snippet / frame_step) frames spanning the same time.
        transform: applied to each slice of frames (M, H, W, C) before cutting, e.g.
            `functools.partial(preprocess_rgb, short_side=256, crop=224)`; None keeps values as
            they are (cast to float32).

    Yields:
        (B, C, S, H', W') float32 tensors, S = ceil(snippet / frame_step); their memory is
        channels-last-3d (a view of a (B, S, H', W', C) array), the layout the fast I3D path uses.
    """
    if batch < 1:
        raise ValueError(f"iter_snippet_batches: batch must be >= 1, got {batch}")
    if not 1 <= frame_step <= snippet:
        raise ValueError(f"iter_snippet_batches: frame_step must be in [1, snippet={snippet}], got {frame_step}")
    n_frames = len(frames)
    starts = snippet_starts(n_frames, snippet=snippet, stride=stride)
    for first in range(0, len(starts), batch):
        chunk_starts = starts[first : first + batch]  # (B,)
        lo = int(chunk_starts[0])
        hi = min(int(chunk_starts[-1]) + snippet, n_frames)
        index = chunk_starts[:, None] + np.arange(0, snippet, frame_step)[None, :]  # (B, S)
        index = np.minimum(index, n_frames - 1) - lo
        used, index = np.unique(index, return_inverse=True)  # transform only the frames kept
        block = np.asarray(frames[lo:hi])[used]
        if transform is not None:
            block = transform(block)
        block = np.asarray(block, dtype=np.float32)  # (M, H', W', C)
        snippets = torch.from_numpy(block[index.reshape(len(chunk_starts), -1)])  # (B, S, H', W', C)
        yield snippets.permute(0, 4, 1, 2, 3)  # (B, C, S, H', W')


def stream_batches(
    frames: Any,
    *,
    settings: SnippetSettings,
    stream: Literal["rgb", "flow"],
    dtype: torch.dtype,
    device: torch.device | str,
) -> Iterator[torch.Tensor]:
    """The snippet batches of one stream of a decoded video, as the extract stage feeds I3D.

    Args:
        frames: (N, H, W, 3) uint8 RGB frames at the decoded size (not resized), or the
            video's (N, H, W, 2) uint8 flow; sliceable along N.
        settings: snippet, stride, frame step, centre crop and batch.
        stream: "rgb" or "flow": which preprocessing (`preprocess_rgb`, `preprocess_flow`).
        dtype: the dtype the network computes in and
        device: the device it runs on, for an "auto" batch (`features.i3d.default_batch`).

    Returns:
        `iter_snippet_batches`' (B, C, S, crop, crop) float32 batches.
    """
    if stream == "rgb":
        transform = functools.partial(preprocess_rgb, short_side=None, crop=settings.crop)
    else:
        transform = functools.partial(preprocess_flow, crop=settings.crop)
    batch = settings.batch if settings.batch != "auto" else default_batch(dtype, device)
    return iter_snippet_batches(
        frames,
        snippet=settings.snippet,
        stride=settings.stride,
        batch=batch,
        frame_step=settings.frame_step,
        transform=transform,
    )
