"""Benchmark of detection evaluation on a THUMOS'14-sized problem, and of proposal generation.

A made-up, seeded problem: 210 test videos, 20 classes, 3,300 ground-truth instances and
200,000 detections (half of those on a video's own classes near its instances), evaluated
at 7 tIoU thresholds. Prints one JSON object. Target: evaluate_seconds <= 5.

Run from the repo root: python -m bench.evaluate [--quick] [--seed N]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from features.timegrid import RELEASED_GRID
from lacp.metrics import evaluate_detection, load_ground_truth, load_results
from lacp.proposals import DetectionConfig, generate_proposals

N_VIDEOS, N_CLASSES, N_GT, N_PRED = 210, 20, 3300, 200_000


def make_problem(rng: np.random.Generator, *, n_pred: int) -> tuple[dict, dict]:
    """Returns (ground-truth document, results document)."""
    classes = [f"class{c:02d}" for c in range(N_CLASSES)]
    duration = rng.uniform(60, 400, N_VIDEOS)
    own = [rng.choice(N_CLASSES, size=1 + int(rng.random() < 0.15), replace=False) for _ in range(N_VIDEOS)]
    gt_video = np.sort(rng.integers(0, N_VIDEOS, N_GT))
    gt_class = np.array([rng.choice(own[v]) for v in gt_video])
    gt_len = np.clip(rng.exponential(4.5, N_GT), 0.5, 40)
    gt_start = rng.uniform(0, duration[gt_video] - gt_len)
    database = {f"video_test_{v:07d}": {"subset": "test", "annotations": []} for v in range(N_VIDEOS)}
    for v, c, s, length in zip(gt_video, gt_class, gt_start, gt_len):
        database[f"video_test_{v:07d}"]["annotations"].append(
            {"label": classes[c], "segment": [f"{s:.1f}", f"{s + length:.1f}"]}
        )
    near = rng.random(n_pred) < 0.5  # detections around a ground-truth instance of its class
    anchor = rng.integers(0, N_GT, n_pred)
    video = np.where(near, gt_video[anchor], rng.integers(0, N_VIDEOS, n_pred))
    label = np.where(near, gt_class[anchor], rng.integers(0, N_CLASSES, n_pred))
    length = np.where(near, gt_len[anchor] * rng.uniform(0.5, 1.5, n_pred), rng.exponential(6.0, n_pred) + 0.2)
    start = np.where(near, gt_start[anchor] + rng.normal(0, 0.3, n_pred) * gt_len[anchor], 0.0)
    start = np.where(near, start, rng.uniform(0, duration[video]))
    score = np.where(near, rng.beta(3, 2, n_pred), rng.beta(2, 3, n_pred))
    results: dict[str, list] = {f"video_test_{v:07d}": [] for v in range(N_VIDEOS)}
    for v, c, p, s, length_s in zip(video.tolist(), label.tolist(), score.tolist(), start.tolist(), length.tolist()):
        results[f"video_test_{v:07d}"].append({"label": classes[c], "score": p, "segment": [s, s + length_s]})
    return {"database": database}, {"results": results}


def time_proposals(rng: np.random.Generator, *, videos: int) -> float:
    """Mean milliseconds of generate_proposals on a 217 s video (340 snippets, 20 classes)."""
    t = 340
    smooth = np.ones(9) / 9
    elapsed = 0.0
    for _ in range(videos):
        p = np.stack([np.convolve(rng.random(t) ** 4, smooth, mode="same") for _ in range(N_CLASSES + 1)], axis=1)
        q = np.concatenate([p[:, :-1] * (1 - p[:, -1:]), p[:, -1:]], axis=1)
        score = np.zeros(N_CLASSES)
        score[rng.choice(N_CLASSES, 2, replace=False)] = 0.8
        begin = time.perf_counter()
        generate_proposals(
            q, config=DetectionConfig(), video_score=score, snippet_seconds=RELEASED_GRID.seconds_per_snippet
        )
        elapsed += time.perf_counter() - begin
    return 1000 * elapsed / videos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 detections, one repetition")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    n_pred = N_PRED // 10 if args.quick else N_PRED
    gt_doc, results_doc = make_problem(rng, n_pred=n_pred)
    best_load, best_eval = np.inf, np.inf
    for _ in range(1 if args.quick else 2):
        begin = time.perf_counter()
        gt = load_ground_truth(gt_doc, subset="test")
        predictions = load_results(results_doc)
        loaded = time.perf_counter()
        result = evaluate_detection(gt, predictions, tiou=np.arange(0.1, 0.75, 0.1))
        done = time.perf_counter()
        best_load, best_eval = min(best_load, loaded - begin), min(best_eval, done - loaded)
    report = {
        "videos": N_VIDEOS,
        "classes": N_CLASSES,
        "gt_instances": int(gt.segments.shape[0]),
        "predictions": int(predictions.scores.size),
        "thresholds": int(result.tiou.size),
        "load_seconds": round(best_load, 4),
        "evaluate_seconds": round(best_eval, 4),
        "total_seconds": round(best_load + best_eval, 4),
        "map_at_0.5_percent": round(100 * float(result.map[4]), 3),
        "proposals_ms_per_video": round(time_proposals(rng, videos=5 if args.quick else 20), 3),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
