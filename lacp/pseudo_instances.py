"""Instance-level pseudo ground truth from a trained LACP model: one instance per point.

Self-training (the `pseudo` and `selftrain` stages) trains a fully-supervised detector on
LACP's localisation of the training videos. Each point label becomes exactly one instance of
its class, the segment that contains it, taken from one of two sources of candidate
segments:

- `proposals`: LACP's own inference on the training video (`lacp.inference.score_video`, then
  `lacp.proposals.generate_proposals`: proposals after NMS), localised for the classes the
  video's points name (the video-level labels are known in point supervision, so the class
  threshold does not decide which classes are localised);
- `search`: the runs of the last optimal-sequence search's dense pseudo labels
  (`lacp.search_record`, the train stage's `pseudo_labels.h5`), a run [a, b] of snippets
  covering [a * u, (b + 1) * u) seconds, u = one snippet.

Per class, with the class's points sorted by time p_1 < ... < p_n (`instances_from_candidates`):
1. each point takes the highest-scoring candidate of its class whose segment contains it
   (start <= p <= end); a point that no candidate contains keeps the snippet it lies in
   (`fallback`, counted);
2. two consecutive points whose instances overlap (the same candidate, or two that overlap)
   are split at b = the middle of the overlap clipped to [p_i, p_(i+1)]: instance i ends at
   b, instance i+1 starts there; so instances of one class never overlap and each still
   contains its own point (on its boundary at worst);
3. points of one class at the same time (a duplicate click) give one instance (`merged`,
   counted): an instance of length zero is no instance.
Instances of different classes may overlap, as in THUMOS'14's ground truth.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "Candidate",
    "PseudoCounts",
    "PseudoGroundTruth",
    "PseudoInstance",
    "instances_from_candidates",
    "search_candidates",
]


@dataclass(frozen=True)
class Candidate:
    """A candidate segment of one class: start and end in seconds, and its score."""

    class_index: int
    start: float
    end: float
    score: float


@dataclass(frozen=True)
class PseudoInstance:
    """One pseudo ground-truth instance: its class, segment (seconds) and the point it came from."""

    class_index: int
    start: float
    end: float
    point: float


@dataclass
class PseudoCounts:
    """What became of the points (the stage's end line reports these).

    Attributes:
        points: points read.
        instances: instances made (points - merged).
        contained: points that a candidate of their class contains.
        fallback: points no candidate contains (each kept as its own snippet).
        split: overlaps of same-class instances resolved by a split.
        merged: duplicate points (same class, same time) that share one instance.
    """

    points: int = 0
    instances: int = 0
    contained: int = 0
    fallback: int = 0
    split: int = 0
    merged: int = 0

    def add(self, other: PseudoCounts) -> None:
        """Add another video's counts to these."""
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


def search_candidates(dense: np.ndarray, *, snippet_seconds: float) -> list[Candidate]:
    """The runs of a (T, C) 0/1 pseudo-label matrix as candidates (score 1: all equal).

    Args:
        dense: (T, C) dense pseudo labels of one video (1 = action of that class).
        snippet_seconds: seconds per snippet.

    Returns:
        One candidate per run of ones of each column: [a * u, (b + 1) * u) for run [a, b].
    """
    dense = np.asarray(dense).astype(bool)  # (T, C)
    found = []
    for c in range(dense.shape[1]):
        padded = np.concatenate([[0], dense[:, c].astype(np.int8), [0]])
        edges = np.flatnonzero(np.diff(padded))  # run starts and ends + 1, alternating
        for first, stop in zip(edges[::2].tolist(), edges[1::2].tolist()):
            found.append(Candidate(c, first * snippet_seconds, stop * snippet_seconds, 1.0))
    return found


def instances_from_candidates(
    points: Sequence[tuple[float, int]],
    candidates: Sequence[Candidate],
    *,
    snippet_seconds: float,
    duration: float,
) -> tuple[list[PseudoInstance], PseudoCounts]:
    """One instance per point of one video (steps 1-3 of the module docstring).

    Args:
        points: (time in seconds, class index) of each point of the video.
        candidates: the video's candidate segments (any classes, any order).
        snippet_seconds: seconds per snippet (the fallback instance is the point's snippet).
        duration: the video's length in seconds; instances are clipped to [0, duration].

    Returns:
        (instances by class, then time; the counts).
    """
    counts = PseudoCounts(points=len(points))
    instances: list[PseudoInstance] = []
    for cls in sorted({int(c) for _, c in points}):
        times = sorted({float(t) for t, c in points if int(c) == cls})
        counts.merged += sum(1 for _, c in points if int(c) == cls) - len(times)
        own = [k for k in candidates if k.class_index == cls]
        spans: list[list[float]] = []
        for t in times:
            containing = [k for k in own if k.start <= t <= k.end]
            if containing:
                best = max(containing, key=lambda k: k.score)
                spans.append([best.start, best.end])
                counts.contained += 1
            else:
                first = np.floor(t / snippet_seconds) * snippet_seconds
                spans.append([first, first + snippet_seconds])
                counts.fallback += 1
        for i in range(len(spans) - 1):  # consecutive instances of the class may not overlap
            if spans[i][1] > spans[i + 1][0]:
                boundary = min(max((spans[i][1] + spans[i + 1][0]) / 2, times[i]), times[i + 1])
                spans[i][1] = spans[i + 1][0] = boundary
                counts.split += 1
        for t, (start, end) in zip(times, spans):
            instances.append(PseudoInstance(cls, max(0.0, start), min(float(duration), end), t))
    counts.instances = len(instances)
    return instances, counts


@dataclass
class PseudoGroundTruth:
    """Pseudo instances of many videos and their summed counts (what the stage writes)."""

    instances: dict[str, list[PseudoInstance]] = field(default_factory=dict)
    counts: PseudoCounts = field(default_factory=PseudoCounts)

    def add(self, video_id: str, instances: list[PseudoInstance], counts: PseudoCounts) -> None:
        """Record one video's instances and counts."""
        self.instances[video_id] = instances
        self.counts.add(counts)

    def as_tuples(self) -> Mapping[str, list[tuple[int, float, float]]]:
        """video id -> (class index, start, end) of each instance (`lacp.pseudo_quality`'s form)."""
        return {vid: [(i.class_index, i.start, i.end) for i in found] for vid, found in self.instances.items()}
