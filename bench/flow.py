"""Benchmark optical flow: TV-L1 and DIS speed and accuracy at 224x224, stored flow size.

Content: a smooth random texture that rotates (0.5 deg/frame) and translates (3, -1.5 px/frame)
behind a textured square circling the centre at about 5 px/frame, so the true flow is known
per pixel. The end-point error (EPE) is measured against it on the pixels away from the
border and from the square's edges (occlusions). Storage is measured on the quantised DIS
"fast" flow written as a flow file (gzip and lzf), scaled to one minute at 25 fps. This
synthetic flow is smoother than real footage, so real videos compress less (treat the sizes
as a lower bound).

Run from the repo root: python -m bench.flow [--quick] [--threads 1]. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from features.flow import compute_flow, dequantize_pixels, write_flow

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
        img = cv2.warpAffine(bg, _affine(k)[:2], (SIZE, SIZE), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_WRAP)
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
        near = ((xs >= min(x0, x1) - 8) & (xs < max(x0, x1) + OBJ_SIZE + 8)
                & (ys >= min(y0, y1) - 8) & (ys < max(y0, y1) + OBJ_SIZE + 8))
        core = ((xs >= x0 + 8) & (xs < x0 + OBJ_SIZE - 8)
                & (ys >= y0 + 8) & (ys < y0 + OBJ_SIZE - 8))
        mask[k] = (~near | core)
        mask[k, :border] = mask[k, -border:] = False
        mask[k, :, :border] = mask[k, :, -border:] = False
    return frames, flow, mask


def measure(frames: np.ndarray, truth: np.ndarray, mask: np.ndarray, **kw: object) -> dict:
    """Frames/s of compute_flow (flow + quantisation) and EPE of its output in pixels."""
    start = time.perf_counter()
    q = compute_flow(frames, bound=BOUND, **kw)  # (N, H, W, 2) uint8
    seconds = time.perf_counter() - start
    pairs = len(frames) - 1
    est = dequantize_pixels(q[:pairs], BOUND)  # (N-1, H, W, 2)
    epe = np.linalg.norm(est - truth, axis=-1)[mask]
    return {"frames_per_s": pairs / seconds, "seconds_per_frame": seconds / pairs,
            "epe_px": float(epe.mean()), "flow": q}


def stored_bytes(flow_u8: np.ndarray, compression: str) -> int:
    """Size of a flow file holding ``flow_u8``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "v.h5"
        write_flow(path, flow_u8, method="dis", bound=BOUND, compression=compression)
        return os.path.getsize(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few frames (seconds)")
    parser.add_argument("--threads", type=int, default=1, help="OpenCV threads")
    args = parser.parse_args()
    cv2.setNumThreads(args.threads)
    n_dis, n_tvl1 = (26, 3) if args.quick else (151, 6)
    frames, truth, mask = render(n_dis)
    result: dict[str, object] = {"size_px": SIZE, "threads": args.threads,
                                 "dis_pairs": n_dis - 1, "tvl1_pairs": n_tvl1 - 1}
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
    frames_per_minute = 60 * FPS
    raw = SIZE * SIZE * 2 * frames_per_minute
    result["raw_bytes_per_video_minute"] = raw
    for comp in ("gzip", "lzf"):
        per_frame = stored_bytes(dis_fast, comp) / len(dis_fast)
        result[f"{comp}_bytes_per_video_minute"] = int(per_frame * frames_per_minute)
        result[f"{comp}_ratio_to_raw"] = round(per_frame * frames_per_minute / raw, 4)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
