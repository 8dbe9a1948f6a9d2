"""Tiny synthetic test videos with exactly known frame times and contents."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

LEVEL_STEP = 8  # frame i is a flat grey image of level LEVEL_STEP * i


def write_indexed_video(
    path: Path,
    pts: list[int],
    *,
    time_base: Fraction,
    size: tuple[int, int] = (64, 48),
    lossless: bool = True,
) -> list[Fraction]:
    """Write an mp4 whose frame i is flat grey `LEVEL_STEP * i`, shown at pts[i] * time_base.

    Returns:
        The frame times in seconds (exact fractions).
    """
    width, height = size
    with av.open(str(path), mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=Fraction(1) / time_base)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv444p" if lossless else "yuv420p"
        stream.options = {"qp": "0"} if lossless else {"crf": "23"}
        stream.codec_context.time_base = time_base
        for i, p in enumerate(pts):
            img = np.full((height, width, 3), LEVEL_STEP * i, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = p
            frame.time_base = time_base
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return [Fraction(p) * time_base for p in pts]


def frame_levels(frames: np.ndarray) -> np.ndarray:
    """Recover each frame's source index from its grey level."""
    return np.rint(frames.reshape(len(frames), -1).mean(axis=1) / LEVEL_STEP).astype(int)


def expected_hold_indices(times: list[Fraction], end: Fraction, fps: int) -> list[int]:
    """Sample-and-hold reference: output k at k/fps shows the last frame with time <= k/fps."""
    out, k = [], 0
    while Fraction(k, fps) < end:
        t = Fraction(k, fps)
        out.append(max(i for i, ti in enumerate(times) if ti <= t))
        k += 1
    return out


def write_audio_only(path: Path) -> None:
    """An mp4 with a short silent AAC stream and no video stream."""
    with av.open(str(path), mode="w", format="mp4") as out:
        stream = out.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for _ in range(5):
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def write_texture_video(path: Path, n: int, *, size: tuple[int, int] = (64, 48), fps: int = 25, seed: int = 0) -> None:
    """Write a lossless (yuv444p, qp 0) mp4 of `n` random-texture frames at a constant rate."""
    width, height = size
    rng = np.random.default_rng(seed)
    with av.open(str(path), mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv444p"
        stream.options = {"qp": "0"}
        for i in range(n):
            img = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
