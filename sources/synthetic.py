"""The embedded synthetic dataset: seeded mp4 videos with known action intervals.

Built as a fair test of *completeness* learning (a detector trained from one labelled frame
per instance must learn to cover whole actions, not only the labelled moment):

- Every action instance is one object of its class that appears at low contrast at the
  start of its segment, grows and speeds up towards a peak (its most salient moment,
  stored as ``salient``), where it performs its class motion most strongly and is most
  visible, then weakens again until it vanishes at the segment end. Contrast, size, motion
  amplitude and motion speed all follow the same envelope (0 at the boundaries, 1 at the
  peak), so frames near the boundaries look unlike frames near the peak.
- Classes differ in shape/texture *and* motion pattern (`CLASS_LIBRARY`). Within a class,
  speed, size, colour, position, orientation, direction and duration (0.6 to 8 s by
  default) vary per instance.
- The background is never empty: a smooth random texture whose brightness drifts slowly,
  soft blobs that wander across the frame (motion that is not an action) and sensor noise.
- Several instances per video, some videos with two classes, actions covering roughly a
  third of the time (at most ``max_coverage``).

Everything is drawn from ``numpy.random.default_rng`` streams keyed by (seed, subset, video
index, component), so the same spec gives bit-identical annotations and, with the same
PyAV/libx264 build (the encoder runs single-threaded), identical video bytes. Frames are
generated in vectorised chunks of ``(F, H, W)`` arrays.
"""

from __future__ import annotations

import colorsys
import math
import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from statistics import NormalDist
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from core.files import atomic_path
from features.video import add_h264_stream

SUBSET_CODES = {"train": 0, "test": 1}
"""Subset part of the rng key of a video."""

_PLAN, _SCENE, _NOISE = 0, 1, 2  # rng components of a video
_CHUNK = 64  # frames rendered at once
_NOISE_BANK = 32  # distinct sensor-noise frames per video
_OPTIONS = ("preset", "distractors", "noise_std", "min_gap_s", "max_coverage", "duration_law", "class_offset")  # render_dataset extras
# Log-normal fit of the 6,318 THUMOS'14 instance durations of ../shared/datasets/thumos14/gt.json
# (mean and std of log seconds; median 3.0 s). Truncated to 0.6-8 s it has median 2.7 s and
# 15 % of instances no longer than two 0.64-s snippets (THUMOS'14 inside that range: 2.7 s, 17 %).
THUMOS14_LOG_SECONDS = (1.108, 0.835)
DURATION_LAWS = ("thumos14", "loguniform")


@dataclass(frozen=True)
class ActionClass:
    """An action class: the object's shape/texture and its motion pattern.

    Attributes:
        name: class name in the annotations.
        shape: disk | square | triangle | ring | cross | stripes | checker | bar | star | crescent.
        motion: orbit | bounce | zigzag | pulse | spin | shake | figure8 | sweep | wobble | swing.
        hue: base hue in [0, 1); instances jitter around it.
    """

    name: str
    shape: str
    motion: str
    hue: float


CLASS_LIBRARY: tuple[ActionClass, ...] = (
    ActionClass("OrbitDisk", "disk", "orbit", 0.00),
    ActionClass("BounceSquare", "square", "bounce", 0.33),
    ActionClass("ZigzagTriangle", "triangle", "zigzag", 0.60),
    ActionClass("PulseRing", "ring", "pulse", 0.08),
    ActionClass("SpinCross", "cross", "spin", 0.83),
    ActionClass("ShakeStripes", "stripes", "shake", 0.50),
    ActionClass("EightChecker", "checker", "figure8", 0.95),
    ActionClass("SweepBar", "bar", "sweep", 0.17),
    ActionClass("WobbleStar", "star", "wobble", 0.70),
    ActionClass("SwingCrescent", "crescent", "swing", 0.42),
)
"""All classes, in the order `SyntheticSpec.class_offset` and `num_classes` take them."""


