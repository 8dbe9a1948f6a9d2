"""The detector network, after ActionFormer's design (sizes: `detector.config.DetectorConfig`).

    features (B, T, F) --projection--> (B, T, D) --stem blocks--> level 0 (stride 1)
        --[max-pool by 2, transformer block]--> level 1 (stride 2) --> ... --> level L-1
    each level --LayerNorm--> shared heads: classification logits (B, T_l, C) and
        regression distances (B, T_l, 2) = softplus(scale_l * conv(...)), in units of the stride

- Projection: two 1-D convs (kernel 3) to D, each followed by LayerNorm and ReLU.
- Transformer block (pre-LayerNorm): x + Dropout(LocalAttention(LN(x))), then
  x + Dropout(MLP(LN(x))) with MLP = Linear(D, mlp_ratio D), GELU, Dropout, Linear(mlp_ratio D, D).
- Local attention: multi-head self-attention in which location i sees the locations j with
  |i - j| <= window // 2 of its own level that are not padding. It is computed on the band
  only (keys and values unfolded into (T, window) windows): O(T window D), not O(T^2 D),
  which keeps THUMOS'14's T ~ 2,300 cheap.
- Downsampling: max-pooling of non-overlapping pairs, so location i of level l covers snippets
  [i 2^l, (i + 1) 2^l) and its centre is (i + 0.5) 2^l (`detector.targets.pyramid_points`).
  Padded positions take -inf before the max, so they never win it.
- Heads (shared across levels): (head_layers - 1) x [conv k=3, LayerNorm, ReLU], then a conv
  k=3 to C logits (bias -log((1 - pi) / pi), pi = prior_prob) or to 2 distances; the distances
  go through softplus(scale_l * x) with one learnable scale per level (initialised to 1). The
  paper's ReLU can die (zero output, zero gradient): on the default data, trained on the true
  instances, one seed of three ended with the DIoU loss at 0.66 instead of ~0.04 (validation
  avg mAP@0.1:0.7 43 against 73-75); softplus keeps a gradient, and that seed reaches 80.

Padding never leaks: every conv sees zeros beyond a video's end (as its own zero padding
gives an unpadded video), attention masks padded keys, and every block's output is zero at
padding. So a video's outputs are the same alone or in a padded batch, for any padded length
that the coarsest stride divides (up to float rounding of batched matrix products).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from detector.config import DetectorConfig

__all__ = ["DetectorNet", "DetectorOutput", "LocalSelfAttention"]


def _conv(conv: nn.Conv1d, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """A 1-D conv over time on (B, T, D) input zeroed at padding (`keep` (B, T, 1) float)."""
    return conv((x * keep).transpose(1, 2)).transpose(1, 2)


class LocalSelfAttention(nn.Module):
    """Multi-head self-attention restricted to a window of `window` locations around each one."""

    def __init__(self, *, dim: int, num_heads: int, window: int, dropout: float) -> None:
        """Args:
        dim: D, a multiple of num_heads.
        num_heads: H.
        window: odd window length w; location i attends to [i - w // 2, i + w // 2].
        dropout: on the attention weights.
        """
        super().__init__()
        self.num_heads, self.window = num_heads, window
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Args:
        x: (B, T, D).
        mask: (B, T) bool, True at valid locations.

        Returns:
            (B, T, D); rows at padded locations are meaningless (the caller zeroes them).
        """
        batch, length, dim = x.shape
        heads, half = self.num_heads, self.window // 2
        q, k, v = self.qkv(x).view(batch, length, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)  # 3 x (B, H, T, d)
        k = F.pad(k, (0, 0, half, half)).unfold(2, self.window, 1)  # (B, H, T, d, w): keys i - half .. i + half
        v = F.pad(v, (0, 0, half, half)).unfold(2, self.window, 1)  # (B, H, T, d, w)
        scores = torch.einsum("bhtd,bhtdw->bhtw", q, k) / math.sqrt(dim // heads)  # (B, H, T, w)
        key_valid = F.pad(mask.to(x.dtype), (half, half)).unfold(1, self.window, 1) > 0  # (B, T, w)
        scores = scores.masked_fill(~key_valid[:, None], torch.finfo(scores.dtype).min)
        weights = self.drop(scores.softmax(dim=-1))  # (B, H, T, w); padded keys get exactly 0
        out = torch.einsum("bhtw,bhtdw->bhtd", weights, v)  # (B, H, T, d)
        return self.proj(out.transpose(1, 2).reshape(batch, length, dim))


class TransformerBlock(nn.Module):
    """A pre-LayerNorm transformer block with local attention."""

    def __init__(self, *, dim: int, num_heads: int, window: int, mlp_ratio: int, dropout: float) -> None:
        """Args: as `DetectorConfig`'s fields of the same names (dim = embed_dim)."""
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = LocalSelfAttention(dim=dim, num_heads=num_heads, window=window, dropout=dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(mlp_ratio * dim, dim)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, D) zero at padding, (B, T) bool -> (B, T, D) zero at padding."""
        keep = mask[..., None].to(x.dtype)  # (B, T, 1)
        x = x + self.drop(self.attn(self.norm1(x), mask)) * keep
        return x + self.drop(self.mlp(self.norm2(x))) * keep


class Head(nn.Module):
    """Convs shared across the pyramid's levels: (layers - 1) x [conv, LayerNorm, ReLU], conv out."""

    def __init__(self, *, dim: int, out: int, layers: int) -> None:
        """Args:
        dim: D.
        out: output channels.
        layers: conv layers in all (>= 1).
        """
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv1d(dim, dim, 3, padding=1) for _ in range(layers - 1))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(layers - 1))
        self.out = nn.Conv1d(dim, out, 3, padding=1)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """(B, T, D), (B, T, 1) float -> (B, T, out), zero at padding."""
        for conv, norm in zip(self.convs, self.norms):
            x = F.relu(norm(_conv(conv, x, keep)))
        return _conv(self.out, x, keep) * keep


