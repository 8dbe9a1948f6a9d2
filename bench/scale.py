"""Benchmark of peak memory against dataset size: training and evaluation on 100 and 2,000 videos.

Synthetic two-stream features (T ~ U[--snippets/2, 3*--snippets/2] snippets x 1024 float32 for rgb
and for flow, per video) are written to one temporary HDF5 store per dataset size, in the
feature-store schema (`features.store`). Each (mode, size) configuration then runs in a fresh
child process that reads the store through `features.store.FeatureStore` and reports its own
peak resident memory (`bench.machine.peak_mib`):

- train: `lacp.trainer.train` with the FeatureStore as `get_features` (features streamed per
  step), `--steps` steps of batch 16 over 20 classes, with one optimal sequence search over
  every video at the last step (the search reads every video, as in a real run).
- evaluate: `lacp.inference.predict` over every video (a seeded `LACPNet`), keeping the fused
  scores of the 4 timeline videos as the evaluate stage does. The class threshold is 0.9 so that
  about one class is predicted per video, as with a trained model (an untrained network scores
  every class near 0.5: at the default 0.5 it predicts most classes, and the proposals kept
  for predictions.json then dominate the memory; `--class-threshold 0.5` shows that case).

Finding (2026-11, 100 vs 2,000 videos, T ~ 100): evaluation is flat (ratio ~1.06; what grows
is the proposals kept for predictions.json, ~36 per video). Training's peak grows ~0.28 MiB per
video (ratio ~1.34, under the 1.5 target), all of it in the search phase, which reads every
video in batches: the data it keeps is ~13 KiB per video (scores, seeds, pseudo labels); the
rest is glibc heap fragmentation (its dynamic mmap threshold moves the ~1 MiB feature buffers
onto the heap, between those small long-lived arrays). `--fixed-mmap-threshold` runs the
children with MALLOC_MMAP_THRESHOLD_=131072: training is then flat (--quick, 100 vs 400
videos: ratio 1.00, against 1.11 without it).

Prints one JSON object: per configuration `<mode>_peak_mib_<N>` (whole process),
`<mode>_growth_mib_<N>` (peak minus the peak after imports), `<mode>_seconds_<N>` and
`evaluate_proposals_per_video_<N>`, then
`<mode>_ratio_<big>_to_<small>` of the peaks, `store_gib`, `write_seconds`. Target: both ratios
<= 1.5 (memory flat in the number of videos).

Run by hand:  python -m bench.scale [--quick] [--videos 100,2000] [--snippets 100] [--threads 2]
              [--fixed-mmap-threshold] [--tmp-dir D]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from bench.machine import REPO, add_memory, add_peak_ratio, measure, run_child

NUM_CLASSES = 20
SOURCE_FPS = 30.0
TIMELINES = 4
STORE_ATTRS = {
    "fps": 25,
    "snippet": 16,
    "stride": 16,
    "crop": 224,
    "backbone": "synthetic (bench.scale)",
    "weights_sha256": "none",
    "flow_method": "none",
    "flow_init": "none",
}


def video_ids(count: int) -> list[str]:
    return [f"video_{i:05d}" for i in range(count)]


def write_store(path: Path, *, count: int, snippets: int, seed: int) -> None:
    """A feature store of `count` videos with T ~ U[snippets/2, 3*snippets/2] each, video by video."""
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as h5:
        h5.attrs.update(STORE_ATTRS)
        groups = {s: h5.create_group(s) for s in ("rgb", "flow")}
        for vid in video_ids(count):
            t = int(rng.integers(snippets // 2, 3 * snippets // 2 + 1))
            both = rng.random((t, 2048), dtype=np.float32)  # (T, 2048): post-ReLU-like, >= 0
            for stream, part in (("rgb", both[:, :1024]), ("flow", both[:, 1024:])):
                dset = groups[stream].create_dataset(vid, data=part)  # (T, 1024)
                dset.attrs["frames"] = t * 16
                dset.attrs["source_fps"] = SOURCE_FPS


def training_items(store, rng: np.random.Generator):
    """One VideoItem per stored video: 1-2 classes, 3 points inside the video."""
    from lacp.batching import VideoItem

    items = []
    frames_per_snippet = 16 * SOURCE_FPS / 25
    for vid in store.videos:
        t = int(store.video_attrs(vid)["frames"]) // 16
        present = rng.choice(NUM_CLASSES, size=int(rng.integers(1, 3)), replace=False)
        labels = np.zeros(NUM_CLASSES, np.float32)
        labels[present] = 1.0
        snippet = np.sort(rng.choice(t, size=3, replace=False))
        items.append(
            VideoItem(
                vid,
                labels,
                np.floor((snippet + 0.5) * frames_per_snippet).astype(np.int64),
                rng.choice(present, size=3).astype(np.int64),
                SOURCE_FPS,
            )
        )
    return items


def child_train(store_path: Path, *, steps: int) -> dict:
    """Train for `steps` steps with the store streamed per step; one search at the last step."""
    from features.store import FeatureStore
    from lacp.trainer import TrainConfig, train

    def work() -> None:
        with FeatureStore(store_path) as store:
            items = training_items(store, np.random.default_rng(0))
            config = TrainConfig(
                steps=steps, batch=16, search_every=steps, checkpoint_every=0, device="cpu", search_workers=1
            )
            result = train(videos=items, get_features=store, num_classes=NUM_CLASSES, config=config)
        if len(result.pseudo_labels) != len(items):
            raise RuntimeError("the search did not cover every video")

    return measure(work)


def child_evaluate(store_path: Path, *, class_threshold: float) -> dict:
    """The evaluate stage's predict loop over every stored video."""
    import torch

    from features.store import FeatureStore
    from lacp.inference import predict
    from lacp.model import LACPNet
    from lacp.proposals import DetectionConfig

    def work() -> dict[str, float]:
        torch.manual_seed(0)
        model = LACPNet(num_classes=NUM_CLASSES).eval()
        detection = DetectionConfig(class_threshold=class_threshold)
        with FeatureStore(store_path) as store:
            videos = store.videos
            proposals, class_sets, scores = predict(
                model, store, videos, detection, torch.device("cpu"), keep_scores=videos[:TIMELINES]
            )
        if not len(proposals) == len(class_sets) == len(videos) or len(scores) > TIMELINES:
            raise RuntimeError("predict did not return one result per video")
        return {"proposals_per_video": sum(map(len, proposals.values())) / len(videos)}

    return measure(work)


