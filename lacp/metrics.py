"""Temporal action detection metrics under the ActivityNet protocol (METHOD.md section 6).

Inputs are the usual ActivityNet JSON documents:

- ground truth ``{"database": {vid: {"subset": str, "annotations": [{"segment": [s, e],
  "label": str}, ...]}, ...}, "classes": [...] (optional)}``; segment values may be numbers
  or numeric strings (the THUMOS'14 ``gt.json`` stores ``"18.6"``);
- results ``{"results": {vid: [{"label": str, "score": float, "segment": [s, e]}, ...]}}``.

Protocol, per class of the ground-truth subset:

1. predictions of the class are sorted by score, descending; equal scores keep their order
   in the results document (a stable sort);
2. each prediction is matched, independently at every tIoU threshold, to the ground truth
   of its own video with the highest tIoU that is still unmatched at that threshold,
   provided that tIoU reaches the threshold; otherwise it is a false positive (ground truths
   with equal tIoU are tried in document order);
3. AP is the interpolated (VOC 2011) area under the precision-recall curve: precision is
   made monotone from the right and summed over the recall steps;
4. mAP is the mean over all classes of the subset; a class without predictions scores 0.

tIoU is measured on continuous seconds: ``|A n B| / |A u B|`` with lengths ``end - start``
(no ``+ 1``); two zero-length segments have tIoU 0.

Matching runs for all thresholds at once: predictions are grouped by (class, video), the
candidate ground truths of each prediction are found with numpy, and one numpy step
handles the r-th prediction of every group together (groups are independent), so the
Python loop runs over ranks within a group, never over predictions or thresholds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "DEFAULT_TIOU",
    "DetectionResult",
    "GroundTruth",
    "Predictions",
    "classification_accuracy",
    "evaluate_detection",
    "format_comparison",
    "format_table",
    "load_ground_truth",
    "load_results",
    "parse_tiou",
    "segment_tiou",
    "summary_keys",
    "summary_table",
]

DEFAULT_TIOU = np.round(np.arange(1, 8) * 0.1, 10)  # 0.1, 0.2, ..., 0.7
# (low, high, step) of each reported average: the paper's THUMOS'14/GTEA/BEOID ranges, and
# ActivityNet's 0.5:0.05:0.95 (its ten thresholds; reported as "mAP@0.5-0.95")
AVERAGE_RANGES = ((0.1, 0.5, 0.1), (0.3, 0.7, 0.1), (0.1, 0.7, 0.1), (0.5, 0.95, 0.05))
_DECIMALS = 10  # thresholds are rounded so that np.arange(0.1, 0.75, 0.1) gives exact 0.3
_PAIR_CHUNK = 2_000_000  # prediction-ground truth pairs examined at once (bounds memory)

JsonSource = str | Path | Mapping


@dataclass(frozen=True)
class GroundTruth:
    """Ground-truth instances of one subset.

    Attributes:
        source: where it was read from (a path, or ``"<dict>"``), for messages.
        subset: the subset evaluated (e.g. ``"test"``).
        classes: labels with at least one instance in the subset, sorted; the classes of mAP.
        known_labels: every label of the document (all subsets and its ``classes`` list);
            predictions with a label outside this set are an error.
        video_ids: the subset's videos, in document order (with or without instances).
        video_index: (N,) int64 index into ``video_ids`` of each instance.
        class_index: (N,) int64 index into ``classes`` of each instance.
        segments: (N, 2) float64 start and end in seconds.
    """

    source: str
    subset: str
    classes: tuple[str, ...]
    known_labels: frozenset[str]
    video_ids: tuple[str, ...]
    video_index: np.ndarray  # (N,)
    class_index: np.ndarray  # (N,)
    segments: np.ndarray  # (N, 2)

    def label_sets(self) -> dict[str, frozenset[str]]:
        """Returns the set of labels present in each video of the subset (for accuracy)."""
        sets: dict[str, set[str]] = {vid: set() for vid in self.video_ids}
        for v, c in zip(self.video_index.tolist(), self.class_index.tolist()):
            sets[self.video_ids[v]].add(self.classes[c])
        return {vid: frozenset(labels) for vid, labels in sets.items()}


@dataclass(frozen=True)
class Predictions:
    """Detections read from a results document.

    Attributes:
        source: where they were read from, for messages.
        video_ids: distinct videos, in document order.
        labels: distinct labels, in order of first appearance.
        video_index: (N,) int64 index into ``video_ids``.
        label_index: (N,) int64 index into ``labels``.
        scores: (N,) float64 confidence.
        segments: (N, 2) float64 start and end in seconds.
    """

    source: str
    video_ids: tuple[str, ...]
    labels: tuple[str, ...]
    video_index: np.ndarray  # (N,)
    label_index: np.ndarray  # (N,)
    scores: np.ndarray  # (N,)
    segments: np.ndarray  # (N, 2)


@dataclass(frozen=True)
class DetectionResult:
    """Average precision per class and threshold.

    Attributes:
        tiou: (K,) tIoU thresholds.
        classes: (C,) class names (the ground-truth subset's classes, sorted).
        ap: (C, K) average precision, a fraction in [0, 1].
        n_ground_truth: (C,) ground-truth instances per class.
        n_predictions: (C,) predictions per class.
        extra_videos: videos of the results that are not in the subset; their predictions
            were counted as false positives.
    """

    tiou: np.ndarray  # (K,)
    classes: tuple[str, ...]
    ap: np.ndarray  # (C, K)
    n_ground_truth: np.ndarray  # (C,)
    n_predictions: np.ndarray  # (C,)
    extra_videos: tuple[str, ...]

    @property
    def map(self) -> np.ndarray:
        """(K,) mean AP over classes at each threshold, a fraction in [0, 1]."""
        return self.ap.mean(axis=0)


def _read_json(source: JsonSource, *, what: str) -> tuple[Mapping, str]:
    """Returns (document, name) from a path or an already loaded mapping."""
    if isinstance(source, Mapping):
        return source, f"<{what} dict>"
    path = Path(source)
    try:
        with path.open(encoding="utf-8") as handle:
            return json.load(handle), str(path)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error}); expected an ActivityNet {what} file") from error


def _parse_segment(raw: object, *, where: str) -> tuple[float, float]:
    """Converts ``[start, end]`` (numbers or numeric strings) to floats, checking it."""
    try:
        start, end = (float(value) for value in raw)  # type: ignore[union-attr]
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: segment must be [start, end] in seconds, got {raw!r}") from error
    if not (math.isfinite(start) and math.isfinite(end)) or end < start:
        raise ValueError(f"{where}: segment must be finite with start <= end, got {raw!r}")
    return start, end


def load_ground_truth(
    source: JsonSource, *, subset: str = "test", videos: Collection[str] | None = None
) -> GroundTruth:
    """Reads the instances of one subset of an ActivityNet ground-truth document.

    Args:
        source: path to the JSON file, or the parsed document.
        subset: value of each video's ``"subset"`` key to keep.
        videos: keep only these videos of the subset (e.g. the validation videos held out
            of the ``"train"`` subset); None = the whole subset.

    Returns:
        The subset's ground truth; labels seen only in other subsets or videos (or in the
        optional top-level ``"classes"`` list) are known labels but not evaluated classes.

    Raises:
        ValueError: malformed document (the message names the file, video and key), a
            subset without videos, or requested videos that are not in the subset.
    """
    wanted = None if videos is None else set(videos)
    document, name = _read_json(source, what="ground truth")
    if wanted is not None and not wanted:
        raise ValueError(f"{name}: no videos requested from subset {subset!r}")
    database = document.get("database")
    if not isinstance(database, Mapping):
        raise ValueError(f"{name}: expected a top-level 'database' object mapping video ids to entries")
    known = set(document.get("classes", ()))
    video_ids: list[str] = []
    rows: list[tuple[int, str, float, float]] = []
    subsets_seen: set[str] = set()
    for vid, entry in database.items():
        if not isinstance(entry, Mapping) or "subset" not in entry or "annotations" not in entry:
            raise ValueError(f"{name}: video {vid!r} needs the keys 'subset' and 'annotations'")
        subsets_seen.add(str(entry["subset"]))
        in_subset = entry["subset"] == subset and (wanted is None or vid in wanted)
        if in_subset:
            video_ids.append(vid)
        for number, annotation in enumerate(entry["annotations"]):
            where = f"{name}: video {vid!r} annotation {number}"
            if not isinstance(annotation, Mapping) or "label" not in annotation or "segment" not in annotation:
                raise ValueError(f"{where}: expected keys 'label' and 'segment'")
            label = str(annotation["label"])
            known.add(label)
            if in_subset:
                rows.append((len(video_ids) - 1, label, *_parse_segment(annotation["segment"], where=where)))
    if wanted is not None and len(video_ids) < len(wanted):
        strays = sorted(wanted - set(video_ids))
        raise ValueError(
            f"{name}: {len(strays)} requested video(s) are not {subset!r} videos: {', '.join(strays[:20])}"
        )
    if not video_ids:
        raise ValueError(f"{name}: no video has subset {subset!r}; subsets present: {sorted(subsets_seen)}")
    classes = tuple(sorted({label for _, label, _, _ in rows}))
    lookup = {label: index for index, label in enumerate(classes)}
    return GroundTruth(
        source=name,
        subset=subset,
        classes=classes,
        known_labels=frozenset(known),
        video_ids=tuple(video_ids),
        video_index=np.array([row[0] for row in rows], dtype=np.int64),
        class_index=np.array([lookup[row[1]] for row in rows], dtype=np.int64),
        segments=np.array([row[2:] for row in rows], dtype=np.float64).reshape(-1, 2),
    )


def _check_entries(entries: Sequence, *, where: str) -> None:
    """Finds the first malformed detection of a video and raises a ValueError naming it."""
    for number, entry in enumerate(entries):
        here = f"{where} detection {number}"
        if not isinstance(entry, Mapping) or not {"label", "score", "segment"} <= entry.keys():
            raise ValueError(f"{here}: expected keys 'label', 'score' and 'segment', got {entry!r}")
        try:
            score = float(entry["score"])
        except (TypeError, ValueError) as error:
            raise ValueError(f"{here}: score must be a number, got {entry['score']!r}") from error
        if not math.isfinite(score):
            raise ValueError(f"{here}: score must be finite, got {entry['score']!r}")
        _parse_segment(entry["segment"], where=here)


def load_results(source: JsonSource) -> Predictions:
    """Reads an ActivityNet results document.

    Args:
        source: path to the JSON file, or the parsed document.

    Returns:
        The detections as flat arrays, in document order.

    Raises:
        ValueError: malformed document; the message names the file, video and detection.
    """
    document, name = _read_json(source, what="results")
    results = document.get("results")
    if not isinstance(results, Mapping):
        raise ValueError(f"{name}: expected a top-level 'results' object mapping video ids to detection lists")
    video_ids = tuple(results)
    labels: list[str] = []
    scores: list[object] = []
    segments: list[object] = []
    counts: list[int] = []
    for vid, entries in results.items():
        where = f"{name}: video {vid!r}"
        if not isinstance(entries, Sequence):
            raise ValueError(f"{where}: expected a list of detections, got {type(entries).__name__}")
        try:
            labels.extend(str(entry["label"]) for entry in entries)
            scores.extend(entry["score"] for entry in entries)
            segments.extend(entry["segment"] for entry in entries)
        except (KeyError, TypeError):
            _check_entries(entries, where=where)
            raise
        counts.append(len(entries))
    try:
        score_array = np.asarray(scores, dtype=np.float64).reshape(-1)
        segment_array = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
        valid = (
            score_array.size == len(labels)
            and segment_array.shape[0] == len(labels)
            and np.isfinite(score_array).all()
            and np.isfinite(segment_array).all()
            and (segment_array[:, 1] >= segment_array[:, 0]).all()
        )
    except (TypeError, ValueError):
        valid = False
    if not valid:
        for vid, entries in results.items():
            _check_entries(entries, where=f"{name}: video {vid!r}")
        raise ValueError(f"{name}: detection scores and segments could not be read as numbers")
    lookup: dict[str, int] = {}
    label_index = np.fromiter(
        (lookup.setdefault(label, len(lookup)) for label in labels), dtype=np.int64, count=len(labels)
    )
    return Predictions(
        source=name,
        video_ids=video_ids,
        labels=tuple(lookup),
        video_index=np.repeat(np.arange(len(video_ids), dtype=np.int64), counts),
        label_index=label_index,
        scores=score_array,
        segments=segment_array,
    )


def segment_tiou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Temporal IoU of segments, element-wise with broadcasting.

    Args:
        a: (..., 2) start, end in seconds.
        b: (..., 2) start, end in seconds.

    Returns:
        (...) tIoU in [0, 1]; 0 where the union is empty.
    """
    inter = np.clip(np.minimum(a[..., 1], b[..., 1]) - np.maximum(a[..., 0], b[..., 0]), 0.0, None)
    union = (a[..., 1] - a[..., 0]) + (b[..., 1] - b[..., 0]) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _check_tiou(tiou: Iterable[float] | np.ndarray) -> np.ndarray:
    """Returns the thresholds as a rounded (K,) float64 array, each in (0, 1]."""
    values = np.round(np.asarray(list(np.ravel(tiou)), dtype=np.float64), _DECIMALS)
    if values.size == 0 or not np.all((values > 0) & (values <= 1)):
        raise ValueError(f"tIoU thresholds must be non-empty and in (0, 1], got {values.tolist()}")
    return values


