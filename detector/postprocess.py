"""From the heads' outputs of one video to scored segments (ActionFormer's inference).

1. Per level, the class probabilities sigmoid(logits) of the valid locations, flattened over
   (location, class); candidates above `score_threshold`, at most `pre_nms_topk` of them
   by probability (ties: the earlier location, then the lower class).
2. Each candidate decodes to [p - d_s s, p + d_e s] (location centre p, stride s, predicted
   distances d in stride units), clipped to the video's [0, T] snippets; segments not longer
   than `min_length` snippets are dropped.
3. Per class, Gaussian Soft-NMS (`soft_nms`) over all levels' candidates together.
4. With `voting_tiou` > 0, each kept segment takes the score-weighted mean boundaries of its
   class's candidates (their scores before Soft-NMS, negative ones weighing 0) whose tIoU with
   it is at least `voting_tiou` (itself among them); its score is unchanged.
5. The `max_segments` highest decayed scores over all classes are kept, by descending score.

Soft-NMS (Bodla et al., 2017, Gaussian): repeatedly select the remaining segment of highest
score (ties: the lower index) and multiply every other remaining score by
exp(-tIoU(selected, other)^2 / sigma); segments whose score falls below `min_score` are
dropped. tIoU uses lengths end - start. The selected scores never increase, so selecting at
most `max_segments` per class loses nothing that step 4 would keep.

`merge_detections` applies steps 3-5 once more to the union of several detection lists of one
video (the detector's and LACP's proposals, `InferenceConfig.lacp_proposals`): where both hold
a segment of an instance, the higher-scored one is kept and the other decayed.
"""

from __future__ import annotations

import numpy as np

from detector.config import InferenceConfig

__all__ = ["decode_candidates", "merge_detections", "soft_nms", "video_detections", "vote_boundaries"]


