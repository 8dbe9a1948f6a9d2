"""Point labels: one labelled frame per training instance, sampled under a chosen distribution.

`sample_points` turns an annotations dict (docs/ARCHITECTURE.md) into a `PointSet`: rows in the
LACP points format (frames at the source fps) plus a summary of what was dropped, skipped or
odd. Distributions (METHOD.md section 9):

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
- `manual` with `manual_files`: SF-Net human clicks. One annotator file is used per video,
  drawn by the seed (`annotator="random"`) or fixed (`annotator=i`, 0-based index into
  `manual_files`). Each click goes to the instance of its class, in its video, that contains
  it, else to the nearest one (distance to the interval, in seconds); the click keeps its own
  frame, which may lie outside that instance. When several clicks reach one instance, the
  nearest (then the earliest) is kept. Instances without a click get no point. Clicks for
  videos missing from the annotations (the THUMOS'14 release has a typo'd id), for test
  videos, or for a class absent from the video are counted and left out. A class name that is
  not an annotation class at all is an error.
- `manual` without files (synthetic data): a human is emulated from each instance's
  `salient` time plus `N(0, manual_jitter_s^2)` seconds, clipped into the instance. Default
  jitter 0.5 s: on THUMOS'14 the four annotators' clicks on one instance have a median
  standard deviation of 0.44 s (mean 0.88 s) over the 2591 instances all four clicked.
- `file`: the points of a points CSV in the LACP format (`points_file`), validated.

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

import io
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from core.files import write_bytes_atomic
from lacp.point_formats import (
    Click,
    Point,
    PointFileError,
    PointLabelError,
    read_points_csv,
    read_sfnet_clicks,
)

DISTRIBUTIONS: tuple[str, ...] = ("center", "gaussian", "uniform", "beta", "manual", "file")


@dataclass(frozen=True)
class SamplingDefaults:
    """The defaults of `sample_points`, stated once; the points stage's params take theirs from here."""

    distribution: str = "gaussian"
    seed: int = 0
    sigma: float = 0.035  # the released THUMOS'14 points: relative position std 0.035 around the centre
    beta_a: float = 2.0
    beta_b: float = 5.0
    drop_rate: float = 0.0
    offset_std: float = 0.0
    min_instance_frames: int = 1
    annotator: str | int = "random"
    manual_jitter_s: float = 0.3


SAMPLING = SamplingDefaults()
_EXAMPLES = 5  # named examples kept per reported issue


class PointParamError(PointLabelError):
    """A sampling parameter outside its allowed values (the message names both)."""

    def __init__(self, name: str, value: Any, allowed: str):
        super().__init__(f"point parameter '{name}' must be {allowed}; got {value!r}")
        self.name = name


class AnnotationError(PointLabelError):
    """An annotation that cannot carry a point (names the video, class and what was expected)."""

    def __init__(self, video_id: str, reason: str, class_name: str | None = None):
        what = f"video '{video_id}'" + (f" class '{class_name}'" if class_name else "")
        super().__init__(f"annotations: {what}: {reason}")
        self.video_id = video_id
        self.class_name = class_name


@dataclass(frozen=True)
class ManualStats:
    """How human (or emulated) clicks mapped onto the ground truth.

    Attributes:
        source: "files" (SF-Net click files) or "salient" (emulated from `salient` times).
        files: the click files, in `manual_files` order.
        annotator: "random" or the fixed 0-based file index.
        videos_per_file: how many training videos used each file.
        clicks: clicks of the chosen files on training videos.
        assigned: clicks given to an instance of their class.
        inside: assigned clicks inside their instance.
        outside: assigned clicks outside their instance.
        inside_share: inside / assigned.
        outside_mean_s: mean distance of outside clicks to their instance (seconds).
        outside_max_s: largest such distance.
        duplicate_clicks: assigned clicks discarded because a nearer one took the instance.
        absent_class_clicks: clicks naming a class with no instance in that video.
        unknown_video_clicks: clicks (in the files in use) on videos not in the annotations.
        test_video_clicks: clicks (in the files in use) on test videos.
        unclicked_instances: training instances that received no click.
        jitter_s: emulation jitter (source "salient" only).
    """

    source: str
    files: list[str] = field(default_factory=list)
    annotator: str | int = "random"
    videos_per_file: list[int] = field(default_factory=list)
    clicks: int = 0
    assigned: int = 0
    inside: int = 0
    outside: int = 0
    inside_share: float = 1.0
    outside_mean_s: float = 0.0
    outside_max_s: float = 0.0
    duplicate_clicks: int = 0
    absent_class_clicks: int = 0
    unknown_video_clicks: int = 0
    test_video_clicks: int = 0
    unclicked_instances: int = 0
    jitter_s: float | None = None


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