def _candidate_pairs(
    pred_segments: np.ndarray, gt_segments: np.ndarray, gt_lo: np.ndarray, gt_count: np.ndarray, *, min_tiou: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lists (prediction, ground truth, tIoU) pairs of the same group with tIoU >= min_tiou.

    Args:
        pred_segments: (P, 2) predictions.
        gt_segments: (G, 2) ground truths, grouped so that prediction i's candidates are
            ``gt_lo[i] .. gt_lo[i] + gt_count[i] - 1``.
        gt_lo: (P,) first ground truth of each prediction's group.
        gt_count: (P,) ground truths in that group.
        min_tiou: smallest threshold; pairs below it can never match.

    Returns:
        pred (M,), gt (M,), tiou (M,), ordered by prediction.
    """
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    ends = np.cumsum(gt_count)
    start = 0
    while start < len(gt_count):
        base = ends[start - 1] if start else 0
        stop = max(start + 1, int(np.searchsorted(ends, base + _PAIR_CHUNK, side="right")))
        counts = gt_count[start:stop]
        pred = np.repeat(np.arange(start, stop), counts)  # (M,)
        offset = np.arange(pred.size) - np.repeat(np.cumsum(counts) - counts, counts)
        gt = gt_lo[pred] + offset
        tiou = segment_tiou(pred_segments[pred], gt_segments[gt])
        keep = tiou >= min_tiou
        found.append((pred[keep], gt[keep], tiou[keep]))
        start = stop
    if not found:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    return tuple(np.concatenate(parts) for parts in zip(*found))  # type: ignore[return-value]


def _match(
    pred_group: np.ndarray,
    pred_segments: np.ndarray,
    gt_group: np.ndarray,
    gt_segments: np.ndarray,
    thresholds: np.ndarray,
) -> np.ndarray:
    """Greedy ActivityNet matching at every threshold.

    Args:
        pred_group: (P,) group id (class, video) of each prediction, already in match order
            (sorted by group, then by descending score).
        pred_segments: (P, 2) their segments.
        gt_group: (G,) group id of each ground truth, sorted ascending.
        gt_segments: (G, 2) their segments.
        thresholds: (K,) tIoU thresholds.

    Returns:
        (P, K) bool, True where the prediction is a true positive at that threshold.
    """
    n_pred, n_thr, n_gt = len(pred_group), len(thresholds), len(gt_group)
    true_positive = np.zeros((n_pred, n_thr), dtype=bool)
    gt_lo = np.searchsorted(gt_group, pred_group, side="left")
    gt_count = np.searchsorted(gt_group, pred_group, side="right") - gt_lo
    pred, gt, tiou = _candidate_pairs(pred_segments, gt_segments, gt_lo, gt_count, min_tiou=float(thresholds.min()))
    if pred.size == 0:
        return true_positive
    # Candidate ground truths of each prediction, best tIoU first (ties: document order).
    order = np.lexsort((gt, -tiou, pred))
    pred, gt, tiou = pred[order], gt[order], tiou[order]
    candidates, first, width = np.unique(pred, return_index=True, return_counts=True)  # (A,)
    column = np.arange(pred.size) - np.repeat(first, width)
    cand_gt = np.full((candidates.size, width.max()), n_gt, dtype=np.int64)  # pad: a locked dummy
    cand_tiou = np.full(cand_gt.shape, -1.0)
    row = np.repeat(np.arange(candidates.size), width)
    cand_gt[row, column] = gt
    cand_tiou[row, column] = tiou
    passes = cand_tiou[:, :, None] >= thresholds[None, None, :]  # (A, W, K)
    # Rank of each candidate prediction inside its group; groups are independent, so the
    # r-th predictions of all groups are matched together in one step.
    group = pred_group[candidates]
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    rank = np.arange(candidates.size) - np.repeat(starts, np.diff(np.r_[starts, candidates.size]))
    by_rank = np.argsort(rank, kind="stable")
    bounds = np.searchsorted(rank[by_rank], np.arange(rank.max() + 2))
    locked = np.zeros((n_gt + 1, n_thr), dtype=bool)  # (G + 1, K)
    locked[n_gt] = True
    hits = np.zeros((candidates.size, n_thr), dtype=bool)
    thr_index = np.arange(n_thr)
    for r in range(len(bounds) - 1):
        rows = by_rank[bounds[r] : bounds[r + 1]]  # one prediction per group
        gts = cand_gt[rows]  # (B, W)
        free = passes[rows] & ~locked[gts]  # (B, W, K)
        choice = free.argmax(axis=1)  # (B, K): first free candidate = highest tIoU
        hit = np.take_along_axis(free, choice[:, None, :], axis=1)[:, 0, :]  # (B, K)
        chosen = np.take_along_axis(gts, choice, axis=1)  # (B, K)
        hits[rows] = hit
        locked[chosen[hit], np.broadcast_to(thr_index, hit.shape)[hit]] = True
    true_positive[candidates] = hits
    return true_positive


def _interpolated_ap(true_positive: np.ndarray, n_positive: int) -> np.ndarray:
    """VOC 2011 interpolated AP of predictions already sorted by descending score.

    Args:
        true_positive: (P, K) bool.
        n_positive: ground-truth instances of the class (> 0).

    Returns:
        (K,) AP: sum over true positives of (1 / n_positive) * max precision at or after it.
    """
    if true_positive.shape[0] == 0:
        return np.zeros(true_positive.shape[1])
    cum_tp = np.cumsum(true_positive, axis=0)  # (P, K)
    precision = cum_tp / np.arange(1, true_positive.shape[0] + 1)[:, None]
    monotone = np.maximum.accumulate(precision[::-1], axis=0)[::-1]
    return (monotone * true_positive).sum(axis=0) / n_positive


def evaluate_detection(
    gt: GroundTruth,
    predictions: Predictions | JsonSource,
    *,
    tiou: Iterable[float] | np.ndarray = DEFAULT_TIOU,
) -> DetectionResult:
    """Computes per-class AP and mAP under the ActivityNet detection protocol.

    Args:
        gt: ground truth of the evaluated subset (``load_ground_truth``).
        predictions: detections (``load_results``), or a results path / document.
        tiou: (K,) thresholds in (0, 1], rounded to 10 decimals.

    Returns:
        AP for every class of ``gt`` at every threshold. Predictions of a label that is known
        to the ground truth but has no instance in the subset are ignored (no class to score).

    Raises:
        ValueError: a predicted label that the ground truth does not know (naming the label
            and a video where it occurs), or bad thresholds.
    """
    thresholds = _check_tiou(tiou)
    if not isinstance(predictions, Predictions):
        predictions = load_results(predictions)
    class_lookup = {label: index for index, label in enumerate(gt.classes)}
    label_class = np.full(len(predictions.labels), -1, dtype=np.int64)
    for index, label in enumerate(predictions.labels):
        if label not in gt.known_labels:
            video = predictions.video_ids[predictions.video_index[np.argmax(predictions.label_index == index)]]
            raise ValueError(
                f"{predictions.source}: video {video!r} has a detection labelled {label!r}, which is not a class"
                f" of the ground truth {gt.source} (classes: {', '.join(gt.classes)})"
            )
        label_class[index] = class_lookup.get(label, -1)
    n_videos, n_classes = len(gt.video_ids), len(gt.classes)
    video_lookup = {vid: index for index, vid in enumerate(gt.video_ids)}
    # Videos outside the subset share the id n_videos, which has no ground truth.
    pred_video = np.array([video_lookup.get(vid, n_videos) for vid in predictions.video_ids], dtype=np.int64)
    pred_class = label_class[predictions.label_index]
    kept = pred_class >= 0
    pred_class = pred_class[kept]
    pred_group = pred_class * (n_videos + 1) + pred_video[predictions.video_index[kept]]
    scores, segments = predictions.scores[kept], predictions.segments[kept]
    gt_group = gt.class_index * (n_videos + 1) + gt.video_index
    gt_order = np.argsort(gt_group, kind="stable")
    match_order = np.lexsort((-scores, pred_group))  # group, then score descending, stable
    true_positive = np.zeros((pred_group.size, thresholds.size), dtype=bool)
    true_positive[match_order] = _match(
        pred_group[match_order], segments[match_order], gt_group[gt_order], gt.segments[gt_order], thresholds
    )
    class_order = np.lexsort((-scores, pred_class))
    class_bounds = np.searchsorted(pred_class[class_order], np.arange(n_classes + 1))
    n_ground_truth = np.bincount(gt.class_index, minlength=n_classes)
    ap = np.zeros((n_classes, thresholds.size))
    for c in range(n_classes):
        ranked = class_order[class_bounds[c] : class_bounds[c + 1]]
        ap[c] = _interpolated_ap(true_positive[ranked], int(n_ground_truth[c]))
    extra = tuple(vid for vid, index in zip(predictions.video_ids, pred_video.tolist()) if index == n_videos)
    return DetectionResult(
        tiou=thresholds,
        classes=gt.classes,
        ap=ap,
        n_ground_truth=n_ground_truth,
        n_predictions=np.diff(class_bounds),
        extra_videos=extra,
    )


def _threshold_name(value: float) -> str:
    return f"{value:g}"


def _average_positions(tiou: np.ndarray) -> dict[str, list[int]]:
    """Positions in ``tiou`` of each standard range (`AVERAGE_RANGES`) whose thresholds are all present."""
    found: dict[str, list[int]] = {}
    for low, high, step in AVERAGE_RANGES:
        grid = np.round(low + step * np.arange(round((high - low) / step) + 1), _DECIMALS)
        positions = [np.flatnonzero(np.isclose(tiou, value)) for value in grid]
        if all(p.size for p in positions):
            found[f"{_threshold_name(low)}:{_threshold_name(high)}"] = [int(p[0]) for p in positions]
    return found


def _with_averages(values: np.ndarray, tiou: np.ndarray) -> list[float]:
    """(K,) values followed by their mean over each available standard range."""
    ranges = _average_positions(tiou).values()
    return [float(v) for v in values] + [float(np.mean(values[positions])) for positions in ranges]


def summary_table(result: DetectionResult, *, percent: bool = True) -> dict[str, float]:
    """Flat metrics for ``metrics.json``.

    Args:
        result: output of ``evaluate_detection``.
        percent: report in percent (as the paper does) instead of fractions.

    Returns:
        ``{"mAP@0.1": ..., ..., "mAP@0.1-0.5": ..., "mAP@0.3-0.7": ..., "mAP@0.1-0.7": ...}``
        (ActivityNet's thresholds 0.5, 0.55, ..., 0.95 give ``"mAP@0.5"`` ... ``"mAP@0.95"``
        and ``"mAP@0.5-0.95"``); an average is present only when every threshold of its
        range (`AVERAGE_RANGES`: 0.1, 0.2, ... or 0.5, 0.55, ...) was evaluated, and it
        averages exactly those. The averages' keys hold no ":" (DVC reads
        ``--sort-by file:key``), so ``dvc exp show --sort-by mAP@0.1-0.7`` works.
    """
    scale = 100.0 if percent else 1.0
    names = summary_keys(result.tiou)
    return {name: value * scale for name, value in zip(names, _with_averages(result.map, result.tiou))}


def summary_keys(tiou: Iterable[float] | np.ndarray) -> list[str]:
    """The keys `summary_table` gives for these thresholds, in its order.

    Args:
        tiou: (K,) thresholds, in the order evaluated.

    Returns:
        ``["mAP@<t>" for each threshold]`` followed by the key of each standard average
        (`AVERAGE_RANGES` order) whose thresholds are all present, e.g. ``"mAP@0.1-0.7"``.
    """
    tiou = np.round(np.asarray(list(tiou), dtype=np.float64).reshape(-1), _DECIMALS)
    names = [_threshold_name(t) for t in tiou] + [span.replace(":", "-") for span in _average_positions(tiou)]
    return [f"mAP@{name}" for name in names]


def format_table(result: DetectionResult, *, per_class: bool = False) -> str:
    """Plain-text table of mAP (in percent) at each threshold and the averages.

    Args:
        result: output of ``evaluate_detection``.
        per_class: add one AP row per class.

    Returns:
        The table, one row per line, columns separated by spaces.
    """
    rows = [("mAP (%)", _with_averages(result.map, result.tiou))]
    if per_class:
        rows += [(name, _with_averages(ap, result.tiou)) for name, ap in zip(result.classes, result.ap)]
    return _table(result.tiou, rows)


def format_comparison(results: Mapping[str, DetectionResult]) -> str:
    """`format_table`'s columns with one mAP row per named result (e.g. LACP and the self-trained
    detector on the same test set); every result must have the same thresholds."""
    first = next(iter(results.values()))
    if any(not np.array_equal(r.tiou, first.tiou) for r in results.values()):
        raise ValueError("format_comparison: the results were evaluated at different tIoU thresholds")
    return _table(first.tiou, [(name, _with_averages(r.map, r.tiou)) for name, r in results.items()])


def _table(tiou: np.ndarray, rows: list[tuple[str, list[float]]]) -> str:
    headers = [_threshold_name(t) for t in tiou] + [f"avg {span}" for span in _average_positions(tiou)]
    first = max(len("tIoU"), *(len(name) for name, _ in rows))
    widths = [max(len(header), 6) for header in headers]
    lines = ["tIoU".ljust(first) + "".join(f"  {h:>{w}}" for h, w in zip(headers, widths))]
    for name, values in rows:
        lines.append(name.ljust(first) + "".join(f"  {100 * v:>{w}.2f}" for v, w in zip(values, widths)))
    return "\n".join(lines)


def parse_tiou(text: str) -> np.ndarray:
    """Parses thresholds from ``"start:stop:step"`` (stop included), ``"0.3,0.5"`` or ``"0.5"``.

    Args:
        text: the specification.

    Returns:
        (K,) float64 thresholds, rounded to 10 decimals.

    Raises:
        ValueError: unparsable text, non-positive step, stop < start, or values outside (0, 1].
    """
    try:
        if ":" in text:
            start, stop, step = (float(part) for part in text.split(":"))
            if step <= 0 or stop < start:
                raise ValueError("need step > 0 and stop >= start")
            count = int(math.floor((stop - start) / step + 1e-9)) + 1
            values = start + step * np.arange(count)
        else:
            values = np.array([float(part) for part in text.split(",")])
    except ValueError as error:
        raise ValueError(f"tIoU {text!r}: expected 'start:stop:step', 'a,b,...' or one number ({error})") from error
    return _check_tiou(values)


def classification_accuracy(predicted: Mapping[str, Iterable[str]], truth: Mapping[str, Iterable[str]]) -> float:
    """Share of videos whose predicted label set equals the true label set.

    Args:
        predicted: video id -> predicted labels.
        truth: video id -> true labels (e.g. ``GroundTruth.label_sets()``); the videos counted.

    Returns:
        Accuracy in [0, 1].

    Raises:
        ValueError: a video of ``truth`` has no prediction, or ``truth`` is empty.
    """
    if not truth:
        raise ValueError("classification accuracy needs at least one video in the truth mapping")
    missing = [vid for vid in truth if vid not in predicted]
    if missing:
        raise ValueError(f"no predicted labels for {len(missing)} video(s), e.g. {missing[0]!r}")
    correct = sum(set(predicted[vid]) == set(labels) for vid, labels in truth.items())
    return correct / len(truth)