def _tiou(segment: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """tIoU of one (2,) segment with each of (K, 2) segments (lengths end - start; 0 where the union is 0)."""
    inter = np.clip(np.minimum(segment[1], segments[:, 1]) - np.maximum(segment[0], segments[:, 0]), 0.0, None)
    union = (segment[1] - segment[0]) + (segments[:, 1] - segments[:, 0]) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def soft_nms(
    segments: np.ndarray, scores: np.ndarray, *, sigma: float, min_score: float, max_keep: int
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian Soft-NMS of one class (module docstring).

    Args:
        segments: (K, 2) start, end.
        scores: (K,) scores.
        sigma: Gaussian decay width.
        min_score: scores below this are dropped.
        max_keep: stop after this many selections.

    Returns:
        indices (k,) int64 of the kept segments in selection order, and their (k,) decayed scores.
    """
    segments = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
    remaining = np.asarray(scores, dtype=np.float64).copy()  # (K,)
    alive = remaining >= min_score  # (K,)
    kept, kept_scores = [], []
    while alive.any() and len(kept) < max_keep:
        best = int(np.argmax(np.where(alive, remaining, -np.inf)))
        kept.append(best)
        kept_scores.append(remaining[best])
        alive[best] = False
        tiou = _tiou(segments[best], segments)  # (K,)
        remaining = np.where(alive, remaining * np.exp(-(tiou**2) / sigma), remaining)
        alive &= remaining >= min_score
    return np.array(kept, dtype=np.int64), np.array(kept_scores, dtype=np.float64)


def vote_boundaries(kept: np.ndarray, segments: np.ndarray, scores: np.ndarray, *, tiou: float) -> np.ndarray:
    """Step 4: each kept segment's boundaries as the score-weighted mean of the candidates near it.

    Args:
        kept: (k, 2) the segments Soft-NMS selected.
        segments: (K, 2) all candidates of the same class (the kept ones among them).
        scores: (K,) their scores before Soft-NMS; negative ones weigh 0.
        tiou: candidates with tIoU >= this with a kept segment vote on it.

    Returns:
        (k, 2) the voted segments; a kept segment no positive candidate votes on stays as it was.
    """
    weights = np.clip(np.asarray(scores, dtype=np.float64), 0.0, None)  # (K,)
    voted = np.array(kept, dtype=np.float64).reshape(-1, 2)  # (k, 2)
    for i, segment in enumerate(voted.copy()):
        w = np.where(_tiou(segment, segments) >= tiou, weights, 0.0)  # (K,)
        if w.sum() > 0:
            voters = segments[w > 0]  # the mean lies within their bounds; the clip drops rounding past them
            mean = (w[:, None] * segments).sum(axis=0) / w.sum()
            voted[i] = np.clip(mean, voters.min(axis=0), voters.max(axis=0))
    return voted


def decode_candidates(
    probs: np.ndarray,
    distances: np.ndarray,
    centres: np.ndarray,
    strides: np.ndarray,
    levels: np.ndarray,
    *,
    length: int,
    config: InferenceConfig,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps 1-2: the candidate segments of one video.

    Args:
        probs: (N, C) class probabilities of the video's valid locations.
        distances: (N, 2) predicted (start, end) distances in stride units.
        centres: (N,) location centres (snippets).
        strides: (N,) location strides.
        levels: (N,) pyramid level of each location.
        length: T, the video's snippets (segments are clipped to [0, T]).
        config: score_threshold, pre_nms_topk, min_length.

    Returns:
        classes (K,) int64, scores (K,) float64, segments (K, 2) float64 in snippets, level by
        level.
    """
    classes, scores, segments = [], [], []
    num_classes = probs.shape[1]
    for level in np.unique(levels).tolist():
        at = np.flatnonzero(levels == level)
        flat = probs[at].reshape(-1)  # (n C,) location-major
        candidates = np.flatnonzero(flat > config.score_threshold)
        order = np.argsort(-flat[candidates], kind="stable")[: config.pre_nms_topk]
        candidates = candidates[order]
        location, label = at[candidates // num_classes], candidates % num_classes
        start = np.clip(centres[location] - distances[location, 0] * strides[location], 0.0, length)
        end = np.clip(centres[location] + distances[location, 1] * strides[location], 0.0, length)
        long_enough = end - start > config.min_length
        classes.append(label[long_enough])
        scores.append(flat[candidates][long_enough].astype(np.float64))
        segments.append(np.stack([start, end], axis=1)[long_enough])
    if not classes:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 2))
    return np.concatenate(classes), np.concatenate(scores), np.concatenate(segments).reshape(-1, 2)


def video_detections(
    classes: np.ndarray, scores: np.ndarray, segments: np.ndarray, *, config: InferenceConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps 3-5: Soft-NMS per class (and boundary voting), then the best `max_segments` over all classes.

    Args:
        classes: (K,) class of each candidate.
        scores: (K,) probabilities.
        segments: (K, 2) segments.
        config: nms_sigma, min_score, voting_tiou, max_segments.

    Returns:
        classes (k,), decayed scores (k,) and segments (k, 2), by descending score (ties: the
        lower class, then selection order).
    """
    kept_classes, kept_scores, kept_segments = [], [], []
    for label in np.unique(classes).tolist():
        at = np.flatnonzero(classes == label)
        index, decayed = soft_nms(
            segments[at], scores[at], sigma=config.nms_sigma, min_score=config.min_score, max_keep=config.max_segments
        )
        kept = segments[at[index]].reshape(-1, 2)  # (k, 2)
        if config.voting_tiou > 0:
            kept = vote_boundaries(kept, segments[at], scores[at], tiou=config.voting_tiou)
        kept_classes.append(np.full(index.size, label, dtype=np.int64))
        kept_scores.append(decayed)
        kept_segments.append(kept)
    if not kept_classes:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 2))
    classes, scores = np.concatenate(kept_classes), np.concatenate(kept_scores)
    segments = np.concatenate(kept_segments)
    order = np.argsort(-scores, kind="stable")[: config.max_segments]
    return classes[order], scores[order], segments[order]


def merge_detections(*lists: list[dict], config: InferenceConfig) -> list[dict]:
    """Steps 3-5 over the union of detection lists of one video.

    Args:
        *lists: detections `{"label_index", "score", "segment": [start, end]}`, all in the
            same time unit.
        config: nms_sigma, min_score, max_segments.

    Returns:
        The kept detections in that format, by descending (decayed) score; scores below
        `min_score` (LACP's OIC scores may be negative) are dropped.
    """
    union = [d for detections in lists for d in detections]
    if not union:
        return []
    classes = np.array([d["label_index"] for d in union], dtype=np.int64)  # (K,)
    scores = np.array([d["score"] for d in union], dtype=np.float64)  # (K,)
    segments = np.array([d["segment"] for d in union], dtype=np.float64).reshape(-1, 2)  # (K, 2)
    labels, kept, kept_segments = video_detections(classes, scores, segments, config=config)
    return [
        {"label_index": int(c), "score": float(v), "segment": [float(a), float(b)]}
        for c, v, (a, b) in zip(labels, kept, kept_segments)
    ]
