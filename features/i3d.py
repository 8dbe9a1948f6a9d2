"""Inception-v1 I3D (Carreira & Zisserman, 2017), layer for layer as DeepMind's kinetics-i3d.

Conventions kept from the TensorFlow original so that its weights give the same numbers:
- "SAME" padding for convolutions and max-pools: output size ceil(in / stride), and when the
  total padding is odd the extra element goes on the end side.
- Batch norm with eps 1e-3 and no scale parameter (gamma fixed to 1, beta learned).
- Logits head: average pool (2, 7, 7) with stride 1 and VALID padding, a 1x1x1 convolution with
  bias, then the mean over time.

Inputs are (B, C, T, H, W) tensors in [-1, 1]; C = 3 for RGB, 2 for optical flow.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "BN_EPS",
    "FEATURE_DIM",
    "I3D",
    "I3DInference",
    "InceptionModule",
    "SamePadMaxPool3d",
    "ScalelessBatchNorm3d",
    "Unit3D",
    "default_inference_dtype",
    "fuse_for_inference",
    "prepare_for_inference",
    "same_padding",
]

BN_EPS = 1e-3
FEATURE_DIM = 1024
Triple = tuple[int, int, int]


def same_padding(*, size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding of one dimension.

    Args:
        size: input length along the dimension.
        kernel: kernel length.
        stride: stride.

    Returns:
        (before, after) padding; output length is ceil(size / stride) and the odd element of
        the total padding, if any, goes after.
    """
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _triple(value: int | Sequence[int]) -> Triple:
    if isinstance(value, int):
        return (value, value, value)
    t, h, w = value
    return (int(t), int(h), int(w))


class ScalelessBatchNorm3d(nn.Module):
    """Batch norm without the scale parameter (Sonnet v1 default used by kinetics-i3d).

    y = (x - running_mean) / sqrt(running_var + eps) + bias at inference.
    """

    def __init__(self, channels: int, *, eps: float = BN_EPS, momentum: float = 0.001) -> None:
        """Args:
        channels: number of channels C of the (B, C, T, H, W) input.
        eps: variance epsilon.
        momentum: running-statistics update rate in training (Sonnet's decay 0.999).
        """
        super().__init__()
        self.eps = eps
        self.momentum = momentum
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(
            x,
            self.running_mean,
            self.running_var,
            weight=None,
            bias=self.bias,
            training=self.training,
            momentum=self.momentum,
            eps=self.eps,
        )


