"""What a synthetic dataset is made of: the class library and the dataset spec (`SyntheticSpec`,
the `SyntheticSettings` that params.yaml sets plus the rendering constants)."""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np
from pydantic import Field, ValidationInfo, field_validator, model_validator

from core.config import Config

# Log-normal fit of the 6,318 THUMOS'14 instance durations of ../shared/datasets/thumos14/gt.json
# (mean and std of log seconds; median 3.0 s). Truncated to 0.6-8 s it has median 2.7 s and
# 15 % of instances no longer than two 0.64-s snippets (THUMOS'14 inside that range: 2.7 s, 17 %).
THUMOS14_LOG_SECONDS = (1.108, 0.835)


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


class SyntheticSettings(Config):
    """The knobs of the synthetic dataset that params.yaml's `dataset.synthetic` section sets, each
    under its own name (the prepare stage's params subclass this).

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
    """

    seed: int = 0
    num_train: int = Field(40, ge=1)
    num_test: int = Field(20, ge=1)
    num_classes: int = Field(4, ge=1, le=len(CLASS_LIBRARY))
    class_offset: int = Field(0, ge=0, le=len(CLASS_LIBRARY) - 1)
    width: int = Field(128, ge=32)
    height: int = Field(128, ge=32)
    fps: float = Field(30.0, ge=1, le=120)
    duration_s: tuple[float, float] = (14.0, 22.0)
    instance_duration_s: tuple[float, float] = (0.6, 8.0)
    duration_law: Literal["thumos14", "loguniform"] = "thumos14"
    instances_per_video: tuple[int, int] = (2, 4)
    two_class_share: float = Field(0.3, ge=0, le=1)
    crf: int = Field(23, ge=0, le=51)

    @field_validator("duration_s", "instance_duration_s", "instances_per_video")
    @classmethod
    def _range(cls, value: tuple, info: ValidationInfo) -> tuple:
        low, high = value
        if not 0 < low <= high:
            raise ValueError(f"{info.field_name} must be [low, high] with 0 < low <= high, got {list(value)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SyntheticSettings:
        if self.width % 2 or self.height % 2:
            raise ValueError(f"width and height must be even (H.264 4:2:0), got {self.width}x{self.height}")
        if self.class_offset + self.num_classes > len(CLASS_LIBRARY):
            raise ValueError(
                f"class_offset {self.class_offset} + num_classes {self.num_classes} exceeds the "
                f"{len(CLASS_LIBRARY)} classes of sources.synthetic.CLASS_LIBRARY"
            )
        if self.duration_law == "thumos14":  # the redraw loop needs the range to hold real mass
            law = NormalDist(*THUMOS14_LOG_SECONDS)
            low, high = np.log(self.instance_duration_s)
            if law.cdf(high) - law.cdf(low) < 1e-3:
                raise ValueError(
                    f"instance_duration_s {self.instance_duration_s}: under duration_law "
                    "'thumos14' fewer than 0.1 % of lengths fall in this range; use 'loguniform'"
                )
        return self


class SyntheticSpec(SyntheticSettings):
    """Every knob of the synthetic dataset: the settings, plus the rendering constants no params
    key sets.

    Attributes:
        preset: x264 speed preset.
        distractors: soft moving blobs per video (inclusive range, may start at 0).
        noise_std: sensor noise std (intensity in [0, 1]).
        min_gap_s: least background between two instances and before/after the first/last.
        max_coverage: largest share of a video's time covered by actions.
    """

    preset: str = "veryfast"
    distractors: tuple[int, int] = (1, 3)
    noise_std: float = Field(0.007, ge=0)
    min_gap_s: float = Field(1.0, ge=0)
    max_coverage: float = Field(0.45, gt=0, lt=1)

    @field_validator("distractors")
    @classmethod
    def _distractor_range(cls, value: tuple[int, int]) -> tuple[int, int]:
        if not 0 <= value[0] <= value[1]:
            raise ValueError(f"distractors must be [low, high] with 0 <= low <= high, got {list(value)}")
        return value

    @property
    def classes(self) -> tuple[ActionClass, ...]:
        """The classes of this dataset."""
        return CLASS_LIBRARY[self.class_offset : self.class_offset + self.num_classes]
