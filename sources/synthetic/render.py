"""Rendering a planned synthetic video: background scene, action instances, H.264 file."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from core.files import atomic_path
from features.video import add_h264_stream
from sources.synthetic.plan import NOISE, SCENE, SyntheticInstance, SyntheticVideo, peak_frame, video_rng
from sources.synthetic.spec import ActionClass, SyntheticSpec

_CHUNK = 64  # frames rendered at once
_NOISE_BANK = 32  # distinct sensor-noise frames per video


def envelope(u: np.ndarray, peak: float) -> np.ndarray:
    """Onset/offset envelope of an instance: 0 at u=0 and u=1, 1 at u=peak (smoothstep sides).

    Args:
        u: relative positions in [0, 1].
        peak: relative position of the maximum, in (0, 1).

    Returns:
        Envelope values, same shape as ``u``.
    """
    x = np.where(u < peak, u / peak, (1.0 - u) / (1.0 - peak))
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


@dataclass(frozen=True)
class _Track:
    """Per-frame drawing parameters of one instance over its frames, each (L,)."""

    x: np.ndarray
    y: np.ndarray
    radius: np.ndarray
    angle: np.ndarray
    alpha: np.ndarray


def _track(inst: SyntheticInstance, cls: ActionClass, fps: float) -> _Track:
    """Position, size, orientation and opacity of the object at each of its frames."""
    length = inst.end_frame - inst.start_frame
    u = (np.arange(length) + 0.5) / length  # (L,)
    env = envelope(u, inst.peak)
    if length > 1:
        # the peak frame reaches the full envelope, so the salient frame is the strongest
        env[peak_frame(inst) - inst.start_frame] = 1.0
    strength = 0.25 + 0.75 * env  # motion amplitude and speed
    phase = 2 * np.pi * inst.cycles_per_s * np.cumsum(strength) / fps  # (L,)
    travel = np.cumsum(strength) / np.sum(strength)  # (L,) 0..1
    a = inst.amplitude * strength
    x = np.full(length, inst.cx)
    y = np.full(length, inst.cy)
    scale = np.ones(length)
    angle = np.full(length, inst.angle)
    d = inst.direction
    if cls.motion == "orbit":
        x, y = inst.cx + a * np.cos(d * phase), inst.cy + a * np.sin(d * phase)
    elif cls.motion == "bounce":
        y = inst.cy + a * (1.0 - 2.0 * np.abs(np.sin(phase / 2)))
    elif cls.motion == "zigzag":
        x = inst.cx + a * (2.0 * np.abs(2.0 * ((phase / (2 * np.pi)) % 1.0) - 1.0) - 1.0)
        y = inst.cy + d * 0.6 * inst.amplitude * (2.0 * travel - 1.0)
    elif cls.motion == "pulse":
        scale = 1.0 + 0.9 * strength * (0.5 - 0.5 * np.cos(2 * phase))
    elif cls.motion == "spin":
        angle = inst.angle + d * 1.5 * phase
    elif cls.motion == "shake":
        x = inst.cx + 0.5 * a * np.sin(3 * phase)
    elif cls.motion == "figure8":
        x, y = inst.cx + a * np.sin(phase), inst.cy + 0.6 * a * np.sin(2 * phase)
    elif cls.motion == "sweep":
        x = inst.cx + d * inst.amplitude * (2.0 * travel - 1.0)
    elif cls.motion == "wobble":  # rocks back and forth in place (spin turns one way)
        angle = inst.angle + d * 0.6 * strength * np.sin(2 * phase)
    elif cls.motion == "swing":  # pendulum: along an arc, tilting with it
        swing = 0.9 * strength * np.sin(phase)
        x, y = inst.cx + inst.amplitude * np.sin(swing), inst.cy + d * inst.amplitude * (1.0 - np.cos(swing))
        angle = inst.angle + swing
    else:
        raise ValueError(f"class '{cls.name}': unknown motion {cls.motion!r}")
    radius = inst.radius * (0.55 + 0.45 * env) * scale
    return _Track(x=x, y=y, radius=radius, angle=angle, alpha=0.35 + 0.65 * env)


def _shape(shape: str, a: np.ndarray, b: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Signed distance (px, negative inside) and optional texture of a shape.

    Args:
        shape: shape name.
        a: local x coordinates (rotated frame), (F, H, W).
        b: local y coordinates, (F, H, W).
        r: radius per frame, (F, 1, 1).

    Returns:
        (distance (F, H, W), texture (F, H, W) in [0.35, 1] or None).
    """
    rho = np.sqrt(a * a + b * b)
    if shape == "disk":
        return rho - r, None
    if shape == "square":
        return np.maximum(np.abs(a), np.abs(b)) - 0.8 * r, None
    if shape == "triangle":
        return np.maximum(0.866 * np.abs(a) + 0.5 * b, -b) - 0.5 * r, None
    if shape == "ring":
        return np.abs(rho - 0.75 * r) - 0.25 * r, None
    if shape == "cross":
        arm = 0.28 * r
        horizontal = np.maximum(np.abs(a) - r, np.abs(b) - arm)
        vertical = np.maximum(np.abs(a) - arm, np.abs(b) - r)
        return np.minimum(horizontal, vertical), None
    if shape == "stripes":
        texture = 0.675 + 0.325 * np.clip(4.0 * np.sin(np.pi * a / (0.3 * r)), -1.0, 1.0)
        return rho - r, texture
    if shape == "checker":
        cells = np.sin(np.pi * a / (0.4 * r)) * np.sin(np.pi * b / (0.4 * r))
        return np.maximum(np.abs(a), np.abs(b)) - 0.85 * r, 0.675 + 0.325 * np.clip(4.0 * cells, -1.0, 1.0)
    if shape == "bar":
        return np.maximum(np.abs(a) - r, np.abs(b) - 0.4 * r), None
    if shape == "star":  # five points: the radius swings between 0.45 r and r with the polar angle
        return rho - r * (0.725 + 0.275 * np.cos(5 * np.arctan2(b, a))), None
    if shape == "crescent":  # a disk with an offset disk cut out
        return np.maximum(rho - r, 0.8 * r - np.sqrt((a - 0.45 * r) ** 2 + b * b)), None
    raise ValueError(f"unknown shape {shape!r}")