@dataclass(frozen=True)
class DetectorOutput:
    """The heads' outputs over all levels, level 0 first (N = sum of T / 2**l).

    Attributes:
        cls_logits: (B, N, C) classification logits.
        regression: (B, N, 2) distances to the start and to the end, in units of each
            location's stride (> 0; 0 at padding).
        mask: (B, N) bool, True at valid locations.
    """

    cls_logits: torch.Tensor
    regression: torch.Tensor
    mask: torch.Tensor


class DetectorNet(nn.Module):
    """Projection, local-attention transformer pyramid and shared heads (module docstring)."""

    def __init__(self, *, config: DetectorConfig, num_classes: int) -> None:
        """Args:
        config: the sizes (feature_dim, embed_dim, num_heads, window, stem_blocks, num_levels,
            mlp_ratio, head_layers, dropout, prior_prob).
        num_classes: C >= 1.
        """
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"detector: num_classes must be >= 1, got {num_classes}")
        dim = config.embed_dim
        self.num_levels = config.num_levels
        self.proj1 = nn.Conv1d(config.feature_dim, dim, 3, padding=1)
        self.proj_norm1 = nn.LayerNorm(dim)
        self.proj2 = nn.Conv1d(dim, dim, 3, padding=1)
        self.proj_norm2 = nn.LayerNorm(dim)
        block = dict(
            dim=dim,
            num_heads=config.num_heads,
            window=config.window,
            mlp_ratio=config.mlp_ratio,
            dropout=config.dropout,
        )
        self.stem = nn.ModuleList(TransformerBlock(**block) for _ in range(config.stem_blocks))
        self.branch = nn.ModuleList(TransformerBlock(**block) for _ in range(config.num_levels - 1))
        self.level_norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(config.num_levels))
        self.cls_head = Head(dim=dim, out=num_classes, layers=config.head_layers)
        self.reg_head = Head(dim=dim, out=2, layers=config.head_layers)
        self.scales = nn.Parameter(torch.ones(config.num_levels))  # (L,) per-level regression scale
        nn.init.constant_(self.cls_head.out.bias, -math.log((1 - config.prior_prob) / config.prior_prob))

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> DetectorOutput:
        """Args:
        features: (B, T, F), T a multiple of 2**(L-1) (`detector.batching.pad_features`).
        mask: (B, T) bool, True at valid snippets (a prefix of each row).

        Returns:
            The `DetectorOutput`.

        Raises:
            ValueError: T not a multiple of the coarsest stride, or a mask of another shape.
        """
        batch, length, _ = features.shape
        if length % 2 ** (self.num_levels - 1) or tuple(mask.shape) != (batch, length):
            raise ValueError(
                f"detector: features (B, T, F) need T a multiple of {2 ** (self.num_levels - 1)} "
                f"and a (B, T) mask; got {tuple(features.shape)} and {tuple(mask.shape)} "
                "(pad with detector.batching.pad_features)"
            )
        keep = mask[..., None].to(features.dtype)  # (B, T, 1)
        x = F.relu(self.proj_norm1(_conv(self.proj1, features, keep))) * keep  # (B, T, D)
        x = F.relu(self.proj_norm2(_conv(self.proj2, x, keep))) * keep
        for block in self.stem:
            x = block(x, mask)
        levels = [(x, mask)]
        for block in self.branch:
            x, mask = _downsample(x, mask)  # (B, T_l, D), (B, T_l)
            x = block(x, mask)
            levels.append((x, mask))
        logits, distances, masks = [], [], []
        for level, ((x, level_mask), norm) in enumerate(zip(levels, self.level_norms)):
            keep = level_mask[..., None].to(x.dtype)  # (B, T_l, 1)
            x = norm(x) * keep
            logits.append(self.cls_head(x, keep))  # (B, T_l, C)
            distances.append(F.softplus(self.scales[level] * self.reg_head(x, keep)) * keep)  # (B, T_l, 2)
            masks.append(level_mask)
        return DetectorOutput(
            cls_logits=torch.cat(logits, dim=1), regression=torch.cat(distances, dim=1), mask=torch.cat(masks, dim=1)
        )


def _downsample(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Max over non-overlapping pairs of locations; a pair is valid when its first one is.

    Args:
        x: (B, T, D) zero at padding, T even.
        mask: (B, T) bool, a prefix per row.

    Returns:
        (B, T / 2, D) zero at padding, and its (B, T / 2) mask.
    """
    batch, length, dim = x.shape
    pooled = x.masked_fill(~mask[..., None], float("-inf")).view(batch, length // 2, 2, dim).amax(dim=2)
    half_mask = mask[:, ::2]  # (B, T / 2)
    return pooled.masked_fill(~half_mask[..., None], 0.0), half_mask