@dataclass(frozen=True)
class _Instances:
    """Training instances as parallel arrays, ordered by video, start frame, class, stop frame."""

    video_id: np.ndarray  # (N,) str
    class_name: np.ndarray  # (N,) str
    class_index: np.ndarray  # (N,) int64
    start_s: np.ndarray  # (N,) float64
    end_s: np.ndarray  # (N,) float64
    fps: np.ndarray  # (N,) float64
    duration: np.ndarray  # (N,) float64, NaN when unknown
    salient: np.ndarray  # (N,) float64, NaN when absent
    start_frame: np.ndarray  # (N,) int64
    stop_frame: np.ndarray  # (N,) int64

    def __len__(self) -> int:
        return len(self.video_id)

    def take(self, idx: np.ndarray) -> _Instances:
        """The instances at `idx` (an index or boolean array)."""
        return _Instances(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def name(self, i: int) -> str:
        """A human-readable name of instance `i` for reports."""
        return f"{self.video_id[i]}/{self.class_name[i]} [{self.start_s[i]:g}, {self.end_s[i]:g}] s"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and math.isfinite(float(value))


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_params(
    *,
    distribution: str,
    seed: int,
    sigma: float,
    beta_a: float,
    beta_b: float,
    drop_rate: float,
    offset_std: float,
    min_instance_frames: int,
    manual_files: Sequence[str | Path] | None,
    annotator: str | int,
    manual_jitter_s: float,
    points_file: str | Path | None,
) -> None:
    """Raise `PointParamError` for the first parameter outside its allowed values."""
    if distribution not in DISTRIBUTIONS:
        raise PointParamError("distribution", distribution, f"one of {list(DISTRIBUTIONS)}")
    if not _is_int(seed) or seed < 0:
        raise PointParamError("seed", seed, "an integer >= 0")
    if not _finite(sigma) or not 0 <= sigma <= 1:
        raise PointParamError("sigma", sigma, "a number with 0 <= sigma <= 1 (std of the relative position)")
    for name, value in (("beta_a", beta_a), ("beta_b", beta_b)):
        if not _finite(value) or value <= 0:
            raise PointParamError(name, value, "a number > 0")
    if not _finite(drop_rate) or not 0 <= drop_rate < 1:
        raise PointParamError("drop_rate", drop_rate, "a number with 0 <= drop_rate < 1")
    if not _finite(offset_std) or offset_std < 0:
        raise PointParamError("offset_std", offset_std, "a number of seconds >= 0")
    if not _is_int(min_instance_frames) or min_instance_frames < 0:
        raise PointParamError("min_instance_frames", min_instance_frames, "an integer >= 0")
    if not _finite(manual_jitter_s) or manual_jitter_s < 0:
        raise PointParamError("manual_jitter_s", manual_jitter_s, "a number of seconds >= 0")
    n_files = len(manual_files or ())
    if annotator != "random" and not (_is_int(annotator) and annotator >= 0):
        raise PointParamError("annotator", annotator, "'random' or a 0-based index into manual_files")
    if _is_int(annotator) and n_files and annotator >= n_files:
        raise PointParamError("annotator", annotator, f"'random' or an index in 0..{n_files - 1} "
                              f"({n_files} manual_files given)")
    if distribution == "file" and points_file is None:
        raise PointParamError("points_file", points_file, "a points CSV path when distribution is 'file'")


def _train_instances(annotations: Mapping[str, Any]) -> _Instances:
    """Collect and validate every instance of the training videos.

    Frames are `rint(seconds * fps)` at the video's source fps (the convention of the released
    THUMOS'14 points file, except that it writes 1 for a segment starting at 0.0 s).

    Args:
        annotations: the annotations dict (`database`, `classes`).

    Returns:
        The instances, ordered by video id, start frame, class index, stop frame.

    Raises:
        AnnotationError: a missing key, an unknown subset or class, a bad fps or segment.
    """
    if "database" not in annotations or "classes" not in annotations:
        raise AnnotationError("*", "the annotations dict needs the keys 'database' and 'classes'")
    classes = list(annotations["classes"])
    if len(set(classes)) != len(classes):
        raise AnnotationError("*", f"'classes' must not repeat a name: {classes}")
    index_of = {name: i for i, name in enumerate(classes)}
    cols: dict[str, list[Any]] = {k: [] for k in ("video_id", "class_name", "class_index", "start_s", "end_s",
                                                  "fps", "duration", "salient")}
    for vid, entry in annotations["database"].items():
        subset = entry.get("subset")
        if subset not in ("train", "test"):
            raise AnnotationError(vid, f"subset must be 'train' or 'test', got {subset!r}")
        if subset != "train":
            continue
        fps = entry.get("fps")
        if not _finite(fps) or fps <= 0:
            raise AnnotationError(vid, f"'fps' (source frame rate) must be a number > 0, got {fps!r}")
        duration = entry.get("duration")
        duration = float(duration) if _finite(duration) else math.nan
        for ann in entry.get("annotations", []):
            label = ann.get("label")
            if label not in index_of:
                raise AnnotationError(vid, f"label not in 'classes' {classes}", label)
            start, end = _segment(vid, label, ann.get("segment"))
            salient = ann.get("salient")
            cols["video_id"].append(vid)
            cols["class_name"].append(label)
            cols["class_index"].append(index_of[label])
            cols["start_s"].append(start)
            cols["end_s"].append(end)
            cols["fps"].append(float(fps))
            cols["duration"].append(duration)
            cols["salient"].append(float(salient) if _finite(salient) else math.nan)
    arrays = {
        "video_id": np.array(cols["video_id"], dtype=str),
        "class_name": np.array(cols["class_name"], dtype=str),
        "class_index": np.array(cols["class_index"], dtype=np.int64),
        **{k: np.array(cols[k], dtype=np.float64) for k in ("start_s", "end_s", "fps", "duration", "salient")},
    }
    arrays["start_frame"] = np.rint(arrays["start_s"] * arrays["fps"]).astype(np.int64)
    arrays["stop_frame"] = np.rint(arrays["end_s"] * arrays["fps"]).astype(np.int64)
    inst = _Instances(**arrays)
    return inst.take(_order(inst.video_id, inst.start_frame, inst.class_index, inst.stop_frame))


def _segment(vid: str, label: str, segment: Any) -> tuple[float, float]:
    """A validated `(start, end)` in seconds: finite, `0 <= start < end`."""
    try:
        start, end = float(segment[0]), float(segment[1])
    except (TypeError, ValueError, IndexError):
        raise AnnotationError(vid, f"'segment' must be [start, end] in seconds, got {segment!r}", label) from None
    if not (math.isfinite(start) and math.isfinite(end) and 0 <= start < end):
        raise AnnotationError(vid, f"segment must satisfy 0 <= start < end, got [{start}, {end}]", label)
    return start, end


def _order(video_id: np.ndarray, *keys: np.ndarray) -> np.ndarray:
    """Indices sorting rows by video id, then by each of `keys` in turn."""
    _, video_rank = np.unique(video_id, return_inverse=True)
    return np.lexsort(tuple(reversed(keys)) + (video_rank,)) if len(video_id) else np.zeros(0, np.int64)


def _overlapping(inst: _Instances) -> np.ndarray:
    """Indices of instances that start before an earlier same-class instance (same video) ends."""
    out = []
    last_end: dict[tuple[str, int], float] = {}
    for i in np.lexsort((inst.start_s, inst.class_index, np.unique(inst.video_id, return_inverse=True)[1])):
        key = (str(inst.video_id[i]), int(inst.class_index[i]))
        if key in last_end and inst.start_s[i] < last_end[key]:
            out.append(i)
        last_end[key] = max(last_end.get(key, -math.inf), float(inst.end_s[i]))
    return np.array(sorted(out), dtype=np.int64)


def _relative_to_frame(inst: _Instances, rel: np.ndarray) -> np.ndarray:
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
    inst: _Instances,
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
        raise AnnotationError(str(inst.video_id[i]), f"instance [{inst.start_s[i]:g}, {inst.end_s[i]:g}] s has no "
                              "'salient' time to emulate a click from; pass manual_files (SF-Net clicks) "
                              "for real data", str(inst.class_name[i]))
    t = np.clip(inst.salient + manual_jitter_s * rng.standard_normal(n), inst.start_s, inst.end_s)
    return np.clip(np.rint(t * inst.fps).astype(np.int64), inst.start_frame, inst.stop_frame)


@dataclass
class _ClickTally:
    """Running counts while clicks are mapped onto instances."""

    clicks: int = 0
    absent_class: list[str] = field(default_factory=list)
    distances: list[float] = field(default_factory=list)
    duplicates: int = 0


def _manual_from_files(
    inst: _Instances,
    annotations: Mapping[str, Any],
    rng: np.random.Generator,
    *,
    manual_files: Sequence[str | Path],
    annotator: str | int,
) -> tuple[np.ndarray, np.ndarray, ManualStats, dict[str, list[str]]]:
    """Map one annotator's clicks per video onto the instances.

    Returns:
        frames (N,) int64 (meaningful where clicked), clicked (N,) bool, the click statistics,
        and named examples of absent-class / unknown-video clicks.
    """
    files = [Path(f) for f in manual_files]
    classes = set(annotations["classes"])
    database = annotations["database"]
    by_file: list[dict[str, list[Click]]] = []
    for path in files:
        grouped: dict[str, list[Click]] = {}
        for click in read_sfnet_clicks(path):
            if click.class_name not in classes:
                raise PointFileError(path, click.line, f"class '{click.class_name}' (video '{click.video_id}') "
                                     f"is not one of the annotation classes {sorted(classes)}")
            grouped.setdefault(click.video_id, []).append(click)
        by_file.append(grouped)
    videos = np.unique(inst.video_id)  # sorted training videos
    if annotator == "random":
        choice = rng.integers(len(files), size=len(videos))
    else:
        choice = np.full(len(videos), int(annotator))
    files_in_use = sorted(set(choice.tolist()))
    unknown = [f"{files[f].name}:{c.line} {v}" for f in files_in_use for v, cs in by_file[f].items()
               if v not in database for c in cs]
    test_clicks = sum(len(cs) for f in files_in_use for v, cs in by_file[f].items()
                      if v in database and database[v].get("subset") != "train")

    frames = np.zeros(len(inst), np.int64)
    best = np.full(len(inst), np.inf)  # (N,) distance of the kept click, inf = none yet
    best_time = np.full(len(inst), np.inf)
    tally = _ClickTally()
    for v, f in zip(videos, choice):
        rows = np.flatnonzero(inst.video_id == v)
        for click in by_file[f].get(str(v), []):
            tally.clicks += 1
            cand = rows[inst.class_name[rows] == click.class_name]
            if cand.size == 0:
                tally.absent_class.append(f"{files[f].name}:{click.line} {v}/{click.class_name}")
                continue
            dist = np.maximum(np.maximum(inst.start_s[cand] - click.seconds, click.seconds - inst.end_s[cand]), 0.0)
            j = int(cand[np.argmin(dist)])
            d = float(dist.min())
            tally.distances.append(d)
            if best[j] < np.inf:
                tally.duplicates += 1
            if (d, click.seconds) < (best[j], best_time[j]):
                best[j], best_time[j] = d, click.seconds
                frames[j] = int(np.rint(click.seconds * inst.fps[j]))
    clicked = np.isfinite(best)
    dist = np.array(tally.distances)
    outside = dist[dist > 0]
    stats = ManualStats(
        source="files",
        files=[str(p) for p in files],
        annotator=annotator if annotator == "random" else int(annotator),
        videos_per_file=np.bincount(choice, minlength=len(files)).tolist(),
        clicks=tally.clicks,
        assigned=len(dist),
        inside=int((dist == 0).sum()),
        outside=len(outside),
        inside_share=float((dist == 0).mean()) if len(dist) else 1.0,
        outside_mean_s=float(outside.mean()) if len(outside) else 0.0,
        outside_max_s=float(outside.max()) if len(outside) else 0.0,
        duplicate_clicks=tally.duplicates,
        absent_class_clicks=len(tally.absent_class),
        unknown_video_clicks=len(unknown),
        test_video_clicks=test_clicks,
        unclicked_instances=int((~clicked).sum()),
    )
    examples = {"absent_class_clicks": tally.absent_class[:_EXAMPLES], "unknown_video_clicks": unknown[:_EXAMPLES]}
    return frames, clicked, stats, examples


def _file_rows(points_file: str | Path, annotations: Mapping[str, Any]) -> tuple[_Instances, np.ndarray]:
    """The rows of a LACP points file as instances (frames as given) and their points."""
    points = read_points_csv(points_file, annotations)
    database = annotations["database"]
    fps = np.array([float(database[p.video_id]["fps"]) for p in points], dtype=np.float64)
    duration = np.array([float(d) if _finite(d := database[p.video_id].get("duration")) else math.nan
                         for p in points], dtype=np.float64)
    start = np.array([p.start_frame for p in points], dtype=np.int64)
    stop = np.array([p.stop_frame for p in points], dtype=np.int64)
    inst = _Instances(
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


def _add_offsets(inst: _Instances, frames: np.ndarray, noise: np.ndarray, offset_std: float) -> np.ndarray:
    """Move each point by `offset_std * noise` seconds, clipped to its video. Returns (N,) int64."""
    no_duration = np.flatnonzero(np.isnan(inst.duration))
    if no_duration.size:
        raise AnnotationError(str(inst.video_id[no_duration[0]]), "'duration' is needed to clip offset noise "
                              "(offset_std > 0) to the video")
    t = np.clip(frames / inst.fps + offset_std * noise, 0.0, inst.duration)
    last = np.maximum(np.ceil(inst.duration * inst.fps).astype(np.int64) - 1, 0)
    return np.clip(np.rint(t * inst.fps).astype(np.int64), 0, last)


def sample_points(
    annotations: Mapping[str, Any],
    *,
    distribution: str = SAMPLING.distribution,
    seed: int = SAMPLING.seed,
    sigma: float = SAMPLING.sigma,
    beta_a: float = SAMPLING.beta_a,
    beta_b: float = SAMPLING.beta_b,
    drop_rate: float = SAMPLING.drop_rate,
    offset_std: float = SAMPLING.offset_std,
    min_instance_frames: int = SAMPLING.min_instance_frames,
    manual_files: Sequence[str | Path] | None = None,
    annotator: str | int = SAMPLING.annotator,
    manual_jitter_s: float = SAMPLING.manual_jitter_s,
    points_file: str | Path | None = None,
) -> PointSet:
    """Sample one point per training instance (test instances get none).

    Args:
        annotations: the annotations dict (docs/ARCHITECTURE.md).
        distribution: one of `DISTRIBUTIONS` (see the module docstring).
        seed: seed of every random draw; the same seed gives identical points.
        sigma: `gaussian`: std of the relative position, 0 <= sigma <= 1.
        beta_a: `beta`: first shape parameter, > 0.
        beta_b: `beta`: second shape parameter, > 0.
        drop_rate: share of points removed, 0 <= drop_rate < 1.
        offset_std: std (seconds) of extra noise on every point, clipped to the video; >= 0.
        min_instance_frames: instances with fewer frames (stop - start) are skipped; >= 0.
            Instances shorter than one frame raise unless this skips them.
        manual_files: `manual`: SF-Net click files; None or empty emulates clicks from
            each instance's `salient` time.
        annotator: `manual` with files: "random" (one file per video, drawn by the seed) or
            a 0-based index into `manual_files`.
        manual_jitter_s: `manual` without files: click jitter std in seconds, >= 0.
        points_file: `file`: the LACP points CSV to read.

    Returns:
        The points (ordered by video id, start frame, class index, stop frame) and a summary.

    Raises:
        PointParamError: a parameter outside its allowed values.
        AnnotationError: an annotation that cannot carry a point.
        PointFileError: a malformed or inconsistent click / points file.
    """
    _check_params(distribution=distribution, seed=seed, sigma=sigma, beta_a=beta_a, beta_b=beta_b,
                  drop_rate=drop_rate, offset_std=offset_std, min_instance_frames=min_instance_frames,
                  manual_files=manual_files, annotator=annotator, manual_jitter_s=manual_jitter_s,
                  points_file=points_file)
    pos_rng, annot_rng, drop_rng, offset_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4))
    gt = _train_instances(annotations)
    examples: dict[str, list[str]] = {}
    manual: ManualStats | None = None
    if distribution == "file":
        inst, frames = _file_rows(points_file, annotations)
        labelled = np.ones(len(inst), bool)  # (N,)
    elif distribution == "manual" and manual_files:
        inst = gt
        frames, labelled, manual, click_examples = _manual_from_files(
            inst, annotations, annot_rng, manual_files=manual_files, annotator=annotator)
        examples.update(click_examples)
        examples["unclicked_instances"] = [inst.name(i) for i in np.flatnonzero(~labelled)[:_EXAMPLES]]
    else:
        inst = gt
        frames = _sample_frames(inst, pos_rng, distribution=distribution, sigma=sigma, beta_a=beta_a,
                                beta_b=beta_b, manual_jitter_s=manual_jitter_s)
        labelled = np.ones(len(inst), bool)
        if distribution == "manual":
            manual = ManualStats(source="salient", clicks=len(inst), assigned=len(inst), inside=len(inst),
                                 jitter_s=float(manual_jitter_s))

    length = inst.stop_frame - inst.start_frame  # (N,)
    short = length < min_instance_frames
    sub_frame = np.flatnonzero(~short & (length < 1))
    if sub_frame.size:
        i = int(sub_frame[0])
        raise AnnotationError(str(inst.video_id[i]), f"instance [{inst.start_s[i]:g}, {inst.end_s[i]:g}] s is shorter "
                              f"than one frame at {inst.fps[i]:g} fps; set min_instance_frames >= 1 to skip such "
                              "instances", str(inst.class_name[i]))
    examples["skipped_short"] = [inst.name(i) for i in np.flatnonzero(short)[:_EXAMPLES]]

    noise = offset_rng.standard_normal(len(inst))  # (N,) drawn for every row: stable streams
    if offset_std > 0:
        frames = _add_offsets(inst, frames, noise, offset_std)
    kept = np.flatnonzero(labelled & ~short)
    n_drop = int(round(drop_rate * len(kept)))
    dropped = np.sort(drop_rng.permutation(len(kept))[:n_drop])
    kept = np.delete(kept, dropped)

    rows = inst.take(kept)
    frames = frames[kept]
    order = _order(rows.video_id, rows.start_frame, rows.class_index, rows.stop_frame, frames)
    rows, frames = rows.take(order), frames[order]
    points = tuple(
        Point(str(rows.video_id[i]), str(rows.class_name[i]), int(rows.class_index[i]), int(rows.start_frame[i]),
              int(rows.stop_frame[i]), int(frames[i]), float(frames[i] / rows.fps[i]))
        for i in range(len(rows))
    )
    overlap = _overlapping(gt)
    examples["overlapping"] = [gt.name(i) for i in overlap[:_EXAMPLES]]
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