def scale_child(
    mode: str, store_path: Path, *, steps: int, threads: int, class_threshold: float, env: dict[str, str]
) -> dict:
    """One configuration in a fresh interpreter (`bench.machine.run_child`); returns its JSON report."""
    argv = [
        sys.executable,
        "-m",
        "bench.scale",
        "--child",
        mode,
        "--store",
        str(store_path),
        "--steps",
        str(steps),
        "--threads",
        str(threads),
        "--class-threshold",
        str(class_threshold),
    ]
    return run_child(argv, cwd=REPO, env=env, what=f"{mode} {store_path.name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 and 400 videos, 2 training steps")
    parser.add_argument("--videos", default=None, help="two dataset sizes, small,big (default 100,2000)")
    parser.add_argument("--snippets", type=int, default=100, help="mean snippets per video")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default 4; quick 2)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--class-threshold", type=float, default=0.9, help="evaluate: class threshold (see above)")
    parser.add_argument(
        "--fixed-mmap-threshold", action="store_true", help="children run with MALLOC_MMAP_THRESHOLD_=131072 (glibc)"
    )
    parser.add_argument("--tmp-dir", default=None, help="where the temporary stores go (default: the system temp dir)")
    parser.add_argument("--child", choices=["train", "evaluate"], help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    args = parser.parse_args()
    steps = args.steps or (2 if args.quick else 4)

    if args.child:  # one configuration, in its own process
        import torch

        torch.set_num_threads(args.threads)
        if args.child == "train":
            report = child_train(Path(args.store), steps=steps)
        else:
            report = child_evaluate(Path(args.store), class_threshold=args.class_threshold)
        print(json.dumps(report))
        return

    small, big = (int(v) for v in (args.videos or ("100,400" if args.quick else "100,2000")).split(","))
    out: dict[str, float | int] = {
        "videos_small": small,
        "videos_big": big,
        "mean_snippets": args.snippets,
        "steps": steps,
    }
    env = dict(os.environ)
    if args.fixed_mmap_threshold:
        env["MALLOC_MMAP_THRESHOLD_"] = "131072"
    out["malloc_mmap_threshold_bytes"] = int(env.get("MALLOC_MMAP_THRESHOLD_", 0))
    with tempfile.TemporaryDirectory(prefix="bench-scale-", dir=args.tmp_dir) as tmp:  # deleted at the end
        started = time.perf_counter()
        stores = {n: Path(tmp) / f"features_{n}.h5" for n in (small, big)}
        for n, path in stores.items():
            write_store(path, count=n, snippets=args.snippets, seed=n)
        out["write_seconds"] = round(time.perf_counter() - started, 1)
        out["store_gib"] = round(sum(p.stat().st_size for p in stores.values()) / 2**30, 3)
        for mode in ("train", "evaluate"):
            for n, path in stores.items():
                report = scale_child(
                    mode, path, steps=steps, threads=args.threads, class_threshold=args.class_threshold, env=env
                )
                add_memory(out, report, key=f"{mode}_{{}}_{n}")
                out[f"{mode}_seconds_{n}"] = round(report["seconds"], 2)
                if mode == "evaluate":
                    out[f"evaluate_proposals_per_video_{n}"] = round(report["proposals_per_video"], 1)
            add_peak_ratio(out, peak=f"{mode}_peak_mib_{{}}", ratio=f"{mode}_ratio", sizes=(small, big))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
