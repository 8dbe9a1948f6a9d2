"""Benchmark of LACP training on a THUMOS'14-sized problem made up here.

200 training videos of 300 snippets x 2048-d features, 20 classes, 15 points per video,
batch 16. Prints one JSON object:
- step_seconds: one full training step with the completeness losses active (read features,
  collate, forward, seeds, all losses, backward, Adam), mean over the timed steps after the
  first (step_seconds_first: the first, with warm-up).
- dense_*: the network's forward + backward alone on one batch, its FLOPs (the embedding
  conv's forward and weight gradient - its input needs no gradient - plus 3x the CAS conv's
  forward), the achieved GFLOP/s, and the share of this machine's fp32 matmul rate measured
  in the same process (matmul_gflop_per_s, 4096^2 x 4096 sgemm).
- search_*: one optimal sequence search over all training videos (`lacp.search`, null when
  absent): search_seconds (the search itself), search_phase_seconds (plus the eval-mode
  forward and seed selection over every video), and their shares of 10 training steps.
- peak_mib: peak resident memory (getrusage).

Run by hand:  python -m bench.train [--quick] [--threads N] [--videos 200] [--steps 10]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import statistics
import sys
import time

import numpy as np
import torch

from bench.machine import cpu_name
from lacp.batching import VideoItem, collate, load_sample
from lacp.losses import lacp_loss
from lacp.model import LACPNet
from lacp.seeds import batch_background_seeds
from lacp.trainer import TrainConfig, batch_indices, train

FEATURE_DIM = 2048
SOURCE_FPS = 30.0
POOL = 16  # distinct feature arrays; video i reads POOL entry i % POOL (timing only)


def _videos(rng: np.random.Generator, *, count: int, snippets: int, classes: int, points: int) -> list[VideoItem]:
    """Training videos with `points` points over 1-3 classes each."""
    frames_per_snippet = 16 * SOURCE_FPS / 25
    videos = []
    for i in range(count):
        present = rng.choice(classes, size=int(rng.integers(1, 4)), replace=False)
        snippet = np.sort(rng.choice(snippets, size=points, replace=False))
        labels = np.zeros(classes, np.float32)
        labels[present] = 1
        videos.append(
            VideoItem(
                f"video_{i:04d}",
                labels,
                np.floor((snippet + 0.5) * frames_per_snippet),
                rng.choice(present, size=points),
                SOURCE_FPS,
            )
        )
    return videos


def _feature_pool(rng: np.random.Generator, *, snippets: int) -> list[np.ndarray]:
    """Smooth non-negative features (like I3D's post-ReLU averages), (T, D) float32 each."""
    pool = []
    for _ in range(POOL):
        raw = rng.standard_normal((snippets + 4, FEATURE_DIM)).astype(np.float32)
        smooth = (raw[:-4] + raw[1:-3] + raw[2:-2] + raw[3:-1] + raw[4:]) / 5
        pool.append(np.maximum(smooth, 0.0))
    return pool


def _matmul_gflop_per_s(repeats: int) -> float:
    """Best fp32 matmul rate of this process (n = 4096)."""
    n = 4096
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def _dense_flops(*, snippets: int, classes: int) -> float:
    """FLOPs of one forward + backward of the network over `snippets` valid snippets."""
    embed = 2 * snippets * 3 * FEATURE_DIM * FEATURE_DIM  # kernel-3 conv forward
    cas = 2 * snippets * FEATURE_DIM * (classes + 1)  # kernel-1 conv forward
    return 2 * embed + 3 * cas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="48 videos, 2 timed steps")
    parser.add_argument("--videos", type=int, default=None)
    parser.add_argument("--snippets", type=int, default=300)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--points", type=int, default=15)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=None, help="timed training steps")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--search-workers", type=int, default=1)
    args = parser.parse_args()
    num_videos = args.videos or (48 if args.quick else 200)
    steps = args.steps or (2 if args.quick else 10)
    repeats = 2 if args.quick else 5
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    videos = _videos(rng, count=num_videos, snippets=args.snippets, classes=args.classes, points=args.points)
    pool = _feature_pool(rng, snippets=args.snippets)
    index = {v.video_id: i for i, v in enumerate(videos)}

    def get_features(vid: str) -> np.ndarray:
        return pool[index[vid] % POOL]

    # 1. one step and one search through the trainer (search after step 1)
    has_search = importlib.util.find_spec("lacp.search") is not None
    search_times: list[float] = []

    def stand_in_search(items):
        """Without lacp.search: pseudo labels = the action seeds (not timed)."""
        return [act.astype(np.uint8) for _, act, _ in items]

    def timed_search(items):
        from lacp.search import search_videos

        started = time.perf_counter()
        labels = search_videos(items, method="exact", workers=args.search_workers)
        search_times.append(time.perf_counter() - started)
        return labels

    config = TrainConfig(
        steps=1, batch=args.batch, search_every=1, checkpoint_every=0, device="cpu", search_workers=args.search_workers
    )
    first = train(
        videos=videos,
        get_features=get_features,
        num_classes=args.classes,
        config=config,
        search_fn=timed_search if has_search else stand_in_search,
    )
    search_phase = first.log[0]["search_seconds"]

    # 2. timed steps with the completeness losses active (the trainer's step body)
    torch.manual_seed(0)
    model = LACPNet(num_classes=args.classes)
    model.load_state_dict(first.state_dict)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=5e-4, fused=True)
    step_times = []
    for step in range(2, steps + 2):
        started = time.perf_counter()
        picked = batch_indices(step, num_videos=num_videos, batch=args.batch, seed=0)
        batch = collate(
            [
                load_sample(videos[i], get_features=get_features, num_classes=args.classes, feature_dim=FEATURE_DIM)
                for i in picked
            ]
        )
        model.train()
        out = model(batch.features, batch.mask)
        seeds = batch_background_seeds(out["q"], batch.points, batch.lengths)
        pseudo = [first.pseudo_labels[vid] for vid in batch.video_ids]
        terms = lacp_loss(out, batch, seeds, pseudo, rng=np.random.default_rng(step))
        optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        optimizer.step()
        step_times.append(time.perf_counter() - started)
    step_seconds = statistics.mean(step_times[1:] if len(step_times) > 1 else step_times)

    # 3. the dense part alone, and the machine's matmul rate
    def dense() -> None:
        out = model(batch.features, batch.mask)
        out["cas"].sum().backward()

    dense()  # warm-up
    dense_seconds = min(_timed(dense) for _ in range(repeats))
    dense_gflop = _dense_flops(snippets=int(batch.lengths.sum()), classes=args.classes) / 1e9
    matmul = _matmul_gflop_per_s(repeats)

    search_seconds = search_times[0] if search_times else None
    report = {
        "cpu": cpu_name(),
        "device": "cpu",
        "threads": args.threads,
        "videos": num_videos,
        "snippets_per_video": args.snippets,
        "classes": args.classes,
        "points_per_video": args.points,
        "batch_videos": args.batch,
        "timed_steps": steps,
        "step_seconds": step_seconds,
        "step_seconds_first": step_times[0],
        "dense_seconds": dense_seconds,
        "dense_gflop": dense_gflop,
        "dense_gflop_per_s": dense_gflop / dense_seconds,
        "step_dense_gflop_per_s": dense_gflop / step_seconds,
        "matmul_gflop_per_s": matmul,
        "dense_share_of_matmul": dense_gflop / dense_seconds / matmul,
        "search_available": has_search,
        "search_seconds": search_seconds,
        "search_phase_seconds": search_phase if has_search else None,
        "search_share_of_10_steps": (search_seconds / (10 * step_seconds) if search_seconds is not None else None),
        "search_phase_share_of_10_steps": (search_phase / (10 * step_seconds) if has_search else None),
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    sys.exit(main())
