"""Detector network: local attention sees its window only, padding never leaks, head init."""

from __future__ import annotations

import math

import pytest
import torch

from detector.config import DetectorConfig
from detector.model import DetectorNet, LocalSelfAttention


def _dense_band_attention(attn: LocalSelfAttention, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Reference: full (T, T) attention with everything outside |i - j| <= w // 2 or padded masked."""
    batch, length, dim = x.shape
    heads = attn.num_heads
    q, k, v = attn.qkv(x).view(batch, length, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
    scores = q @ k.transpose(-1, -2) / math.sqrt(dim // heads)  # (B, H, T, T)
    offset = torch.arange(length)[None, :] - torch.arange(length)[:, None]  # (T, T) j - i
    allowed = (offset.abs() <= attn.window // 2)[None, None] & valid[:, None, None, :]
    out = scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ v  # (B, H, T, d)
    return attn.proj(out.transpose(1, 2).reshape(batch, length, dim))


def test_local_attention_equals_banded_dense_attention():
    torch.manual_seed(0)
    attn = LocalSelfAttention(dim=8, num_heads=2, window=3, dropout=0.0).double()
    x = torch.randn(2, 7, 8, dtype=torch.float64)
    valid = torch.tensor([[True] * 7, [True] * 5 + [False] * 2])
    out = attn(x, valid)
    reference = _dense_band_attention(attn, x, valid)
    torch.testing.assert_close(out[0], reference[0])
    torch.testing.assert_close(out[1, :5], reference[1, :5])
    # location 6 changes only the outputs of locations 5 and 6 (window 3: |i - j| <= 1)
    moved = x.clone()
    moved[0, 6] += 1.0
    changed = (attn(moved, valid)[0] - out[0]).abs().sum(dim=1) > 0
    assert changed.tolist() == [False] * 5 + [True, True]


def _config(**overrides) -> DetectorConfig:
    base = dict(feature_dim=6, embed_dim=8, num_heads=2, window=3, num_levels=3, dropout=0.0, device="cpu")
    return DetectorConfig(**{**base, **overrides})


def test_padding_does_not_change_a_videos_outputs():
    """A 5-snippet video alone (padded to 8) and in a batch padded to 12 beside a longer video."""
    torch.manual_seed(0)
    model = DetectorNet(config=_config(), num_classes=3).eval()
    video = torch.randn(5, 6)
    alone = torch.zeros(1, 8, 6)
    alone[0, :5] = video
    alone_mask = torch.arange(8)[None] < 5
    batch = torch.randn(2, 12, 6) * 5  # garbage in the padding
    batch[0, :5] = video
    batch_mask = torch.stack([torch.arange(12) < 5, torch.arange(12) < 11])
    with torch.no_grad():
        single, padded = model(alone, alone_mask), model(batch, batch_mask)
    # locations: 8 + 4 + 2 alone, 12 + 6 + 3 in the batch; valid: 5 + 3 + 2 (i 2^l < 5)
    assert single.mask[0].sum() == padded.mask[0].sum() == 10
    torch.testing.assert_close(
        single.cls_logits[0][single.mask[0]], padded.cls_logits[0][padded.mask[0]], rtol=1e-5, atol=1e-6
    )
    torch.testing.assert_close(
        single.regression[0][single.mask[0]], padded.regression[0][padded.mask[0]], rtol=1e-5, atol=1e-6
    )
    # distances are softplus'd: positive everywhere valid (a ReLU zeroes about half of them at
    # initialisation, and a zeroed one has no gradient), zero at padding
    assert (padded.regression[padded.mask] > 0).all()
    assert (padded.regression[~padded.mask] == 0).all() and (padded.cls_logits[~padded.mask] == 0).all()


def test_heads_start_at_the_prior_probability_and_lengths_must_fit_the_pyramid():
    model = DetectorNet(config=_config(prior_prob=0.01), num_classes=3)
    torch.testing.assert_close(torch.sigmoid(model.cls_head.out.bias), torch.full((3,), 0.01))
    assert model.scales.tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="multiple of 4"):
        model(torch.zeros(1, 6, 6), torch.ones(1, 6, dtype=torch.bool))
