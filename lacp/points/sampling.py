"""Point labels: one labelled frame per training instance, sampled under a chosen distribution.

`sample_points` turns an annotations dict (docs/ARCHITECTURE.md) into a `PointSet`: rows in the
LACP points format (frames at the source fps) plus a summary of what was dropped, skipped or
odd. Its neighbours: `lacp.points.instances` (the validated training instances),
`lacp.points.clicks` (SF-Net click assignment), `lacp.points.report` (statistics and histogram),
`lacp.points.formats` (file formats). Distributions (docs/METHOD.md, "Points"):

- `center`: the middle frame, `start + floor(L / 2 + 0.5)` with `L = stop_frame - start_frame`.
- `gaussian`: relative position `r = 0.5 + N(0, sigma^2)`, i.e. an offset of
  `N(0, (sigma * L)^2)` frames from the centre, truncated to the instance by RESAMPLING the
  draws that fall outside (an exact truncated normal, no mass piled up on the boundaries;
  `sigma <= 1` keeps the acceptance rate >= 38 %). Frame `start + floor(r * L + 0.5)`.
  Default `sigma = 0.035`: the released THUMOS'14 file `point_labels_gaussian.csv` has a
  relative-position std of 0.0347 over its 3003 points, so the default reproduces that spread
  in aggregate. Measured on that file, its jitter is in fact constant in frames (offset from
  the exact centre: mean -1.51 frames, std 1.06 frames, whatever the instance length; mean
  relative position 0.475), so its points are tighter than `sigma = 0.035` on long instances
  and looser on short ones; use `distribution="file"` to train on the released points.
- `uniform`: every frame `start_frame .. stop_frame` (inclusive) equally likely.
- `beta`: relative position `r ~ Beta(beta_a, beta_b)`, frame `start + floor(r * L + 0.5)`.
- `manual` with `manual_files`: SF-Net human clicks, one annotator file per video, drawn by
  the seed (`annotator="random"`) or fixed (`annotator=i`, 0-based index into `manual_files`),
  assigned to instances by `lacp.points.clicks` (instances without a click get no point; the
  THUMOS'14 release clicks one typo'd video id, which is counted and left out).
- `manual` without files (synthetic data): a human is emulated from each instance's
  `salient` time plus `N(0, manual_jitter_s^2)` seconds, clipped into the instance. Default
  jitter 0.3 s (`Sampling`); for scale, on THUMOS'14 the four annotators' clicks on one
  instance have a median standard deviation of 0.44 s (mean 0.88 s) over the 2591 instances
  all four clicked.
- `file`: the points of a points CSV in the LACP format (`file`), validated.

Robustness options apply after any distribution, in this order: `min_instance_frames`
(instances with fewer frames `L` are skipped), `drop_rate` (that share of the remaining points,
rounded, is removed; a larger rate removes a superset), `offset_std` (seconds of normal noise
added to every point time, clipped to the video `[0, duration]`, so points may leave their
instance).

Determinism: four independent random streams are spawned from `seed` (positions, annotator
choice, drops, offsets), so e.g. changing `drop_rate` leaves the surviving points unchanged.
Rows are ordered by video id, start frame, class index, stop frame.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import numpy as np
from pydantic import ConfigDict, Field, model_validator

from core.config import Config
from lacp.points.clicks import EXAMPLES, ManualStats, assign_clicks
from lacp.points.formats import Point, read_points_csv
from lacp.points.instances import InstanceError, Instances, finite, order_rows, train_instances

Distribution = Literal["center", "gaussian", "uniform", "beta", "manual", "file"]
DISTRIBUTIONS: tuple[str, ...] = get_args(Distribution)


class Sampling(Config):
    """How `sample_points` samples: every key of params.yaml's `points` section, under its own
    name (the points stage's params are this; the module docstring says what each does).

    Attributes:
        distribution: one of `DISTRIBUTIONS`.
        seed: seed of every random draw; the same seed gives identical points.
        sigma: `gaussian`: std of the relative position, 0 <= sigma <= 1 (default: the released
            THUMOS'14 points' relative-position std, 0.035 around the centre).
        beta_a: `beta`: first shape parameter, > 0.
        beta_b: `beta`: second shape parameter, > 0.
        manual_files: `manual`: SF-Net click files; empty emulates clicks from each instance's
            `salient` time.
        annotator: `manual` with files: "random" (one file per video, drawn by the seed) or a
            0-based index into `manual_files`.
        manual_jitter_s: `manual` without files: click jitter std in seconds, >= 0.
        file: `file`: the LACP points CSV to read.
        drop_rate: share of points removed, 0 <= drop_rate < 1.
        offset_std: std (seconds) of extra noise on every point, clipped to the video; >= 0.
        min_instance_frames: instances with fewer frames (stop - start) are skipped; >= 0.
            Instances shorter than one frame raise unless this skips them.
    """

    model_config = ConfigDict(allow_inf_nan=False)

    distribution: Distribution = "gaussian"
    seed: int = Field(0, ge=0)
    sigma: float = Field(0.035, ge=0, le=1)
    beta_a: float = Field(2.0, gt=0)
    beta_b: float = Field(5.0, gt=0)
    manual_files: tuple[str, ...] = ()
    annotator: Literal["random"] | Annotated[int, Field(ge=0)] = "random"
    manual_jitter_s: float = Field(0.3, ge=0)
    file: str = ""
    drop_rate: float = Field(0.0, ge=0, lt=1)
    offset_std: float = Field(0.0, ge=0)
    min_instance_frames: int = Field(1, ge=0)

    @model_validator(mode="after")
    def _complete(self) -> Sampling:
        if isinstance(self.annotator, int) and self.manual_files and self.annotator >= len(self.manual_files):
            raise ValueError(
                f"annotator {self.annotator} must be 'random' or an index in "
                f"0..{len(self.manual_files) - 1} ({len(self.manual_files)} manual_files given)"
            )
        if self.distribution == "file" and not self.file:
            raise ValueError("distribution 'file' needs file (a points CSV in the LACP format)")
        return self


@dataclass(frozen=True)
class PointSummary:
    """What `sample_points` did.

    Attributes:
        distribution: the distribution used.
        seed: the seed used.
        instances: training instances in the annotations (for "file": rows of the file).
        points: points produced.
        skipped_short: instances with fewer than `min_instance_frames` frames.
        unlabelled: instances left without a point by the distribution (manual: no click).
        dropped: points removed by `drop_rate`.
        outside: points outside their instance (manual clicks, offset noise).
        overlapping: training instances that overlap an earlier instance of the same class in
            the same video (each still gets its own point).
        examples: up to 5 named examples per issue ("skipped_short", "overlapping",
            "absent_class_clicks", "unknown_video_clicks", "unclicked_instances").
        manual: click statistics (distribution "manual" only).
    """

    distribution: str
    seed: int
    instances: int
    points: int
    skipped_short: int
    unlabelled: int
    dropped: int
    outside: int
    overlapping: int
    examples: dict[str, list[str]]
    manual: ManualStats | None = None

    def to_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready nested dicts."""
        return asdict(self)


@dataclass(frozen=True)
class PointSet:
    """Sampled point labels and the summary of how they were made.

    Attributes:
        points: rows ordered by video id, start frame, class index, stop frame.
        summary: counts of skipped, dropped, unlabelled and outside points.
    """

    points: tuple[Point, ...]
    summary: PointSummary

    def __len__(self) -> int:
        return len(self.points)

    def __iter__(self) -> Iterator[Point]:
        return iter(self.points)


def _overlapping(inst: Instances) -> np.ndarray:
    """Indices of instances that start before an earlier same-class instance (same video) ends."""
    out = []
    last_end: dict[tuple[str, int], float] = {}
    for i in np.lexsort((inst.start_s, inst.class_index, np.unique(inst.video_id, return_inverse=True)[1])):
        key = (str(inst.video_id[i]), int(inst.class_index[i]))
        if key in last_end and inst.start_s[i] < last_end[key]:
            out.append(i)
        last_end[key] = max(last_end.get(key, -math.inf), float(inst.end_s[i]))
    return np.array(sorted(out), dtype=np.int64)


def _relative_to_frame(inst: Instances, rel: np.ndarray) -> np.ndarray:
    """Frame at relative position `rel` in [0, 1] of each instance (rounded half up)."""
    length = inst.stop_frame - inst.start_frame  # (N,)
    return inst.start_frame + np.floor(rel * length + 0.5).astype(np.int64)


def _truncated_normal(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """`n` draws of 0.5 + N(0, sigma^2) restricted to [0, 1] by redrawing those outside."""
    rel = 0.5 + sigma * rng.standard_normal(n)
    bad = (rel < 0) | (rel > 1)
    while bad.any():
        rel[bad] = 0.5 + sigma * rng.standard_normal(int(bad.sum()))
        bad = (rel < 0) | (rel > 1)
    return rel


def _sample_frames(
    inst: Instances,
    rng: np.random.Generator,
    *,
    distribution: str,
    sigma: float,
    beta_a: float,
    beta_b: float,
    manual_jitter_s: float,
) -> np.ndarray:
    """One frame per instance under an annotation-based distribution. Returns (N,) int64."""
    n = len(inst)
    if distribution == "center":
        return _relative_to_frame(inst, np.full(n, 0.5))
    if distribution == "gaussian":
        return _relative_to_frame(inst, _truncated_normal(rng, n, sigma))
    if distribution == "uniform":
        return rng.integers(inst.start_frame, inst.stop_frame + 1) if n else np.zeros(0, np.int64)
    if distribution == "beta":
        return _relative_to_frame(inst, rng.beta(beta_a, beta_b, n))
    missing = np.flatnonzero(np.isnan(inst.salient))
    if missing.size:
        i = int(missing[0])
        raise InstanceError(
            str(inst.video_id[i]),
            f"instance [{inst.start_s[i]:g}, {inst.end_s[i]:g}] s has no "
            "'salient' time to emulate a click from; pass manual_files (SF-Net clicks) "
            "for real data",
            str(inst.class_name[i]),
        )
    t = np.clip(inst.salient + manual_jitter_s * rng.standard_normal(n), inst.start_s, inst.end_s)
    return np.clip(np.rint(t * inst.fps).astype(np.int64), inst.start_frame, inst.stop_frame)


def _file_rows(points_file: str | Path, annotations: Mapping[str, Any]) -> tuple[Instances, np.ndarray]:
    """The rows of a LACP points file as instances (frames as given) and their points."""
    points = read_points_csv(points_file, annotations)
    database = annotations["database"]
    fps = np.array([float(database[p.video_id]["fps"]) for p in points], dtype=np.float64)
    duration = np.array(
        [float(d) if finite(d := database[p.video_id].get("duration")) else math.nan for p in points], dtype=np.float64
    )
    start = np.array([p.start_frame for p in points], dtype=np.int64)
    stop = np.array([p.stop_frame for p in points], dtype=np.int64)
    inst = Instances(
        video_id=np.array([p.video_id for p in points], dtype=str),
        class_name=np.array([p.class_name for p in points], dtype=str),
        class_index=np.array([p.class_index for p in points], dtype=np.int64),
        start_s=start / fps,
        end_s=stop / fps,
        fps=fps,
        duration=duration,
        salient=np.full(len(points), math.nan),
        start_frame=start,
        stop_frame=stop,
    )
    return inst, np.array([p.point for p in points], dtype=np.int64)


def _add_offsets(inst: Instances, frames: np.ndarray, noise: np.ndarray, offset_std: float) -> np.ndarray:
    """Move each point by `offset_std * noise` seconds, clipped to its video. Returns (N,) int64."""
    no_duration = np.flatnonzero(np.isnan(inst.duration))
    if no_duration.size:
        raise InstanceError(
            str(inst.video_id[no_duration[0]]),
            "'duration' is needed to clip offset noise (offset_std > 0) to the video",
        )
    t = np.clip(frames / inst.fps + offset_std * noise, 0.0, inst.duration)
    last = np.maximum(np.ceil(inst.duration * inst.fps).astype(np.int64) - 1, 0)
    return np.clip(np.rint(t * inst.fps).astype(np.int64), 0, last)


def sample_points(annotations: Mapping[str, Any], sampling: Sampling | None = None) -> PointSet:
    """Sample one point per training instance (test instances get none).

    Args:
        annotations: the annotations dict (docs/ARCHITECTURE.md).
        sampling: the distribution and its options (`Sampling`; the points stage's params);
            None = the defaults.

    Returns:
        The points (ordered by video id, start frame, class index, stop frame) and a summary.

    Raises:
        InstanceError: an annotation that cannot carry a point.
        PointFileError: a malformed or inconsistent click / points file.
    """
    sampling = sampling if sampling is not None else Sampling()
    distribution, seed, min_instance_frames = sampling.distribution, sampling.seed, sampling.min_instance_frames
    pos_rng, annot_rng, drop_rng, offset_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4))
    gt = train_instances(annotations)
    examples: dict[str, list[str]] = {}
    manual: ManualStats | None = None
    if distribution == "file":
        inst, frames = _file_rows(sampling.file, annotations)
        labelled = np.ones(len(inst), bool)  # (N,)
    elif distribution == "manual" and sampling.manual_files:
        inst = gt
        frames, labelled, manual, click_examples = assign_clicks(
            inst, annotations, annot_rng, manual_files=sampling.manual_files, annotator=sampling.annotator
        )
        examples.update(click_examples)
        examples["unclicked_instances"] = [inst.name(i) for i in np.flatnonzero(~labelled)[:EXAMPLES]]
    else:
        inst = gt
        frames = _sample_frames(
            inst,
            pos_rng,
            distribution=distribution,
            sigma=sampling.sigma,
            beta_a=sampling.beta_a,
            beta_b=sampling.beta_b,
            manual_jitter_s=sampling.manual_jitter_s,
        )
        labelled = np.ones(len(inst), bool)
        if distribution == "manual":
            manual = ManualStats(
                source="salient",
                clicks=len(inst),
                assigned=len(inst),
                inside=len(inst),
                jitter_s=float(sampling.manual_jitter_s),
            )

    length = inst.stop_frame - inst.start_frame  # (N,)
    short = length < min_instance_frames
    sub_frame = np.flatnonzero(~short & (length < 1))
    if sub_frame.size:
        i = int(sub_frame[0])
        raise InstanceError(
            str(inst.video_id[i]),
            f"instance [{inst.start_s[i]:g}, {inst.end_s[i]:g}] s is shorter "
            f"than one frame at {inst.fps[i]:g} fps; set min_instance_frames >= 1 to skip such "
            "instances",
            str(inst.class_name[i]),
        )
    examples["skipped_short"] = [inst.name(i) for i in np.flatnonzero(short)[:EXAMPLES]]

    noise = offset_rng.standard_normal(len(inst))  # (N,) drawn for every row: stable streams
    if sampling.offset_std > 0:
        frames = _add_offsets(inst, frames, noise, sampling.offset_std)
    kept = np.flatnonzero(labelled & ~short)
    n_drop = int(round(sampling.drop_rate * len(kept)))
    dropped = np.sort(drop_rng.permutation(len(kept))[:n_drop])
    kept = np.delete(kept, dropped)

    rows = inst.take(kept)
    frames = frames[kept]
    order = order_rows(rows.video_id, rows.start_frame, rows.class_index, rows.stop_frame, frames)
    rows, frames = rows.take(order), frames[order]
    points = tuple(
        Point(
            str(rows.video_id[i]),
            str(rows.class_name[i]),
            int(rows.class_index[i]),
            int(rows.start_frame[i]),
            int(rows.stop_frame[i]),
            int(frames[i]),
            float(frames[i] / rows.fps[i]),
        )
        for i in range(len(rows))
    )
    overlap = _overlapping(gt)
    examples["overlapping"] = [gt.name(i) for i in overlap[:EXAMPLES]]
    summary = PointSummary(
        distribution=distribution,
        seed=int(seed),
        instances=len(inst),
        points=len(points),
        skipped_short=int(short.sum()),
        unlabelled=int((~labelled & ~short).sum()),
        dropped=n_drop,
        outside=int(((frames < rows.start_frame) | (frames > rows.stop_frame)).sum()),
        overlapping=len(overlap),
        examples=examples,
        manual=manual,
    )
    return PointSet(points=points, summary=summary)
