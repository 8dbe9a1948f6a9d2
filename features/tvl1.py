"""Batched Dual TV-L1 optical flow in PyTorch, the model and parameters of OpenCV's DualTVL1.

The energy (Zach, Pock, Bischof 2007, "A duality based approach for realtime TV-L1 optical
flow"; the discretisation of Sanchez, Meinhardt-Llopis, Facciolo, IPOL 2013) is

    E(u) = sum |grad u1| + |grad u2| + lambda * |rho(u)|,
    rho(u) = I1(x + u0) + grad I1(x + u0) . (u - u0) - I0(x)      (linearised around u0),

solved by splitting u and an auxiliary v coupled by (u - v)^2 / (2 theta):

    v  = u + TH(rho)                   pointwise thresholding with lambda * theta
    u  = v + theta * div p              primal step
    p  = (p + tau/theta * grad u) / (1 + tau/theta * |grad u|)   dual step (Chambolle)

on a coarse-to-fine pyramid with several warps (new linearisation points u0) per level.

What follows OpenCV (``cv::optflow::DualTVL1OpticalFlow``, checked against its source and,
for the building blocks, against ``cv2`` itself in tests/test_features_tvl1.py):

* Images: uint8 frames are used as floats 0..255.
* Pyramid: level s + 1 is ``cv2.resize`` of level s by ``scale_step`` (INTER_LINEAR,
  half-pixel centres, output size rounded to nearest, source coordinate ``(d + 0.5) / step -
  0.5`` clamped to the image), each level from the previous one; the pyramid stops before the
  first level whose width or height is below 16 px, and at ``nscales`` levels.
* Flow starts at zero on the coarsest level; between levels it is resized (INTER_LINEAR) to
  the next level's exact size and multiplied by ``1 / scale_step`` (u3 of the gamma model is
  resized but not rescaled).
* Each level resets the dual variables p to zero; p carries over between warps of a level.
* Image gradient of I1: centred differences ``0.5 * (I[x+1] - I[x-1])``, with the edge pixel
  replicated at the border (one-sided half differences there), computed once per level.
* Warping: I1 and its gradient are sampled at ``x + u`` by bicubic interpolation (Keys
  kernel, a = -0.75) with zero outside the image (``cv2.remap`` INTER_CUBIC, BORDER_CONSTANT
  0); like ``cv2.remap`` with float maps, the sample position is rounded to 1/32 px first.
* ``rho_c = I1w - I1wx * u1 - I1wy * u2 - I0`` and ``|grad I1w|^2`` are fixed per warp;
  thresholding: ``rho = rho_c + I1wx u1 + I1wy u2 (+ gamma u3)``, v = u + l_t * grad I1w
  where rho < -l_t |grad|^2, u - l_t * grad I1w where rho > l_t |grad|^2, else
  u - rho * grad I1w / |grad|^2, with l_t = lambda * theta.
* Discretisation: forward differences for grad u (zero in the last column / row), and the
  matching backward-difference divergence of p (the negative adjoint).
* Loops per warp: at most ``outer_iterations`` outer iterations, each starting with a
  ``median_filtering`` x ``median_filtering`` median filter of u1 and u2 (``cv2.medianBlur``:
  replicated border; skipped when median_filtering <= 1) followed by at most
  ``inner_iterations`` inner iterations. Both loops stop as soon as an inner iteration's
  ``sum((u_new - u_old)^2)`` over the level is <= ``epsilon^2 * level area``; the dual step of
  that last iteration is still made. The stopping rule is evaluated per frame pair: pairs of
  a batch converge independently, a converged pair leaves the batch until the next warp, so
  a pair's flow does not depend on the other pairs in its batch.
* Defaults: tau 0.25, lambda 0.15, theta 0.3, nscales 5, warps 5, epsilon 0.01, inner 30,
  outer 10, scale_step 0.8, gamma 0, median_filtering 5.

Where it departs, and why:

* Float input is taken as 0..255 (OpenCV multiplies float input by 255, i.e. expects 0..1),
  so that uint8 and float frames of the same values give the same flow.
* The median filter on CPU calls ``cv2.medianBlur`` itself for sizes 3 and 5 (it is 20x
  faster than a torch median); on other devices, and for other sizes, ``median_filter`` does
  the same in torch (equal to it, tested). Any odd size works (OpenCV's float median takes
  3 and 5 only); an even size > 1 is an error, as in OpenCV.
* Floating-point order, for speed: the data step is ``clamp(offset + coef . u)`` with
  ``offset = -rho_c / |grad|^2`` and ``coef = -grad I1w / |grad|^2`` fixed per warp; p is
  kept as ``q = theta * p``; u is updated as ``u + (d + div q)``; the per-iteration change is
  summed pairwise (OpenCV: serially); sqrt instead of hypot; the resize is a matrix product.
  Each differs from OpenCV by float rounding only. A flat pixel (``|grad I1w|^2 = 0``) takes
  the same step as in OpenCV (``-lambda theta sign(rho)``, times a zero gradient unless
  gamma != 0); where ``0 < |grad I1w|^2 <= FLT_EPSILON`` and ``|rho| <= lambda theta
  |grad I1w|^2`` OpenCV makes no step and this code the (tiny) exact one.
* The 1/32 px rounding of warp positions and the median filter turn differences of float
  rounding into occasional larger ones over the up to 1500 iterations per level: for a fixed
  number of iterations (no early stop) and one warp per level (or 2 warps on 3 levels) the
  flow equals OpenCV's to 1e-6 px mean, on synthetic and real frames; with the defaults it
  differs from OpenCV's less than OpenCV's own flow does when its input moves by 1e-3 grey
  levels (tests/test_features_tvl1.py, bench/flow.py).
* ``nscales`` is a per-call limit (OpenCV's object lowers its own ``nscales`` for good after
  a frame smaller than the pyramid, which changes later calls with larger frames).
* ``useInitialFlow`` is not offered.

Tensors are float32 on the frames' device (CPU or CUDA), batched over frame pairs; no Python
loop runs over pixels, and the inner iteration works in place on preallocated buffers
(about 20 tensor passes per iteration). ``torch.compile`` of the iteration was measured
slower than this eager code on a 2-core AVX2 CPU (0.23 vs 0.17 s per 224x224 pair), so it
is not used. Threads: torch's intra-op threads, and OpenCV's for the CPU median.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator

from core.config import Config

__all__ = [
    "MIN_LEVEL_SIZE",
    "WARP_SUBPIXEL_STEPS",
    "TVL1Settings",
    "TVL1Solver",
    "centered_gradient",
    "median_filter",
    "pyramid_sizes",
    "resize_linear",
    "tvl1_flow",
    "warp_cubic",
]

MIN_LEVEL_SIZE = 16
"""Smallest pyramid level width / height in px (OpenCV's rule)."""
WARP_SUBPIXEL_STEPS = 32
"""Sample positions are rounded to 1/32 px before cubic interpolation, as cv2.remap does."""
_TINY = 1e-30  # floor of |grad I1w|^2 in the data step (a normal float32)


class TVL1Settings(Config):
    """The Dual TV-L1 settings a run chooses (params.yaml's ``flow.tvl1``, for "tvl1" and
    "tvl1_torch" alike), named and defaulted as OpenCV's (``features.flow.TVL1_PARAMS``)."""

    tau: float = Field(0.25, gt=0, allow_inf_nan=False)  # time step of the dual update (stable for tau <= 0.25)
    lambda_: float = Field(0.15, allow_inf_nan=False)  # weight of the data term (smaller = smoother flow)
    theta: float = Field(0.3, gt=0, allow_inf_nan=False)  # coupling of u and v
    nscales: int = Field(5, ge=1)  # most pyramid levels
    warps: int = Field(5, ge=1)  # warps (re-linearisations) per level
    epsilon: float = Field(0.01, gt=0, allow_inf_nan=False)  # stop once the rms change of u per iteration is below


class TVL1Solver(TVL1Settings):
    """All of DualTVL1's parameters: the settings, and those a run keeps at OpenCV's defaults
    (no params key; the tests compare with OpenCV under other values)."""

    inner_iterations: int = Field(30, ge=1)  # iterations per outer iteration
    outer_iterations: int = Field(10, ge=1)  # outer iterations (median filter, then inner ones) per warp
    scale_step: float = Field(0.8, gt=0, lt=1)  # pyramid downscaling factor
    gamma: float = Field(0.0, allow_inf_nan=False)  # weight of the illumination term u3 (0: no u3, the usual model)
    median_filtering: int = 5  # median filter size applied to u between outer iterations (<= 1: off)

    @field_validator("median_filtering")
    @classmethod
    def _odd_or_off(cls, size: int) -> int:
        if size > 1 and size % 2 == 0:
            raise ValueError(f"expected an odd size or <= 1 (off), got {size}")
        return size


# ---------------------------------------------------------------- building blocks


def pyramid_sizes(height: int, width: int, nscales: int, scale_step: float) -> list[tuple[int, int]]:
    """(H, W) of each pyramid level, finest first.

    Each level is the previous one times ``scale_step``, rounded to the nearest integer;
    the pyramid ends before a level with a side below ``MIN_LEVEL_SIZE`` or at ``nscales``.
    """
    sizes = [(int(height), int(width))]
    while len(sizes) < nscales:
        h, w = sizes[-1]
        nh, nw = round(h * scale_step), round(w * scale_step)
        if nh < MIN_LEVEL_SIZE or nw < MIN_LEVEL_SIZE:
            break
        sizes.append((nh, nw))
    return sizes


@functools.lru_cache(maxsize=256)
def _linear_weights(src: int, dst: int, scale: float, device: torch.device) -> torch.Tensor:
    """(dst, src) float32 matrix of 1-D linear interpolation with half-pixel centres.

    Output index d reads source coordinate (d + 0.5) * scale - 0.5 (computed in float64,
    then float32, as cv2.resize does), clamped to [0, src - 1].
    """
    pos = ((torch.arange(dst, dtype=torch.float64) + 0.5) * scale - 0.5).to(torch.float32)  # (dst,)
    left = torch.floor(pos)
    frac = pos - left
    left = left.to(torch.int64)
    low, high = left < 0, left >= src - 1
    frac[low | high] = 0.0
    left = torch.where(low, 0, torch.where(high, src - 1, left))
    right = torch.clamp(left + 1, max=src - 1)
    weights = torch.zeros(dst, src, dtype=torch.float32)  # (dst, src)
    rows = torch.arange(dst)
    weights.index_put_((rows, left), 1.0 - frac, accumulate=True)
    weights.index_put_((rows, right), frac, accumulate=True)
    return weights.to(device)


def resize_linear(x: torch.Tensor, size: tuple[int, int], scale: float | None = None) -> torch.Tensor:
    """Bilinear resize of the last two dims, as ``cv2.resize(..., INTER_LINEAR)`` on floats.

    Args:
        x: (..., H, W) float32 tensor.
        size: output (H', W').
        scale: source px per output px on both axes (``1 / fx`` of a ``cv2.resize`` call
            with fx = fy); None: H / H' and W / W' (a call with an explicit output size).

    Returns:
        (..., H', W') float32 tensor.
    """
    h, w = x.shape[-2:]
    out_h, out_w = size
    sy = h / out_h if scale is None else scale
    sx = w / out_w if scale is None else scale
    ry = _linear_weights(h, out_h, float(sy), x.device)  # (H', H)
    rx = _linear_weights(w, out_w, float(sx), x.device)  # (W', W)
    return torch.matmul(torch.matmul(ry, x), rx.T)  # (..., H', W')


def centered_gradient(img: torch.Tensor) -> torch.Tensor:
    """Centred differences 0.5 * (I[x+1] - I[x-1]) with the edge pixel replicated.

    Args:
        img: (B, H, W) float32.

    Returns:
        (B, 2, H, W) float32: d/dx, d/dy.
    """
    padded = F.pad(img[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]  # (B, H+2, W+2)
    dx = (padded[:, 1:-1, 2:] - padded[:, 1:-1, :-2]) * 0.5  # (B, H, W)
    dy = (padded[:, 2:, 1:-1] - padded[:, :-2, 1:-1]) * 0.5  # (B, H, W)
    return torch.stack([dx, dy], dim=1)


def median_filter(x: torch.Tensor, size: int, *, chunk: int = 8) -> torch.Tensor:
    """size x size median of each (H, W) plane, replicated border (``cv2.medianBlur``).

    Args:
        x: (B, C, H, W) float32.
        size: odd filter size.
        chunk: planes of B processed at a time (bounds the size * size-fold temporary).

    Returns:
        (B, C, H, W) float32.
    """
    r = size // 2
    out = torch.empty_like(x)
    for start in range(0, x.shape[0], chunk):
        part = x[start : start + chunk]  # (b, C, H, W)
        padded = F.pad(part, (r, r, r, r), mode="replicate")  # (b, C, H+2r, W+2r)
        windows = padded.unfold(2, size, 1).unfold(3, size, 1)  # (b, C, H, W, size, size)
        out[start : start + chunk] = windows.reshape(*part.shape, size * size).median(dim=-1).values
    return out


def _dyadic_size(n: int) -> int:
    """Smallest 2^k + 1 >= n."""
    return 2 ** math.ceil(math.log2(max(n - 1, 1))) + 1


def warp_cubic(images: torch.Tensor, flow: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """Sample images at x + flow: bicubic (a = -0.75), zero outside, positions on a 1/32 grid.

    Equals ``cv2.remap(img, x + u1, y + u2, INTER_CUBIC)`` (BORDER_CONSTANT 0) to float
    rounding. ``grid_sample`` works in coordinates normalised by (size - 1); the planes are
    zero-padded on the right and bottom to 2^k + 1 px so that this scale is a power of two
    and a position on the 1/32 grid survives normalisation exactly (zero flow gives the
    image itself, bit for bit; the padding is zero, as outside the image).

    Args:
        images: (B, K, H, W) float32 planes sampled together.
        flow: (B, 2, H, W) float32 displacement (dx, dy) in px.
        base: (2, H, W) float32 pixel coordinates (x, y).

    Returns:
        (B, K, H, W) float32.
    """
    h, w = images.shape[-2:]
    hp, wp = _dyadic_size(h), _dyadic_size(w)
    padded = F.pad(images, (0, wp - w, 0, hp - h))  # (B, K, Hp, Wp)
    pos = torch.round((flow + base) * WARP_SUBPIXEL_STEPS) * (1.0 / WARP_SUBPIXEL_STEPS)
    scale = torch.tensor([2.0 / (wp - 1), 2.0 / (hp - 1)], device=flow.device)  # powers of 2
    grid = (pos * scale[:, None, None] - 1.0).permute(0, 2, 3, 1)  # (B, H, W, 2)
    return F.grid_sample(padded, grid, mode="bicubic", padding_mode="zeros", align_corners=True)


# ---------------------------------------------------------------- the iteration


def _step(
    u: torch.Tensor,
    q: torch.Tensor,
    coef: torch.Tensor,
    offset: torch.Tensor,
    step: torch.Tensor,
    delta: torch.Tensor,
    du: torch.Tensor,
    norm: torch.Tensor,
    l_t: float,
    tau: float,
    taut: float,
) -> torch.Tensor:
    """One inner iteration, in place on u and q; returns sum((u_new - u_old)^2) per pair.

    The data step ``clamp(-rho / |grad I1w|^2, -l_t, l_t)`` is evaluated as
    ``clamp(offset + sum_c coef_c * u_c)`` with offset = -rho_c / |grad|^2 and
    coef = -(I1wx, I1wy) / |grad|^2 fixed per warp; the dual variable is kept as
    q = theta * p, so that theta * div p = div q and the dual step reads
    q = (q + tau * grad u) / (1 + tau / theta * |grad u|).

    Args:
        u: (b, C, H, W) flow components u1, u2 (and u3), updated.
        q: (b, C, 2, H, W) theta * dual variables, updated.
        coef: (b, C + C, H, W) -(I1wx, I1wy[, gamma]) / |grad|^2, then (I1wx, I1wy[, gamma]).
        offset: (b, H, W) -rho_c / |grad|^2 (|grad|^2 floored at 1e-30, as in coef).
        step, delta, du, norm: scratch (b, H, W), (b, C, H, W), (b, C, 2, H, W) and
            (b, C, H, W); ``du`` holds zeros in its last column (x) and last row (y).
        l_t, tau, taut: lambda * theta, tau, tau / theta.

    Returns:
        (b,) float32.
    """
    channels = u.shape[1]
    # data step: clamp(-rho / |grad|^2, -l_t, l_t)
    torch.addcmul(offset, coef[:, 0], u[:, 0], out=step)
    for c in range(1, channels):
        step.addcmul_(coef[:, c], u[:, c])
    step.clamp_(-l_t, l_t)  # (b, H, W)
    # theta * div p = div q: backward differences, q taken as 0 before the first column / row
    torch.add(q[:, :, 0], q[:, :, 1], out=delta)  # (b, C, H, W)
    delta[..., 1:].sub_(q[:, :, 0, :, :-1])
    delta[..., 1:, :].sub_(q[:, :, 1, :-1, :])
    # u_new - u = (v - u) + theta * div p, v - u = step * grad I1w
    delta.addcmul_(coef[:, channels:], step[:, None])
    u.add_(delta)
    flat = delta.reshape(delta.shape[0], 1, -1)  # (b, 1, C*H*W)
    error = torch.bmm(flat, flat.transpose(1, 2)).reshape(-1)  # (b,)
    # forward differences of the new u (last column / row stay 0)
    torch.sub(u[..., 1:], u[..., :-1], out=du[:, :, 0, :, :-1])
    torch.sub(u[..., 1:, :], u[..., :-1, :], out=du[:, :, 1, :-1, :])
    # dual step
    torch.mul(du[:, :, 0], du[:, :, 0], out=norm)  # (b, C, H, W)
    norm.addcmul_(du[:, :, 1], du[:, :, 1]).sqrt_().mul_(taut).add_(1.0)
    q.add_(du, alpha=tau).div_(norm[:, :, None])
    return error


class _Iterator:
    """Runs inner iterations on the active pairs of a batch with reused scratch buffers."""

    def __init__(self, settings: TVL1Solver) -> None:
        self.l_t = float(settings.lambda_ * settings.theta)
        self.tau = float(settings.tau)
        self.taut = float(settings.tau / settings.theta)
        self.buffers: tuple[torch.Tensor, ...] = ()

    def prepare(self, u: torch.Tensor) -> None:
        """Allocate scratch for a level of u's shape (b, C, H, W)."""
        b, c, h, w = u.shape
        self.buffers = (
            u.new_empty(b, h, w),  # step
            u.new_empty(b, c, h, w),  # delta
            u.new_zeros(b, c, 2, h, w),  # du (zero last column / row)
            u.new_empty(b, c, h, w),  # norm
        )

    def __call__(self, state: _WarpState) -> torch.Tensor:
        """One iteration of the active pairs; returns their errors (b,)."""
        b = state.u.shape[0]
        scratch = [buf[:b] for buf in self.buffers]
        return _step(state.u, state.q, state.coef, state.offset, *scratch, self.l_t, self.tau, self.taut)


@dataclass
class _WarpState:
    """The pairs of a batch still iterating in the current warp (a subset, compacted)."""

    index: torch.Tensor  # (b,) positions in the full batch
    u: torch.Tensor  # (b, C, H, W)
    q: torch.Tensor  # (b, C, 2, H, W)
    coef: torch.Tensor  # (b, 2C, H, W)
    offset: torch.Tensor  # (b, H, W)

    def keep(self, mask: torch.Tensor) -> None:
        """Drop the pairs where mask is False."""
        for name in ("index", "u", "q", "coef", "offset"):
            setattr(self, name, getattr(self, name)[mask])


def _median_inplace(u: torch.Tensor, size: int) -> None:
    """Median-filter u1 and u2 of (b, C, H, W) u in place (``cv2.medianBlur`` semantics).

    On CPU, with size 3 or 5 and cv2 importable, each plane goes through cv2.medianBlur
    itself (its float path, 20x faster than the torch one); elsewhere ``median_filter``.
    """
    if u.device.type == "cpu" and size in (3, 5) and u.is_contiguous() and _cv2() is not None:
        cv2 = _cv2()
        planes = u.numpy()  # (b, C, H, W), shares memory
        for i in range(planes.shape[0]):
            for c in range(2):
                cv2.medianBlur(planes[i, c], size, dst=planes[i, c])
        return
    u[:, :2] = median_filter(u[:, :2], size)


@functools.lru_cache(maxsize=1)
def _cv2() -> Any:
    try:
        import cv2
    except ImportError:  # pragma: no cover - cv2 is a project dependency
        return None
    return cv2


def _solve_level(
    i0: torch.Tensor,
    i1: torch.Tensor,
    u: torch.Tensor,
    settings: TVL1Solver,
    iterate: _Iterator,
) -> torch.Tensor:
    """All warps of one pyramid level.

    Args:
        i0, i1: (B, H, W) float32 level images.
        u: (B, C, H, W) float32 initial flow (u3 as channel 2 when gamma != 0).
        settings: the parameters.
        iterate: the inner-iteration runner.

    Returns:
        (B, C, H, W) float32 flow of this level.
    """
    batch, channels, h, w = u.shape
    u = u.contiguous().clone()
    q = u.new_zeros(batch, channels, 2, h, w)  # (B, C, 2, H, W) theta * p
    stack = torch.cat([i1[:, None], centered_gradient(i1)], dim=1)  # (B, 3, H, W): I1, I1x, I1y
    ys, xs = torch.meshgrid(
        torch.arange(h, device=u.device, dtype=torch.float32),
        torch.arange(w, device=u.device, dtype=torch.float32),
        indexing="ij",
    )
    base = torch.stack([xs, ys])  # (2, H, W)
    eps = torch.tensor(settings.epsilon**2 * h * w, dtype=torch.float32).item()
    med = settings.median_filtering
    iterate.prepare(u)
    for _ in range(settings.warps):
        warped = warp_cubic(stack, u[:, :2], base)  # (B, 3, H, W)
        i1w, i1wx, i1wy = warped[:, 0], warped[:, 1], warped[:, 2]  # (B, H, W)
        grad = i1wx * i1wx + i1wy * i1wy  # (B, H, W) |grad I1w|^2
        rho_c = i1w - i1wx * u[:, 0] - i1wy * u[:, 1] - i0  # (B, H, W)
        # 1 / |grad|^2; a flat pixel gets 1e30, so that the clamp gives -l_t * sign(rho)
        neg_inv = -1.0 / grad.clamp_min(_TINY)  # (B, H, W)
        slopes = [i1wx, i1wy] + ([torch.full_like(i1wx, settings.gamma)] if channels > 2 else [])
        slope = torch.stack(slopes, dim=1)  # (B, C, H, W)
        coef = torch.cat([slope * neg_inv[:, None], slope], dim=1)  # (B, 2C, H, W)
        state = _WarpState(torch.arange(batch, device=u.device), u, q, coef, rho_c * neg_inv)
        for _outer in range(settings.outer_iterations):
            if med > 1:
                _median_inplace(state.u, med)
            for _inner in range(settings.inner_iterations):
                error = iterate(state)  # (b,)
                done = error <= eps  # (b,)
                if bool(done.any()):
                    u[state.index[done]] = state.u[done]
                    q[state.index[done]] = state.q[done]
                    state.keep(~done)
                    if state.index.numel() == 0:
                        break
            if state.index.numel() == 0:
                break
        if state.index.numel() and state.u is not u:  # compacted: write back
            u[state.index] = state.u
            q[state.index] = state.q
    return u


def _as_frames(x: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"tvl1_flow {name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 3:
        raise ValueError(f"tvl1_flow {name}: expected (B, H, W) frames, got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        return x.to(torch.float32)
    if not x.is_floating_point():
        raise ValueError(f"tvl1_flow {name}: expected uint8 or float (0..255) frames, got {x.dtype}")
    return x.to(torch.float32)


def tvl1_flow(
    prev: torch.Tensor,
    nxt: torch.Tensor,
    *,
    settings: TVL1Solver = TVL1Solver(),
) -> torch.Tensor:
    """Dual TV-L1 flow of a batch of frame pairs, as OpenCV's DualTVL1 computes it.

    Args:
        prev: (B, H, W) first frames, uint8 or float 0..255, on any device.
        nxt: (B, H, W) second frames, same shape and device.
        settings: the parameters (the defaults: OpenCV's).

    Returns:
        (B, H, W, 2) float32 flow in px on the frames' device: channel 0 dx, channel 1 dy,
        prev(y, x) ~ nxt(y + dy, x + dx).

    Raises:
        ValueError: frames not (B, H, W) of one shape, or smaller than 2 x 2.
    """
    i0, i1 = _as_frames(prev, "prev"), _as_frames(nxt, "nxt")
    if i0.shape != i1.shape or i0.device != i1.device:
        raise ValueError(
            f"tvl1_flow: prev {tuple(i0.shape)} on {i0.device} and nxt {tuple(i1.shape)} on {i1.device} differ"
        )
    batch, height, width = i0.shape
    if height < 2 or width < 2:
        raise ValueError(f"tvl1_flow: frames of {height}x{width} px; expected at least 2x2")
    channels = 3 if settings.gamma != 0 else 2
    if batch == 0:
        return i0.new_zeros(0, height, width, 2)
    with torch.no_grad():
        sizes = pyramid_sizes(height, width, settings.nscales, settings.scale_step)
        levels = [torch.stack([i0, i1], dim=1)]  # (B, 2, H, W) per level
        for size in sizes[1:]:
            levels.append(resize_linear(levels[-1], size, scale=1.0 / settings.scale_step))
        iterate = _Iterator(settings)
        u = i0.new_zeros(batch, channels, *sizes[-1])  # (B, C, h, w) coarsest
        for s in range(len(sizes) - 1, -1, -1):
            u = _solve_level(levels[s][:, 0], levels[s][:, 1], u, settings, iterate)
            if s:
                u = resize_linear(u, sizes[s - 1])  # (B, C, H', W')
                u[:, :2] *= 1.0 / settings.scale_step
        return u[:, :2].permute(0, 2, 3, 1).contiguous()  # (B, H, W, 2)