def _pair(value: Any, name: str, *, cast: type) -> tuple:
    """Validate a ``[low, high]`` range with 0 < low <= high."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"synthetic spec '{name}': expected [low, high], got {value!r}")
    low, high = cast(value[0]), cast(value[1])
    if not 0 < low <= high:
        raise ValueError(f"synthetic spec '{name}': expected 0 < low <= high, got {value!r}")
    return (low, high)


@dataclass(frozen=True)
class SyntheticSpec:
    """Every knob of the synthetic dataset (field names follow ``params.yaml``).

    Attributes:
        seed: same seed, same dataset.
        num_train: training videos.
        num_test: test videos.
        num_classes: action classes: `CLASS_LIBRARY[class_offset : class_offset + num_classes]`.
        class_offset: index in `CLASS_LIBRARY` of the first class (0 = the default dataset's;
            a held-out dataset takes classes the defaults were never tuned on).
        width: frame width (px, even).
        height: frame height (px, even).
        fps: frame rate of the rendered videos.
        duration_s: video length range (s); a video whose instances need more room (within
            max_coverage and min_gap_s) is lengthened beyond it, so instance lengths and
            counts follow their laws exactly.
        instance_duration_s: action instance length range (s).
        duration_law: how instance lengths are drawn inside that range: "thumos14" (the
            log-normal of THUMOS'14's durations, `THUMOS14_LOG_SECONDS`, truncated to the range)
            or "loguniform".
        instances_per_video: instances per video (inclusive range).
        two_class_share: share of videos holding instances of two classes.
        crf: H.264 constant rate factor (18 keeps the sensor noise and makes ~10x larger
            files than 23).
        preset: x264 speed preset.
        distractors: soft moving blobs per video (inclusive range, may start at 0).
        noise_std: sensor noise std (intensity in [0, 1]).
        min_gap_s: least background between two instances and before/after the first/last.
        max_coverage: largest share of a video's time covered by actions.
    """

    seed: int = 0
    num_train: int = 40
    num_test: int = 20
    num_classes: int = 4
    class_offset: int = 0
    width: int = 128
    height: int = 128
    fps: float = 30.0
    duration_s: tuple[float, float] = (14.0, 22.0)
    instance_duration_s: tuple[float, float] = (0.6, 8.0)
    instances_per_video: tuple[int, int] = (2, 4)
    two_class_share: float = 0.3
    crf: int = 23
    preset: str = "veryfast"
    distractors: tuple[int, int] = (1, 3)
    noise_std: float = 0.007
    min_gap_s: float = 1.0
    max_coverage: float = 0.45
    duration_law: str = "thumos14"

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "duration_s", _pair(self.duration_s, "duration_s", cast=float))
        set_(self, "instance_duration_s", _pair(self.instance_duration_s, "instance_duration_s", cast=float))
        set_(self, "instances_per_video", _pair(self.instances_per_video, "instances_per_video", cast=int))
        low, high = self.distractors
        if not 0 <= int(low) <= int(high):
            raise ValueError(f"synthetic spec 'distractors': expected 0 <= low <= high, got {self.distractors!r}")
        set_(self, "distractors", (int(low), int(high)))
        if not 1 <= self.num_classes <= len(CLASS_LIBRARY):
            raise ValueError(f"synthetic spec 'num_classes': expected 1..{len(CLASS_LIBRARY)}, got {self.num_classes}")
        if not 0 <= self.class_offset <= len(CLASS_LIBRARY) - self.num_classes:
            raise ValueError(
                f"synthetic spec 'class_offset': expected 0..{len(CLASS_LIBRARY) - self.num_classes} "
                f"({self.num_classes} classes of the {len(CLASS_LIBRARY)} in CLASS_LIBRARY), got {self.class_offset}"
            )
        if self.num_train < 1 or self.num_test < 1:
            raise ValueError(
                f"synthetic spec 'num_train'/'num_test': expected >= 1, got {self.num_train}/{self.num_test}"
            )
        for name in ("width", "height"):
            value = getattr(self, name)
            if value < 32 or value % 2:
                raise ValueError(f"synthetic spec '{name}': expected an even number >= 32 (yuv420p), got {value}")
        if not 1 <= self.fps <= 120:
            raise ValueError(f"synthetic spec 'fps': expected 1..120, got {self.fps}")
        if not 0 <= self.two_class_share <= 1:
            raise ValueError(f"synthetic spec 'two_class_share': expected 0..1, got {self.two_class_share}")
        if not 0 < self.max_coverage < 1:
            raise ValueError(f"synthetic spec 'max_coverage': expected 0..1 (exclusive), got {self.max_coverage}")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"synthetic spec 'crf': expected 0..51, got {self.crf}")
        if self.noise_std < 0 or self.min_gap_s < 0:
            raise ValueError("synthetic spec 'noise_std' and 'min_gap_s' must be >= 0")
        if self.duration_law not in DURATION_LAWS:
            raise ValueError(f"synthetic spec 'duration_law': expected one of {DURATION_LAWS}, got {self.duration_law!r}")
        if self.duration_law == "thumos14":  # the redraw loop needs the range to hold real mass
            law = NormalDist(*THUMOS14_LOG_SECONDS)
            low, high = np.log(self.instance_duration_s)
            if law.cdf(high) - law.cdf(low) < 1e-3:
                raise ValueError(
                    f"synthetic spec 'instance_duration_s' {self.instance_duration_s}: under duration_law "
                    "'thumos14' fewer than 0.1 % of lengths fall in this range; use 'loguniform'"
                )

    @property
    def classes(self) -> tuple[ActionClass, ...]:
        """The classes of this dataset."""
        return CLASS_LIBRARY[self.class_offset : self.class_offset + self.num_classes]


@dataclass(frozen=True)
class SyntheticInstance:
    """One planned action instance (frames at the video's fps, end exclusive).

    Attributes:
        label: class name.
        start_frame: first frame of the action.
        end_frame: one past its last frame.
        peak: relative position in (0, 1) of the most salient moment.
        cx: centre of the motion, x (px).
        cy: centre of the motion, y (px).
        radius: object radius at the peak (px).
        amplitude: motion amplitude at the peak (px).
        cycles_per_s: motion frequency at the peak.
        rgb: object colour, three values in [0, 1].
        angle: orientation (rad).
        direction: +1 or -1 (sense of rotation / travel).
    """

    label: str
    start_frame: int
    end_frame: int
    peak: float
    cx: float
    cy: float
    radius: float
    amplitude: float
    cycles_per_s: float
    rgb: tuple[float, float, float]
    angle: float
    direction: int


@dataclass(frozen=True)
class SyntheticVideo:
    """One planned video."""

    video_id: str
    subset: str
    index: int
    num_frames: int
    instances: tuple[SyntheticInstance, ...]


def _video_rng(spec: SyntheticSpec, subset: str, index: int, component: int) -> np.random.Generator:
    """The rng stream of one component of one video."""
    return np.random.default_rng([spec.seed, SUBSET_CODES[subset], index, component])


def plan_dataset(spec: SyntheticSpec) -> list[SyntheticVideo]:
    """Draw every video's length and action instances (no rendering).

    The primary class of video i of a subset is class i mod C in a seeded order, so every
    class appears in both subsets once a subset has C videos.

    Args:
        spec: the dataset spec.

    Returns:
        Train videos then test videos, ids ``synth_<subset>_<index:04d>``.
    """
    videos = []
    for subset, count in (("train", spec.num_train), ("test", spec.num_test)):
        order = np.random.default_rng([spec.seed, SUBSET_CODES[subset], 1 << 20]).permutation(spec.num_classes)
        for i in range(count):
            primary = int(order[i % spec.num_classes])
            videos.append(_plan_video(spec, subset, i, primary))
    return videos


def _plan_video(spec: SyntheticSpec, subset: str, index: int, primary: int) -> SyntheticVideo:
    """Plan one video: its length, instance durations, placement, classes and looks."""
    rng = _video_rng(spec, subset, index, _PLAN)
    drawn_frames = int(round(rng.uniform(*spec.duration_s) * spec.fps))
    classes = [primary]
    if spec.num_classes > 1 and rng.random() < spec.two_class_share:
        others = [c for c in range(spec.num_classes) if c != primary]
        classes.append(int(rng.choice(others)))
    lengths = _instance_lengths(spec, rng)
    num_frames = max(drawn_frames, _frames_needed(spec, lengths))
    starts = _place(spec, rng, num_frames, lengths)
    labels = [classes[k % len(classes)] for k in range(len(lengths))]
    rng.shuffle(labels)
    instances = tuple(
        _plan_instance(spec, rng, spec.classes[c], start, start + length)
        for c, start, length in zip(labels, starts, lengths)
    )
    return SyntheticVideo(f"synth_{subset}_{index:04d}", subset, index, num_frames, instances)


def _instance_lengths(spec: SyntheticSpec, rng: np.random.Generator) -> list[int]:
    """Instance count (uniform in range) and lengths (frames, by `spec.duration_law`).

    Nothing is dropped or shortened afterwards: the video is lengthened instead (see
    `_frames_needed`), so the realised lengths follow the law exactly. (Dropping the
    instances that did not fit removed long ones more often: the log-uniform law's median
    is 2.2 s, the realised one was 1.6 s.)
    """
    count = int(rng.integers(spec.instances_per_video[0], spec.instances_per_video[1] + 1))
    low, high = np.log(spec.instance_duration_s)
    if spec.duration_law == "loguniform":
        log_seconds = rng.uniform(low, high, size=count)
    else:  # thumos14: log-normal truncated to the range by redrawing what falls outside
        mean, std = THUMOS14_LOG_SECONDS
        log_seconds = rng.normal(mean, std, size=count)
        while (outside := (log_seconds < low) | (log_seconds > high)).any():
            log_seconds[outside] = rng.normal(mean, std, size=int(outside.sum()))
    return [max(1, int(round(s * spec.fps))) for s in np.exp(log_seconds)]


def _frames_needed(spec: SyntheticSpec, lengths: list[int]) -> int:
    """Fewest frames of a video that holds these instances within max_coverage and the gaps."""
    gap = int(math.ceil(spec.min_gap_s * spec.fps))
    by_coverage = int(math.ceil(sum(lengths) / spec.max_coverage))
    return max(by_coverage, sum(lengths) + gap * (len(lengths) + 1))


def _place(spec: SyntheticSpec, rng: np.random.Generator, num_frames: int, lengths: list[int]) -> list[int]:
    """Start frames of non-overlapping instances, in order, with at least min_gap between."""
    gap = int(math.ceil(spec.min_gap_s * spec.fps))
    free = num_frames - sum(lengths) - gap * (len(lengths) + 1)
    cuts = np.sort(rng.integers(0, free + 1, size=len(lengths)))
    starts, position = [], gap
    previous_cut = 0
    for length, cut in zip(lengths, cuts):
        position += int(cut - previous_cut)
        starts.append(position)
        position += length + gap
        previous_cut = cut
    return starts


def _plan_instance(
    spec: SyntheticSpec, rng: np.random.Generator, cls: ActionClass, start: int, end: int
) -> SyntheticInstance:
    """Draw the looks and motion of one instance (strong intra-class variation)."""
    side = min(spec.width, spec.height)
    radius = side * rng.uniform(0.07, 0.12)
    amplitude = side * rng.uniform(0.12, 0.2)
    margin = 1.2 * radius + amplitude
    hue = (cls.hue + rng.normal(0.0, 0.08)) % 1.0
    rgb = colorsys.hsv_to_rgb(hue, rng.uniform(0.45, 1.0), rng.uniform(0.75, 1.0))
    return SyntheticInstance(
        label=cls.name,
        start_frame=start,
        end_frame=end,
        peak=float(rng.uniform(0.35, 0.65)),
        cx=float(rng.uniform(margin, spec.width - margin)),
        cy=float(rng.uniform(margin, spec.height - margin)),
        radius=float(radius),
        amplitude=float(amplitude),
        cycles_per_s=float(rng.uniform(0.7, 1.4)),
        rgb=tuple(float(v) for v in rgb),
        angle=float(rng.uniform(0, 2 * np.pi)),
        direction=int(rng.choice([-1, 1])),
    )


def dataset_annotations(videos: list[SyntheticVideo], spec: SyntheticSpec) -> dict[str, Any]:
    """The project annotations of a planned dataset.

    Args:
        videos: `plan_dataset` output.
        spec: the spec it was planned with.

    Returns:
        ``{"database": {...}, "classes": [...]}``; segments are ``[start_frame / fps,
        end_frame / fps]`` and ``salient`` is the time of the peak frame, all rounded to µs.
    """
    database = {}
    for video in videos:
        annotations = []
        for inst in video.instances:
            peak_frame = _peak_frame(inst)
            annotations.append(
                {
                    "segment": [round(inst.start_frame / spec.fps, 6), round(inst.end_frame / spec.fps, 6)],
                    "label": inst.label,
                    "salient": round((peak_frame + 0.5) / spec.fps, 6),
                }
            )
        database[video.video_id] = {
            "subset": video.subset,
            "duration": round(video.num_frames / spec.fps, 6),
            "fps": float(spec.fps),
            "annotations": annotations,
        }
    return {"database": database, "classes": sorted(c.name for c in spec.classes)}


def _peak_frame(inst: SyntheticInstance) -> int:
    """Frame index (in the video) where the instance's envelope is largest."""
    length = inst.end_frame - inst.start_frame
    return inst.start_frame + min(length - 1, int(inst.peak * length))


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
        env[_peak_frame(inst) - inst.start_frame] = 1.0
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
    rng = _video_rng(spec, video.subset, video.index, _SCENE)
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


def _draw_instance(
    frames: np.ndarray, first: int, inst: SyntheticInstance, cls: ActionClass, track: _Track
) -> None:
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


def render_frames(
    video: SyntheticVideo, spec: SyntheticSpec, *, with_instances: bool = True
) -> Iterator[np.ndarray]:
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
    noise_rng = _video_rng(spec, video.subset, video.index, _NOISE)
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
            stream = add_h264_stream(container, width=spec.width, height=spec.height, rate=rate,
                                     crf=spec.crf, preset=spec.preset)
            index = 0
            for chunk in render_frames(video, spec):
                for image in chunk:
                    frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                    frame.pts, frame.time_base = index, 1 / rate
                    container.mux(stream.encode(frame))
                    index += 1
            container.mux(stream.encode(None))


def render_videos(
    video_dir: Path,
    *,
    spec: SyntheticSpec,
    workers: int = 1,
    progress: Callable[[str], None] | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Render every video of a spec as ``video_dir/<vid>.mp4``.

    Videos do not depend on each other, so ``workers > 1`` renders them in that many
    processes with identical results.

    Args:
        video_dir: folder for the mp4 files (created when missing).
        spec: the dataset spec.
        workers: processes rendering videos at once (1 = in this process).
        progress: called with each video id once its file is written.

    Returns:
        (annotations, videos): the project annotations (see `dataset_annotations`) and
        ``{vid: path}``, each path ``video_dir/<vid>.mp4`` joined as given (relative when
        ``video_dir`` is).
    """
    if workers < 1:
        raise ValueError(f"render_videos: workers must be >= 1, got {workers}")
    plan = plan_dataset(spec)
    videos = {video.video_id: (Path(video_dir) / f"{video.video_id}.mp4").as_posix() for video in plan}
    if workers == 1:
        for video in plan:
            render_video(video, Path(videos[video.video_id]), spec=spec)
            if progress is not None:
                progress(video.video_id)
    else:
        context = multiprocessing.get_context("spawn")  # no fork of a possibly threaded parent
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            jobs = {pool.submit(render_video, v, Path(videos[v.video_id]), spec=spec): v.video_id for v in plan}
            for job in as_completed(jobs):
                job.result()
                if progress is not None:
                    progress(jobs[job])
    return dataset_annotations(plan, spec), videos


def render_dataset(
    out_dir: Path,
    *,
    seed: int,
    num_train: int,
    num_test: int,
    num_classes: int,
    width: int,
    height: int,
    fps: float,
    duration_range_s: tuple[float, float],
    instance_duration_s: tuple[float, float],
    instances_per_video: tuple[int, int],
    two_class_share: float,
    crf: int,
    workers: int = 1,
    progress: Callable[[str], None] | None = None,
    **options: Any,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Render the synthetic dataset from the prepare stage's params.

    The caller writes ``annotations.json`` and ``videos.json`` from the result.

    Args:
        out_dir: folder for the mp4 files.
        seed, num_train, num_test, num_classes, width, height, fps, instance_duration_s,
            instances_per_video, two_class_share, crf: the `SyntheticSpec` fields.
        duration_range_s: video length range (s), `SyntheticSpec.duration_s`.
        workers: processes rendering videos at once.
        progress: called with each video id once its file is written.
        **options: further `SyntheticSpec` fields (preset, distractors, noise_std,
            min_gap_s, max_coverage, duration_law, class_offset); their defaults otherwise.

    Returns:
        (annotations, videos) as `render_videos` returns them.

    Raises:
        ValueError: a bad spec value, naming the field.
    """
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise ValueError(f"render_dataset: unknown option(s) {unknown}; allowed: {list(_OPTIONS)}")
    spec = SyntheticSpec(
        seed=seed,
        num_train=num_train,
        num_test=num_test,
        num_classes=num_classes,
        width=width,
        height=height,
        fps=fps,
        duration_s=duration_range_s,
        instance_duration_s=instance_duration_s,
        instances_per_video=instances_per_video,
        two_class_share=two_class_share,
        crf=crf,
        **options,
    )
    return render_videos(out_dir, spec=spec, workers=workers, progress=progress)
