"""Benchmark of the optimal sequence search (lacp.search) on synthetic training-like videos.

Prints one JSON object: seconds for an exact search over all videos in this process and on
a 2-process pool (cold, including worker start-up, and warm), and the beam search on a
subset for comparison (time and objective gap). Run by hand:

    python -m bench.search [--quick] [--videos 200] [--snippets 300] [--classes 20]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from lacp.search import SearchPool, class_background_seeds, search_class, search_videos


def _smooth_scores(rng: np.random.Generator, snippets: int, channels: int) -> np.ndarray:
    """Smooth random fused scores in (0, 1). Returns (T, C + 1) float32."""
    width = 9
    raw = rng.normal(size=(snippets + width - 1, channels))
    kernel = np.ones(width) / width
    logits = np.stack([np.convolve(raw[:, c], kernel, mode="valid") for c in range(channels)], axis=1)
    return (1.0 / (1.0 + np.exp(-5.0 * logits))).astype(np.float32)


def _synthetic_video(
    rng: np.random.Generator, *, snippets: int, classes: int, points: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One video: ~`points` points over 1-3 classes, pseudo action neighbours, background chunks."""
    q = _smooth_scores(rng, snippets, classes + 1)  # (T, C + 1)
    present = rng.choice(classes, size=rng.integers(1, 4), replace=False)
    where = np.sort(rng.choice(snippets, size=points, replace=False))
    action = np.zeros((snippets, classes), dtype=bool)  # (T, C)
    for t in where:
        c = rng.choice(present)
        action[max(0, t - rng.integers(0, 3)) : t + rng.integers(1, 4), c] = True
    background = np.zeros(snippets, dtype=bool)  # (T,)
    edges = np.concatenate(([-1], where, [snippets]))
    for left, right in zip(edges[:-1], edges[1:]):
        if right - left > 6:
            middle = rng.integers(left + 3, right - 2)
            background[middle : middle + rng.integers(1, 4)] = True
    background &= ~action.any(axis=1)
    return q, action, background


def _mean_objective_gap(items: list, *, budget: int) -> tuple[float, float]:
    """Mean (exact - beam) objective per searched class, and the share where exact wins."""
    gaps = []
    for q, action, background in items:
        for c in np.flatnonzero(action.any(axis=0)):
            seeds = class_background_seeds(action, background, c)
            exact = search_class(q[:, c], action[:, c], seeds).objective
            beam = search_class(q[:, c], action[:, c], seeds, method="beam", budget=budget).objective
            gaps.append(exact - beam)
    gaps_array = np.array(gaps)
    return float(gaps_array.mean()), float((gaps_array > 1e-9).mean())


def _timed(function, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="40 videos, beam on 5")
    parser.add_argument("--videos", type=int, default=200)
    parser.add_argument("--snippets", type=int, default=300)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--points", type=int, default=15, help="points per video")
    parser.add_argument("--beam-videos", type=int, default=20)
    parser.add_argument("--budget", type=int, default=25)
    args = parser.parse_args()
    videos, beam_videos = (40, 5) if args.quick else (args.videos, args.beam_videos)

    rng = np.random.default_rng(0)
    items = [
        _synthetic_video(rng, snippets=args.snippets, classes=args.classes, points=args.points) for _ in range(videos)
    ]
    searched_classes = int(sum(action.any(axis=0).sum() for _, action, _ in items))

    serial_s, serial = _timed(search_videos, items, workers=1)
    cold_s, cold = _timed(search_videos, items, workers=2)
    with SearchPool(workers=2) as pool:
        pool.search(items[:2])  # start the workers
        warm_s, warm = _timed(pool.search, items)
    identical = all(np.array_equal(a, b) and np.array_equal(a, c) for a, b, c in zip(serial, cold, warm))

    subset = items[:beam_videos]
    exact_subset_s, _ = _timed(search_videos, subset, workers=1)
    beam_subset_s, _ = _timed(search_videos, subset, method="beam", budget=args.budget, workers=1)
    gap, exact_wins = _mean_objective_gap(subset, budget=args.budget)

    print(
        json.dumps(
            {
                "videos": videos,
                "snippets_per_video": args.snippets,
                "classes": args.classes,
                "searched_classes": searched_classes,
                "exact_workers1_seconds": round(serial_s, 4),
                "exact_workers2_cold_seconds": round(cold_s, 4),
                "exact_workers2_warm_pool_seconds": round(warm_s, 4),
                "exact_ms_per_video": round(1000 * serial_s / videos, 3),
                "parallel_equals_serial": identical,
                "beam_subset_videos": beam_videos,
                "beam_subset_seconds": round(beam_subset_s, 4),
                "exact_subset_seconds": round(exact_subset_s, 4),
                "beam_over_exact_time_ratio": round(beam_subset_s / exact_subset_s, 2),
                "mean_objective_gain_exact_minus_beam": round(gap, 5),
                "share_of_classes_exact_strictly_better": round(exact_wins, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
