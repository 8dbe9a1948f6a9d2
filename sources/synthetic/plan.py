"""Planning a synthetic dataset: which videos, how long, which instances where (no pixels).

Every draw comes from `video_rng` streams keyed by (seed, subset, video index, component), so
the same spec gives bit-identical plans and annotations.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from sources.synthetic.spec import THUMOS14_LOG_SECONDS, ActionClass, SyntheticSpec

SUBSET_CODES = {"train": 0, "test": 1}
"""Subset part of the rng key of a video."""

PLAN, SCENE, NOISE = 0, 1, 2  # rng components of a video


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


def video_rng(spec: SyntheticSpec, subset: str, index: int, component: int) -> np.random.Generator:
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
    rng = video_rng(spec, subset, index, PLAN)
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
            peak = peak_frame(inst)
            annotations.append(
                {
                    "segment": [round(inst.start_frame / spec.fps, 6), round(inst.end_frame / spec.fps, 6)],
                    "label": inst.label,
                    "salient": round((peak + 0.5) / spec.fps, 6),
                }
            )
        database[video.video_id] = {
            "subset": video.subset,
            "duration": round(video.num_frames / spec.fps, 6),
            "fps": float(spec.fps),
            "annotations": annotations,
        }
    return {"database": database, "classes": sorted(c.name for c in spec.classes)}


def peak_frame(inst: SyntheticInstance) -> int:
    """Frame index (in the video) where the instance's envelope is largest."""
    length = inst.end_frame - inst.start_frame
    return inst.start_frame + min(length - 1, int(inst.peak * length))