def relative_positions(points: Sequence[Point]) -> np.ndarray:
    """(point - start) / (stop - start) of each point; 0..1 inside the instance. Returns (N,)."""
    p = np.array([(x.point, x.start_frame, x.stop_frame) for x in points], dtype=np.float64).reshape(-1, 3)
    return (p[:, 0] - p[:, 1]) / (p[:, 2] - p[:, 1])


def point_stats(points: PointSet | Sequence[Point], annotations: Mapping[str, Any]) -> dict[str, Any]:
    """Statistics of a point set: relative position, share inside, coverage of the instances.

    Args:
        points: a `PointSet` (its summary adds dropped / skipped counts) or plain rows.
        annotations: the annotations dict the points label.

    Returns:
        JSON-ready dict: count, videos, train_instances, coverage, relative_position
        (mean, std, median, min, max; None when empty), inside_share, and from a `PointSet`
        distribution, dropped, skipped_short, unlabelled, overlapping.
    """
    rows = list(points)
    rel = relative_positions(rows)
    n_train = sum(len(e.get("annotations", [])) for e in annotations["database"].values() if e.get("subset") == "train")

    def stat(fn) -> float | None:
        return float(fn(rel)) if len(rel) else None

    stats: dict[str, Any] = {
        "count": len(rows),
        "videos": len({p.video_id for p in rows}),
        "train_instances": n_train,
        "coverage": len(rows) / n_train if n_train else None,
        "relative_position": {"mean": stat(np.mean), "std": stat(np.std), "median": stat(np.median),
                              "min": stat(np.min), "max": stat(np.max)},
        "inside_share": stat(lambda r: ((r >= 0) & (r <= 1)).mean()),
    }
    if isinstance(points, PointSet):
        s = points.summary
        stats.update(distribution=s.distribution, dropped=s.dropped, skipped_short=s.skipped_short,
                     unlabelled=s.unlabelled, overlapping=s.overlapping)
    return stats