@dataclass(frozen=True)
class _Scene:
    """The non-action content of one video."""

    base: np.ndarray  # (H, W, 3) static background texture
    gain_amp: float  # slow global brightness change: 1 + amp * sin(2 pi t / period + phase)
    gain_period: float
    gain_phase: float
    blobs: tuple[tuple[np.ndarray, ...], ...]  # (x0, y0, vx, vy, sigma, rgb (3,)) per blob


def _scene(spec: SyntheticSpec, video: SyntheticVideo) -> _Scene:
    """Draw the background texture, brightness drift and distractor blobs of a video."""
    rng = video_rng(spec, video.subset, video.index, SCENE)
    h, w = spec.height, spec.width
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / max(h, w)  # (H, W)
    base = np.empty((h, w, 3), np.float32)
    colour = rng.uniform(0.15, 0.35, size=3)
    for ch in range(3):
        base[:, :, ch] = colour[ch]
        for _ in range(3):  # smooth plane waves
            amp, fx, fy, phase = rng.uniform([0.02, -2.0, -2.0, 0.0], [0.06, 2.0, 2.0, 2 * np.pi])
            base[:, :, ch] += amp * np.sin(2 * np.pi * (fx * xx + fy * yy) + phase)
    side = min(h, w)
    blobs = []
    for _ in range(int(rng.integers(spec.distractors[0], spec.distractors[1] + 1))):
        speed = rng.uniform(0.05, 0.25) * side  # px / s
        heading = rng.uniform(0, 2 * np.pi)
        blobs.append(
            (
                rng.uniform(0, w),
                rng.uniform(0, h),
                speed * np.cos(heading),
                speed * np.sin(heading),
                rng.uniform(0.06, 0.14) * side,
                rng.uniform(-0.25, 0.3, size=3).astype(np.float32),
            )
        )
    return _Scene(
        base=base,
        gain_amp=float(rng.uniform(0.05, 0.15)),
        gain_period=float(rng.uniform(8.0, 20.0)),
        gain_phase=float(rng.uniform(0, 2 * np.pi)),
        blobs=tuple(blobs),
    )


def _reflect(position: np.ndarray, size: int) -> np.ndarray:
    """Fold a straight-line coordinate into [0, size] (bouncing off the frame edges)."""
    period = 2.0 * size
    p = np.mod(position, period)
    return np.where(p > size, period - p, p)


