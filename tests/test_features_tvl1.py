"""Tests of features.tvl1: its building blocks against cv2 itself, the whole flow against
OpenCV's DualTVL1 with the same parameters, and the batch / dtype / device contracts.

The measured values quoted below are from opencv-contrib-python 4.13 and torch 2.14 on a
2-core AVX2 CPU (one thread).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from features.flow import TVL1_PARAMS
from features.tvl1 import (
    TVL1Solver,
    centered_gradient,
    median_filter,
    pyramid_sizes,
    resize_linear,
    tvl1_flow,
    warp_cubic,
)


@pytest.fixture(autouse=True)
def _one_thread():
    threads, cv_threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    yield
    torch.set_num_threads(threads)
    cv2.setNumThreads(cv_threads)


def _texture(size: int, seed: int = 0, sigma: float = 2.0) -> np.ndarray:
    """Smooth random texture, (size, size) float32 spanning 0..255."""
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.random((size, size)).astype(np.float32), (0, 0), sigma)
    return ((img - img.min()) / (img.max() - img.min()) * 255).astype(np.float32)


def _moved_pair(
    size: int, *, shift=(0.0, 0.0), angle: float = 0.0, zoom: float = 1.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames whose content moves by a similarity transform about the centre, and its flow.

    Both frames are crops of a texture twice the size, so content enters from outside
    instead of from a black border.

    Returns:
        frame0, frame1 (size, size) uint8; true flow (size, size, 2) float32 (dx, dy).
    """
    big = _texture(2 * size, seed)
    centre = float(size)  # the centre of the big texture
    m = cv2.getRotationMatrix2D((centre, centre), angle, zoom)
    m[:, 2] += shift
    moved = cv2.warpAffine(
        big, m, (2 * size, 2 * size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT
    )  # moved(m p) = big(p)
    lo = size // 2
    crop = slice(lo, lo + size)
    f0 = np.rint(np.clip(big[crop, crop], 0, 255)).astype(np.uint8)
    f1 = np.rint(np.clip(moved[crop, crop], 0, 255)).astype(np.uint8)
    ys, xs = np.mgrid[lo : lo + size, lo : lo + size].astype(np.float64)
    flow = np.stack([m[0, 0] * xs + m[0, 1] * ys + m[0, 2] - xs, m[1, 0] * xs + m[1, 1] * ys + m[1, 2] - ys], axis=-1)
    return f0, f1, flow.astype(np.float32)


def _opencv(f0: np.ndarray, f1: np.ndarray, **params) -> np.ndarray:
    algo = cv2.optflow.DualTVL1OpticalFlow_create()
    for key, value in params.items():
        getattr(algo, TVL1_PARAMS[key])(value)
    return algo.calc(f0, f1, None)


def _torch(f0: np.ndarray, f1: np.ndarray, **params) -> np.ndarray:
    return tvl1_flow(torch.from_numpy(f0)[None], torch.from_numpy(f1)[None], settings=TVL1Solver(**params))[0].numpy()


def _epe(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.norm(a - b, axis=-1)


# ---------------------------------------------------------------- building blocks vs cv2


@pytest.mark.parametrize(("h", "w"), [(64, 64), (51, 51), (96, 80), (224, 224), (20, 300)])
def test_pyramid_and_resize_equal_cv2_resize(h: int, w: int) -> None:
    x = np.random.default_rng(h * w).random((h, w)).astype(np.float32) * 255
    down = cv2.resize(x, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_LINEAR)
    sizes = pyramid_sizes(h, w, 5, 0.8)
    assert sizes[1] == down.shape  # rounded, not floored: 51 * 0.8 = 40.8 -> 41
    mine = resize_linear(torch.from_numpy(x), sizes[1], scale=1 / 0.8).numpy()
    np.testing.assert_allclose(mine, down, atol=1e-3)  # measured max 3e-5 (of 255)
    up = cv2.resize(down, (w, h), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(resize_linear(torch.from_numpy(down), (h, w)).numpy(), up, atol=5e-3)


def test_pyramid_stops_before_16_px_and_at_nscales() -> None:
    assert pyramid_sizes(224, 224, 5, 0.8) == [(224, 224), (179, 179), (143, 143), (114, 114), (91, 91)]
    assert pyramid_sizes(40, 100, 10, 0.5) == [(40, 100), (20, 50)]  # 10 < 16
    assert pyramid_sizes(12, 12, 5, 0.8) == [(12, 12)]  # the frame itself is always a level


@pytest.mark.parametrize("size", [3, 5])
def test_median_filter_equals_cv2_median_blur(size: int) -> None:
    x = np.random.default_rng(size).random((2, 2, 33, 26)).astype(np.float32)
    mine = median_filter(torch.from_numpy(x), size).numpy()
    for i in range(2):
        for c in range(2):
            np.testing.assert_array_equal(mine[i, c], cv2.medianBlur(x[i, c], size))


def test_warp_cubic_equals_cv2_remap_and_is_exact_at_zero_flow() -> None:
    rng = np.random.default_rng(0)
    h, w = 48, 40
    img = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32) * 255, (0, 0), 1.5)
    flow = rng.normal(0, 3, (2, h, w)).astype(np.float32)  # reaches well outside the image
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    base = torch.from_numpy(np.stack([xs, ys]))
    ref = cv2.remap(img, xs + flow[0], ys + flow[1], cv2.INTER_CUBIC)  # BORDER_CONSTANT 0
    mine = warp_cubic(torch.from_numpy(img)[None, None], torch.from_numpy(flow)[None], base)[0, 0]
    np.testing.assert_allclose(mine.numpy(), ref, atol=2e-3)  # measured max 5e-5 (of 255)
    for shift in (0.5, 1 / 32, 1 / 64 + 1e-4):  # on and off the 1/32 px grid cv2.remap rounds to
        ref = cv2.remap(img, xs + shift, ys - shift, cv2.INTER_CUBIC)
        moved = torch.tensor([shift, -shift]).view(1, 2, 1, 1).expand(1, 2, h, w).float()
        mine = warp_cubic(torch.from_numpy(img)[None, None], moved.contiguous(), base)[0, 0]
        np.testing.assert_allclose(mine.numpy(), ref, atol=2e-3)
    still = warp_cubic(torch.from_numpy(img)[None, None], torch.zeros(1, 2, h, w), base)[0, 0]
    np.testing.assert_array_equal(still.numpy(), img)


def test_centered_gradient_halves_differences_with_replicated_border() -> None:
    img = torch.tensor([[0.0, 1.0, 4.0], [2.0, 3.0, 8.0]])[None]
    dx, dy = centered_gradient(img)[0]
    np.testing.assert_allclose(dx.numpy(), [[0.5, 2.0, 1.5], [0.5, 3.0, 2.5]])
    np.testing.assert_allclose(dy.numpy(), [[1.0, 1.0, 2.0], [1.0, 1.0, 2.0]])


# ---------------------------------------------------------------- the flow vs OpenCV


def test_fixed_iterations_equal_opencv_to_float_rounding() -> None:
    """With no early stop (epsilon tiny) and one warp the two compute the same sequence of
    iterates: 5 scales x 30 iterations with the median filter; 2 warps on 3 scales."""
    f0, f1, _ = _moved_pair(64, shift=(0.5, 0.5), angle=3.0, zoom=1.03)
    for params in (
        dict(epsilon=1e-9, outer_iterations=1, warps=1),
        dict(epsilon=1e-9, outer_iterations=1, warps=2, nscales=3),
        dict(epsilon=1e-9, outer_iterations=1, warps=1, gamma=0.5),
    ):
        epe = _epe(_torch(f0, f1, **params), _opencv(f0, f1, **params))
        assert epe.mean() < 1e-4, params  # measured 4e-7 .. 6e-7 (max 1e-5)


@pytest.mark.parametrize(
    ("name", "size", "motion", "max_mean_epe", "min_within"),
    [
        # measured: mean EPE 0.016 px, max 0.31, within 0.5 px 100 %
        # (OpenCV vs itself with input noise of 1e-4 / 1e-3 grey levels: 0.006 / 0.011)
        ("subpixel translation", 64, dict(shift=(1.3, -0.7)), 0.05, 0.995),
        # measured: mean EPE 0.008 px, max 0.32, within 0.5 px 100 %
        # (OpenCV vs itself with input noise of 1e-4 / 1e-3 grey levels: 0.018 / 0.014)
        ("rotation and zoom", 96, dict(shift=(0.5, 0.5), angle=3.0, zoom=1.03), 0.05, 0.99),
    ],
)
def test_default_flow_agrees_with_opencv(
    name: str, size: int, motion: dict, max_mean_epe: float, min_within: float
) -> None:
    """With the defaults (early stop, 5 warps x 5 scales) float rounding moves the stopping
    iteration and the 1/32 px warp rounding here and there; OpenCV's own flow moves as much
    when its input moves by 1e-4 grey levels. Against the true flow both err alike (interior
    mean 0.0185 vs 0.0180 px, 0.0388 vs 0.0389 px)."""
    f0, f1, _ = _moved_pair(size, **motion)
    epe = _epe(_torch(f0, f1), _opencv(f0, f1))
    assert epe.mean() < max_mean_epe, name
    assert (epe < 0.5).mean() >= min_within, name


def test_identical_frames_give_exactly_zero_flow() -> None:
    f0, _, _ = _moved_pair(48)
    np.testing.assert_array_equal(_torch(f0, f0), 0.0)
    np.testing.assert_array_equal(_opencv(f0, f0), 0.0)


def test_known_translation_is_recovered_in_the_interior() -> None:
    f0, f1, truth = _moved_pair(64, shift=(2.25, -1.5))
    flow = _torch(f0, f1)
    interior = (slice(8, -8), slice(8, -8))
    err = _epe(flow, truth)[interior]
    assert err.mean() < 0.1  # measured 0.011
    np.testing.assert_allclose(flow[interior].reshape(-1, 2).mean(0), (2.25, -1.5), atol=0.05)


def test_batch_equals_single_pairs_and_pairs_stop_on_their_own() -> None:
    pairs = [_moved_pair(48, shift=(0.5 + i, -0.5), angle=2.0 * i, seed=i)[:2] for i in range(3)]
    pairs.append((pairs[0][0], pairs[0][0]))  # converges at once, the others do not
    prev = torch.from_numpy(np.stack([p[0] for p in pairs]))
    nxt = torch.from_numpy(np.stack([p[1] for p in pairs]))
    batch = tvl1_flow(prev, nxt)
    assert batch.shape == (4, 48, 48, 2) and batch.dtype == torch.float32
    for i in range(4):
        single = tvl1_flow(prev[i : i + 1], nxt[i : i + 1])[0]
        torch.testing.assert_close(batch[i], single, atol=1e-5, rtol=0)
    assert batch[3].abs().max() == 0


def test_uint8_and_float_input_agree() -> None:
    f0, f1, _ = _moved_pair(48, shift=(1.0, 0.5))
    a, b = torch.from_numpy(f0)[None], torch.from_numpy(f1)[None]
    torch.testing.assert_close(tvl1_flow(a, b), tvl1_flow(a.float(), b.double()), atol=1e-6, rtol=0)


def test_params_are_checked_and_applied() -> None:
    f0, f1, _ = _moved_pair(32, shift=(1.0, 0.0))
    a, b = torch.from_numpy(f0)[None], torch.from_numpy(f1)[None]
    with pytest.raises(ValueError, match="lambda\n  Extra inputs are not permitted"):
        TVL1Solver(**{"lambda": 0.1})
    with pytest.raises(ValueError, match="median_filtering\n  Value error, expected an odd size"):
        TVL1Solver(median_filtering=4)
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        tvl1_flow(a[0], b[0])
    assert set(TVL1_PARAMS) == set(TVL1Solver.model_fields)
    coarse = tvl1_flow(a, b, settings=TVL1Solver(nscales=1, warps=1, lambda_=0.01))
    assert not torch.equal(coarse, tvl1_flow(a, b))


def test_torch_median_path_gives_the_cv2_median_path_flow(monkeypatch: pytest.MonkeyPatch) -> None:
    """The median other devices use (torch) gives the same flow as the CPU's cv2.medianBlur."""
    import features.tvl1

    f0, f1, _ = _moved_pair(48, shift=(1.0, -0.5), angle=2.0)
    with_cv2 = _torch(f0, f1)
    monkeypatch.setattr(features.tvl1, "_cv2", lambda: None)
    np.testing.assert_array_equal(_torch(f0, f1), with_cv2)


@pytest.mark.cuda
def test_cuda_equals_cpu() -> None:
    """Blocks agree to float rounding; the whole flow as closely as it agrees with OpenCV."""
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.random((2, 2, 40, 33)).astype(np.float32))
    torch.testing.assert_close(median_filter(x.cuda(), 5).cpu(), median_filter(x, 5), atol=0, rtol=0)
    img = torch.from_numpy(_texture(40)[None, None, :, :33].copy())
    flow = torch.from_numpy(rng.normal(0, 2, (1, 2, 40, 33)).astype(np.float32))
    ys, xs = torch.meshgrid(torch.arange(40.0), torch.arange(33.0), indexing="ij")
    base = torch.stack([xs, ys])
    torch.testing.assert_close(
        warp_cubic(img.cuda(), flow.cuda(), base.cuda()).cpu(), warp_cubic(img, flow, base), atol=2e-3, rtol=0
    )
    pairs = [_moved_pair(96, shift=(0.5 + i, -0.5), angle=2.0 * i, zoom=1.02, seed=i)[:2] for i in range(3)]
    prev = torch.from_numpy(np.stack([p[0] for p in pairs]))
    nxt = torch.from_numpy(np.stack([p[1] for p in pairs]))
    cpu = tvl1_flow(prev, nxt).numpy()
    gpu = tvl1_flow(prev.cuda(), nxt.cuda())
    assert gpu.device.type == "cuda"
    epe = _epe(gpu.cpu().numpy(), cpu)
    assert epe.mean() < 0.05 and (epe < 0.5).mean() >= 0.99
    for i in range(3):  # the batch contract holds on the GPU too
        single = tvl1_flow(prev[i : i + 1].cuda(), nxt[i : i + 1].cuda())[0]
        torch.testing.assert_close(gpu[i], single, atol=1e-5, rtol=0)