def point_report(
    points: PointSet | Sequence[Point],
    annotations: Mapping[str, Any],
    png_path: str | Path,
    json_path: str | Path,
) -> dict[str, Any]:
    """Write the relative-position histogram (PNG) and the statistics (JSON), atomically.

    The histogram shows (point - start) / (stop - start) over [-0.5, 1.5]; points beyond are
    drawn in the edge bins and counted in the legend. The instance itself is shaded.

    Args:
        points: a `PointSet` or plain rows.
        annotations: the annotations dict the points label.
        png_path: histogram image to write.
        json_path: statistics to write (see `point_stats`).

    Returns:
        The statistics written to `json_path`.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    stats = point_stats(points, annotations)
    rel = relative_positions(list(points))
    lo, hi = -0.5, 1.5
    beyond = int(((rel < lo) | (rel > hi)).sum())
    fig = Figure(figsize=(6, 3.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.axvspan(0, 1, color="0.9", label="instance")
    ax.hist(np.clip(rel, lo, hi), bins=80, range=(lo, hi), color="tab:blue",
            label=f"{len(rel)} points" + (f" ({beyond} beyond the axis, in the edge bins)" if beyond else ""))
    if len(rel):
        ax.axvline(float(np.mean(rel)), color="tab:red", lw=1, label=f"mean {np.mean(rel):.3f}, std {np.std(rel):.3f}")
    title = stats.get("distribution", "points")
    ax.set_title(f"{title}: relative position in the instance")
    ax.set_xlabel("(point - start) / (stop - start)")
    ax.set_ylabel("points")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", metadata={"Software": None})
    write_bytes_atomic(png_path, png.getvalue())
    write_bytes_atomic(json_path, (json.dumps(stats, indent=2, sort_keys=True) + "\n").encode())
    return stats