def _draw_scene(scene: _Scene, t: np.ndarray, spec: SyntheticSpec) -> np.ndarray:
    """Background, brightness drift and distractors at times ``t`` (F,) -> (F, H, W, 3)."""
    gain = 1.0 + scene.gain_amp * np.sin(2 * np.pi * t / scene.gain_period + scene.gain_phase)  # (F,)
    frames = scene.base[None] * gain[:, None, None, None].astype(np.float32)  # (F, H, W, 3)
    xs = np.arange(spec.width, dtype=np.float32)
    ys = np.arange(spec.height, dtype=np.float32)
    for x0, y0, vx, vy, sigma, rgb in scene.blobs:
        bx = _reflect(x0 + vx * t, spec.width).astype(np.float32)  # (F,)
        by = _reflect(y0 + vy * t, spec.height).astype(np.float32)
        gx = np.exp(-0.5 * ((xs[None] - bx[:, None]) / sigma) ** 2)  # (F, W)
        gy = np.exp(-0.5 * ((ys[None] - by[:, None]) / sigma) ** 2)  # (F, H)
        blob = gy[:, :, None] * gx[:, None, :]  # (F, H, W)
        frames += blob[..., None] * rgb
    return frames


def _draw_instance(frames: np.ndarray, first: int, inst: SyntheticInstance, cls: ActionClass, track: _Track) -> None:
    """Alpha-blend an instance into the chunk ``frames`` (F, H, W, 3) that starts at frame ``first``."""
    lo = max(inst.start_frame, first)
    hi = min(inst.end_frame, first + len(frames))
    if lo >= hi:
        return
    k = slice(lo - inst.start_frame, hi - inst.start_frame)
    f = slice(lo - first, hi - first)
    n = hi - lo
    _, h, w, _ = frames.shape
    dx = np.arange(w, dtype=np.float32)[None, None, :] - track.x[k].astype(np.float32)[:, None, None]  # (n, 1, W)
    dy = np.arange(h, dtype=np.float32)[None, :, None] - track.y[k].astype(np.float32)[:, None, None]  # (n, H, 1)
    cos = np.cos(track.angle[k]).astype(np.float32)[:, None, None]
    sin = np.sin(track.angle[k]).astype(np.float32)[:, None, None]
    a = cos * dx + sin * dy  # (n, H, W)
    b = cos * dy - sin * dx
    distance, texture = _shape(cls.shape, a, b, track.radius[k].astype(np.float32).reshape(n, 1, 1))
    cover = np.clip(0.5 - distance, 0.0, 1.0) * track.alpha[k].astype(np.float32)[:, None, None]  # (n, H, W)
    colour = np.asarray(inst.rgb, np.float32)
    paint = colour if texture is None else texture[..., None] * colour  # (3,) or (n, H, W, 3)
    frames[f] += cover[..., None] * (paint - frames[f])


def render_frames(video: SyntheticVideo, spec: SyntheticSpec, *, with_instances: bool = True) -> Iterator[np.ndarray]:
    """Render a planned video in chunks.

    Args:
        video: the planned video.
        spec: the dataset spec.
        with_instances: False renders the same video without its actions (same background,
            distractors and noise), which isolates what the actions add.

    Yields:
        uint8 RGB chunks (F, H, W, 3) of up to 64 frames, in order.
    """
    scene = _scene(spec, video)
    noise_rng = video_rng(spec, video.subset, video.index, NOISE)
    bank = (noise_rng.standard_normal((_NOISE_BANK, spec.height, spec.width, 1)) * spec.noise_std).astype(np.float32)
    picks = noise_rng.integers(0, _NOISE_BANK, size=video.num_frames)
    by_name = {c.name: c for c in spec.classes}
    tracks = [(inst, by_name[inst.label], _track(inst, by_name[inst.label], spec.fps)) for inst in video.instances]
    for first in range(0, video.num_frames, _CHUNK):
        index = np.arange(first, min(first + _CHUNK, video.num_frames))
        frames = _draw_scene(scene, index / spec.fps, spec)  # (F, H, W, 3)
        if with_instances:
            for inst, cls, track in tracks:
                _draw_instance(frames, first, inst, cls, track)
        frames += bank[picks[index]]
        yield (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def render_video(video: SyntheticVideo, path: Path, *, spec: SyntheticSpec) -> None:
    """Render and encode one video as H.264 (yuv420p) mp4, atomically.

    Args:
        video: the planned video.
        path: destination mp4.
        spec: the dataset spec (size, fps, crf, preset).
    """
    rate = Fraction(spec.fps).limit_denominator(1001)
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = add_h264_stream(
                container, width=spec.width, height=spec.height, rate=rate, crf=spec.crf, preset=spec.preset
            )
            index = 0
            for chunk in render_frames(video, spec):
                for image in chunk:
                    frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                    frame.pts, frame.time_base = index, 1 / rate
                    container.mux(stream.encode(frame))
                    index += 1
            container.mux(stream.encode(None))
