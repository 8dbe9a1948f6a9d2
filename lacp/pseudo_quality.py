"""How well the searched pseudo labels match the training ground truth (a diagnostic).

The optimal sequence search (METHOD 4) turns each point into a dense pseudo-action span; these
numbers say whether those spans have the instances' extent - e.g. whether an OIC convention
makes the search cut long actions short. Only the training videos' ground truth is read, and
nothing here feeds back into training.

Per ground-truth instance (class c, [start, end] seconds) of a video with pseudo labels, its
snippets are those whose centre (t + 0.5) * u lies inside it (at least the snippet holding
the instance's midpoint), u = one snippet in seconds; the pseudo-action runs of class c are
the runs of ones of that class's column, run [a, b] covering [a * u, (b + 1) * u) seconds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["PSEUDO_COLUMNS", "pseudo_label_quality"]

PSEUDO_COLUMNS = ["iou", "coverage", "precision", "length_ratio"]  # `pseudo_<name>` of `pseudo_label_quality`

Instance = tuple[int, float, float]  # (class index, start s, end s)


def _runs(column: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) snippet of each run of ones of a 0/1 column."""
    padded = np.concatenate([[0], column.astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(padded))  # starts and ends + 1, alternating
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2])]


def _tiou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def pseudo_label_quality(
    pseudo_labels: Mapping[str, np.ndarray],
    instances: Mapping[str, Sequence[Instance]],
    *,
    snippet_seconds: float,
) -> dict[str, float]:
    """Pseudo-label spans against the ground-truth instances of the same videos.

    Args:
        pseudo_labels: video id -> (T, C) 0/1 dense pseudo labels of the last search.
        instances: video id -> ground-truth instances (class index, start s, end s); videos
            without pseudo labels are skipped.
        snippet_seconds: seconds per snippet.

    Returns:
        pseudo_instances: instances compared;
        pseudo_iou: mean over instances of the best tIoU with a pseudo-action run of its class
            (0 when the class has none);
        pseudo_coverage: share of the instances' snippets labelled as their class;
        pseudo_length_ratio: mean over instances of (length of the best-matching run) /
            (instance length) - below 1: spans cut short, above 1: spans too long;
        pseudo_precision: share of all pseudo-action snippets (of classes present in the
            video) that lie inside an instance of their class.
    """
    ious, ratios = [], []
    covered = total = inside = labelled = 0
    for vid, dense in pseudo_labels.items():
        if vid not in instances:
            continue
        dense = np.asarray(dense).astype(bool)  # (T, C)
        length = dense.shape[0]
        centres = (np.arange(length) + 0.5) * snippet_seconds  # (T,)
        truth = np.zeros_like(dense)  # (T, C) snippets inside an instance of the class
        for cls, start, end in instances[vid]:
            snippets = (centres >= start) & (centres <= end)
            if not snippets.any():
                snippets[min(length - 1, int((start + end) / 2 / snippet_seconds))] = True
            truth[:, cls] |= snippets
            covered += int((dense[:, cls] & snippets).sum())
            total += int(snippets.sum())
            runs = [(a * snippet_seconds, (b + 1) * snippet_seconds) for a, b in _runs(dense[:, cls])]
            scored = [(_tiou((start, end), run), run) for run in runs]
            best_iou, best_run = max(scored, default=(0.0, (0.0, 0.0)))
            ious.append(best_iou)
            ratios.append((best_run[1] - best_run[0]) / max(end - start, 1e-9))
        present = truth.any(axis=0)  # (C,) classes with an instance
        inside += int((dense & truth)[:, present].sum())
        labelled += int(dense[:, present].sum())
    return {
        "pseudo_instances": float(len(ious)),
        "pseudo_iou": float(np.mean(ious)) if ious else float("nan"),
        "pseudo_coverage": covered / total if total else float("nan"),
        "pseudo_length_ratio": float(np.mean(ratios)) if ratios else float("nan"),
        "pseudo_precision": inside / labelled if labelled else float("nan"),
    }
