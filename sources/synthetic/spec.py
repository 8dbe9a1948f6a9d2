"""What a synthetic dataset is made of: the class library and the dataset spec (`SyntheticSpec`)."""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

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