class Unit3D(nn.Module):
    """Conv3d with TF "SAME" padding, optional scale-less batch norm, optional ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel: int | Sequence[int] = 1,
        stride: int | Sequence[int] = 1,
        batch_norm: bool = True,
        bias: bool = False,
        relu: bool = True,
    ) -> None:
        """Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel: (T, H, W) kernel size or one int for all three.
        stride: (T, H, W) stride or one int for all three.
        batch_norm: follow the convolution with `ScalelessBatchNorm3d`.
        bias: give the convolution a bias (DeepMind uses one only where there is no BN).
        relu: apply ReLU at the end.
        """
        super().__init__()
        self.kernel = _triple(kernel)
        self.stride = _triple(stride)
        # Stride 1 with odd kernels pads symmetrically whatever the input size: let the
        # convolution pad by itself (no copy). Otherwise the padding depends on the input size.
        self.static_padding = all(s == 1 for s in self.stride) and all(k % 2 == 1 for k in self.kernel)
        padding = tuple(k // 2 for k in self.kernel) if self.static_padding else 0
        self.conv3d = nn.Conv3d(in_channels, out_channels, self.kernel, stride=self.stride, padding=padding, bias=bias)
        self.bn: nn.Module = ScalelessBatchNorm3d(out_channels) if batch_norm else nn.Identity()
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.static_padding:
            pads: list[int] = []
            # F.pad takes (W, H, T) pairs, last dimension first.
            for size, k, s in zip(reversed(x.shape[2:]), reversed(self.kernel), reversed(self.stride)):
                pads.extend(same_padding(size=size, kernel=k, stride=s))
            x = F.pad(x, pads)
        x = self.bn(self.conv3d(x))
        return F.relu(x, inplace=True) if self.relu else x


class SamePadMaxPool3d(nn.Module):
    """3-D max-pool with TF "SAME" padding.

    TF pads max-pools with -inf, (before, after) with after - before in {0, 1}. With stride >= 2
    (or symmetric padding) this equals PyTorch's implicit -inf padding of `before` on both sides
    plus `ceil_mode`, which lets the last window run past the end, so no padded copy is made.
    Stride 1 with an even window pads explicitly.
    """

    def __init__(self, kernel: int | Sequence[int], stride: int | Sequence[int]) -> None:
        """Args:
        kernel: (T, H, W) window or one int for all three.
        stride: (T, H, W) stride or one int for all three.
        """
        super().__init__()
        self.kernel = _triple(kernel)
        self.stride = _triple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = [
            same_padding(size=size, kernel=k, stride=s) for size, k, s in zip(x.shape[2:], self.kernel, self.stride)
        ]  # (before, after) for T, H, W
        if all(before == after or s > 1 for (before, after), s in zip(pads, self.stride)):
            before = tuple(b for b, _ in pads)
            return F.max_pool3d(x, self.kernel, self.stride, padding=before, ceil_mode=True)
        flat = [p for pair in reversed(pads) for p in pair]  # F.pad order: W, H, T
        return F.max_pool3d(F.pad(x, flat, value=float("-inf")), self.kernel, self.stride)


class InceptionModule(nn.Module):
    """Inception block: 1x1 | 1x1->3x3 | 1x1->3x3 | maxpool->1x1, concatenated on channels."""

    def __init__(self, in_channels: int, out_channels: Sequence[int]) -> None:
        """Args:
        in_channels: input channels.
        out_channels: the six widths (b0, b1a, b1b, b2a, b2b, b3b) as in DeepMind's code.
        """
        super().__init__()
        if len(out_channels) != 6:
            raise ValueError(f"InceptionModule needs 6 branch widths, got {list(out_channels)}")
        c0, c1a, c1b, c2a, c2b, c3b = out_channels
        self.b0 = Unit3D(in_channels, c0)
        self.b1a = Unit3D(in_channels, c1a)
        self.b1b = Unit3D(c1a, c1b, kernel=3)
        self.b2a = Unit3D(in_channels, c2a)
        self.b2b = Unit3D(c2a, c2b, kernel=3)
        self.b3a = SamePadMaxPool3d(3, 1)
        self.b3b = Unit3D(in_channels, c3b)
        self.out_channels = c0 + c1b + c2b + c3b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


# (name, in_channels, six branch widths) of the Inception blocks, in order.
_MIXED: tuple[tuple[str, int, tuple[int, ...]], ...] = (
    ("Mixed_3b", 192, (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", 256, (128, 128, 192, 32, 96, 64)),
    ("Mixed_4b", 480, (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", 512, (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", 512, (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", 512, (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", 528, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5b", 832, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", 832, (384, 192, 384, 48, 128, 128)),
)

# Every layer up to Mixed_5c, in order.
_TRUNK: tuple[str, ...] = (
    "Conv3d_1a_7x7",
    "MaxPool3d_2a_3x3",
    "Conv3d_2b_1x1",
    "Conv3d_2c_3x3",
    "MaxPool3d_3a_3x3",
    "Mixed_3b",
    "Mixed_3c",
    "MaxPool3d_4a_3x3",
    *(name for name, _, _ in _MIXED[2:7]),
    "MaxPool3d_5a_2x2",
    "Mixed_5b",
    "Mixed_5c",
)


class I3D(nn.Module):
    """Inception-v1 I3D up to Mixed_5c, plus DeepMind's Kinetics logits head.

    Module names follow DeepMind's end points (Conv3d_1a_7x7, ..., Mixed_5c) and the branch
    names of piergiaj/pytorch-i3d (b0, b1a, b1b, b2a, b2b, b3b), so state-dict keys read e.g.
    `Mixed_3b.b1b.conv3d.weight`, `Mixed_3b.b1b.bn.running_var`, `logits.conv3d.bias`.
    """

    def __init__(self, in_channels: int = 3, *, num_classes: int = 400) -> None:
        """Args:
        in_channels: 3 for RGB, 2 for optical flow.
        num_classes: outputs of the logits head (400 for Kinetics-400).
        """
        super().__init__()
        if in_channels not in (2, 3):
            raise ValueError(f"I3D in_channels must be 3 (RGB) or 2 (flow), got {in_channels}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.Conv3d_1a_7x7 = Unit3D(in_channels, 64, kernel=7, stride=2)
        self.MaxPool3d_2a_3x3 = SamePadMaxPool3d((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, kernel=3)
        self.MaxPool3d_3a_3x3 = SamePadMaxPool3d((1, 3, 3), (1, 2, 2))
        for name, cin, widths in _MIXED[:2]:
            self.add_module(name, InceptionModule(cin, widths))
        self.MaxPool3d_4a_3x3 = SamePadMaxPool3d(3, 2)
        for name, cin, widths in _MIXED[2:7]:
            self.add_module(name, InceptionModule(cin, widths))
        self.MaxPool3d_5a_2x2 = SamePadMaxPool3d(2, 2)
        for name, cin, widths in _MIXED[7:]:
            self.add_module(name, InceptionModule(cin, widths))
        self.logits = Unit3D(FEATURE_DIM, num_classes, batch_norm=False, bias=True, relu=False)

    def mixed_5c(self, x: torch.Tensor) -> torch.Tensor:
        """Args:
            x: (B, C, T, H, W) in [-1, 1].

        Returns:
            Mixed_5c activations (B, 1024, ceil(T/8), ceil(H/32), ceil(W/32)).
        """
        if x.dim() != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"I3D expects input (B, {self.in_channels}, T, H, W), got {tuple(x.shape)}")
        for name in _TRUNK:
            x = getattr(self, name)(x)
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Args:
            x: (B, C, T, H, W) in [-1, 1].

        Returns:
            (B, 1024): Mixed_5c averaged over time and space (in float32 when x is lower precision).
        """
        return self.mixed_5c(x).float().mean(dim=(2, 3, 4))

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Args:
            x: (B, C, T, H, W) in [-1, 1]; T >= 9 and H, W >= 193 so the head's VALID pool fits.

        Returns:
            (B, num_classes) logits: avg pool (2, 7, 7) VALID, 1x1x1 conv, mean over time (and
            over space, which is a single position for 224x224 inputs as in DeepMind's squeeze).
        """
        top = self.mixed_5c(x)  # (B, 1024, ceil(T/8), ceil(H/32), ceil(W/32))
        if top.shape[2] < 2 or top.shape[3] < 7 or top.shape[4] < 7:
            raise ValueError(
                f"I3D logits need T >= 9 and H, W >= 193 for the (2, 7, 7) head, got input {tuple(x.shape)}"
            )
        pooled = F.avg_pool3d(top, (2, 7, 7), stride=1)  # (B, 1024, T', H', W')
        return self.logits(pooled).float().mean(dim=(2, 3, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same as `forward_features`."""
        return self.forward_features(x)


def fuse_for_inference(model: I3D) -> I3D:
    """Fold every batch norm into its convolution (weight scale and bias); the input is untouched.

    Args:
        model: an I3D; its running statistics are used, so the result computes the eval mode.

    Returns:
        A new I3D in eval mode whose Unit3D blocks have conv-with-bias and no batch norm.
    """
    fused = copy.deepcopy(model).eval()
    for unit in fused.modules():
        if not isinstance(unit, Unit3D) or not isinstance(unit.bn, ScalelessBatchNorm3d):
            continue
        conv, bn = unit.conv3d, unit.bn
        with torch.no_grad():
            inv_std = torch.rsqrt(bn.running_var.double() + bn.eps)  # (C_out,)
            weight = conv.weight.double() * inv_std.view(-1, 1, 1, 1, 1)
            bias = bn.bias.double() - bn.running_mean.double() * inv_std
            if conv.bias is not None:
                bias = bias + conv.bias.double() * inv_std
        new_conv = nn.Conv3d(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            bias=True,
            device=conv.weight.device,
            dtype=conv.weight.dtype,
        )
        with torch.no_grad():
            new_conv.weight.copy_(weight)
            new_conv.bias.copy_(bias)
        unit.conv3d = new_conv
        unit.bn = nn.Identity()
    return fused


def default_inference_dtype(device: torch.device | str) -> torch.dtype:
    """The fastest dtype that keeps features within cosine 0.999 of float32.

    Args:
        device: where the model will run.

    Returns:
        torch.bfloat16 on CUDA with bf16 support and on CPUs with native bf16 (AVX512-BF16 /
        AMX), torch.float32 otherwise.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device.type == "cpu" and torch.backends.mkldnn.is_available():
        return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else torch.float32
    return torch.float32


def default_batch(dtype: torch.dtype, device: torch.device | str) -> int:
    """Snippets per forward pass that extract fastest for a precision and device.

    Measured with `bench/i3d.py` (frames/s by batch 1 / 4 / 8): bf16 on an AMX CPU
    173 / 128 / 101 at crop 224, so one snippet at a time; float32 on an AVX2 CPU
    45 / 80 / 85 at crop 112, so 8; a GPU wants large batches.

    Args:
        dtype: the inference dtype (see `default_inference_dtype`).
        device: where the model runs.

    Returns:
        32 on CUDA, 1 for bf16 on a CPU, 8 for float32 on a CPU.
    """
    if torch.device(device).type == "cuda":
        return 32
    return 1 if dtype == torch.bfloat16 else 8


class I3DInference(nn.Module):
    """A fused I3D in the layout and precision chosen for extraction; call it on raw snippets.

    Inputs are converted to the model's device, dtype and channels-last-3d layout; outputs are
    float32 on the model's device. Runs under `torch.inference_mode`.
    """

    def __init__(self, model: I3D, *, dtype: torch.dtype, device: torch.device, channels_last: bool) -> None:
        """Args:
        model: an I3D already fused, converted and moved (see `prepare_for_inference`).
        dtype: the model's parameter dtype.
        device: the model's device.
        channels_last: whether inputs are laid out channels-last-3d.
        """
        super().__init__()
        self.model = model
        self.dtype = dtype
        self.device = device
        self.memory_format = torch.channels_last_3d if channels_last else torch.contiguous_format

    def _convert(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(device=self.device, dtype=self.dtype, memory_format=self.memory_format)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Args:
            x: (B, C, T, H, W) snippets in [-1, 1], any float dtype, any device.

        Returns:
            (B, 1024) float32 features on the model's device.
        """
        with torch.inference_mode():
            return self.model.forward_features(self._convert(x))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Args:
            x: (B, C, T, H, W) clip in [-1, 1].

        Returns:
            (B, num_classes) float32 logits on the model's device.
        """
        with torch.inference_mode():
            return self.model.forward_logits(self._convert(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same as `features`."""
        return self.features(x)


def prepare_for_inference(
    model: I3D,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str = "cpu",
    channels_last: bool = True,
) -> I3DInference:
    """The extraction path: BN folded, eval mode, channels-last-3d, reduced precision.

    Args:
        model: a loaded I3D (left unchanged).
        dtype: parameter and activation dtype; None picks `default_inference_dtype(device)`.
        device: target device.
        channels_last: use the channels-last-3d layout (fastest with oneDNN and cuDNN).

    Returns:
        An `I3DInference` wrapping the fused model.
    """
    device = torch.device(device)
    dtype = default_inference_dtype(device) if dtype is None else dtype
    memory_format = torch.channels_last_3d if channels_last else torch.contiguous_format
    fused = fuse_for_inference(model).to(device=device, dtype=dtype, memory_format=memory_format)
    fused.requires_grad_(False)
    return I3DInference(fused, dtype=dtype, device=device, channels_last=channels_last)
