"""The LACP network (METHOD 2): embedding conv, dropout, CAS conv, fused scores, video scores.

Layers are held as `nn.Conv1d` modules so that state_dicts have the usual conv layout
(`embedding.weight` (E, D, 3), `embedding.bias` (E,), `classifier.weight` (C+1, E, 1)), but
the forward pass computes the kernel-3 conv as one matrix product on the valid snippets only:
each valid snippet t is the row [x[t-1], x[t], x[t+1]] (zeros outside the video), multiplied
by the (3D, E) reshaped kernel. On a CPU this is faster than `F.conv1d` (one large GEMM for
the forward and one for the weight gradient), and padded positions cost nothing.

Padding never leaks: features beyond a video's end are zeroed before the conv, so a video in a
padded batch sees exactly the zeros that the conv's own zero padding gives it when processed
alone. Outputs at padded positions are zero (cas, embeddings) and must be ignored (`mask`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LACPNet", "check_mask", "fuse_scores", "video_scores"]


def check_mask(mask: torch.Tensor, *, shape: tuple[int, int]) -> torch.Tensor:
    """Validates a padding mask and returns the per-video lengths.

    Args:
        mask: (B, T) bool, True on a prefix of each row (valid snippets first).
        shape: the expected (B, T).

    Returns:
        (B,) int64 number of valid snippets per video.

    Raises:
        ValueError: wrong shape or dtype, a row with no valid snippet, or a row whose valid
            snippets are not a prefix.
    """
    if mask.dtype != torch.bool or tuple(mask.shape) != tuple(shape):
        raise ValueError(f"mask must be a bool tensor of shape {tuple(shape)}, got {mask.dtype} {tuple(mask.shape)}")
    lengths = mask.sum(dim=1)  # (B,)
    if bool((lengths < 1).any()):
        raise ValueError("mask: every video needs at least one valid snippet")
    prefix = torch.arange(mask.shape[1], device=mask.device)[None, :] < lengths[:, None]
    if not torch.equal(prefix, mask):
        raise ValueError("mask: valid snippets must come first in each row (padding at the end)")
    return lengths


def fuse_scores(p: torch.Tensor) -> torch.Tensor:
    """Fused scores q_c = p_c (1 - p_bg) for the C classes, q_bg = p_bg (METHOD 2.3).

    Args:
        p: (..., C+1) sigmoid scores, background last.

    Returns:
        (..., C+1) fused scores.
    """
    p_bg = p[..., -1:]  # (..., 1)
    return torch.cat([p[..., :-1] * (1.0 - p_bg), p_bg], dim=-1)


def video_scores(
    p: torch.Tensor,
    mask: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    r_act: int = 8,
) -> torch.Tensor:
    """Video-level class scores (METHOD 2.4).

    The score of class c is the mean of the k largest p_c over the valid snippets,
    k = max(1, floor(T_valid / r_act)) (the guard makes videos shorter than r_act work).
    With `labels` (training), classes absent from the video use the mean of p_c over all
    valid snippets instead.

    Args:
        p: (B, T, C+1) sigmoid scores (background last; not used here).
        mask: (B, T) bool valid snippets (a prefix of each row).
        labels: optional (B, C) 0/1 video labels.
        r_act: top-k ratio.

    Returns:
        (B, C) video scores.
    """
    if r_act < 1:
        raise ValueError(f"r_act must be >= 1, got {r_act}")
    lengths = check_mask(mask, shape=(p.shape[0], p.shape[1]))  # (B,)
    p_cls = p[..., :-1]  # (B, T, C)
    k = torch.clamp(lengths // r_act, min=1)  # (B,)
    # p lies in [0, 1]: padded positions filled with -1 rank below every valid one and get
    # zero weight, since k <= T_valid.
    ranked = p_cls.masked_fill(~mask[..., None], -1.0)
    top, _ = ranked.topk(int(k.max()), dim=1)  # (B, K, C)
    rank = torch.arange(top.shape[1], device=p.device)[None, :]  # (1, K)
    weight = (rank < k[:, None]).to(p.dtype) / k[:, None].to(p.dtype)  # (B, K)
    top_mean = (top * weight[..., None]).sum(dim=1)  # (B, C)
    if labels is None:
        return top_mean
    valid = mask[..., None].to(p.dtype)  # (B, T, 1)
    full_mean = (p_cls * valid).sum(dim=1) / lengths[:, None].to(p.dtype)  # (B, C)
    labels = labels.to(p.dtype)
    return top_mean * labels + full_mean * (1.0 - labels)


class LACPNet(nn.Module):
    """Embedding conv (k=3) + ReLU, dropout, CAS conv (k=1, no bias).

    Args:
        num_classes: C (the CAS has C+1 channels, background last).
        feature_dim: D of the input features.
        embed_dim: E of the embeddings.
        dropout: dropout probability before the CAS layer (training only).
    """

    def __init__(
        self,
        *,
        num_classes: int,
        feature_dim: int = 2048,
        embed_dim: int = 2048,
        dropout: float = 0.7,
    ) -> None:
        super().__init__()
        if num_classes < 1 or feature_dim < 1 or embed_dim < 1:
            raise ValueError(
                f"num_classes, feature_dim and embed_dim must be >= 1, got {num_classes}, {feature_dim}, {embed_dim}"
            )
        self.num_classes = num_classes
        self.feature_dim = feature_dim
        self.embed_dim = embed_dim
        self.embedding = nn.Conv1d(feature_dim, embed_dim, kernel_size=3, padding=1)
        self.dropout = nn.Dropout(p=dropout)
        self.classifier = nn.Conv1d(embed_dim, num_classes + 1, kernel_size=1, bias=False)

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> dict:
        """Runs the network on a padded batch.

        Args:
            features: (B, T, D) features.
            mask: (B, T) bool valid snippets (a prefix of each row); None = all valid.

        Returns:
            dict with "embeddings" (B, T, E) (after ReLU, before dropout), "cas" (B, T, C+1)
            logits, "p" = sigmoid(cas), "q" the fused scores; zeros of embeddings and cas (so
            p = q_bg = 0.5) at padded positions.
        """
        batch, length, dim = features.shape
        if dim != self.feature_dim:
            raise ValueError(f"features must have {self.feature_dim} channels, got {dim}")
        if mask is None:
            mask = torch.ones(batch, length, dtype=torch.bool, device=features.device)
        check_mask(mask, shape=(batch, length))
        all_valid = bool(mask.all())
        if not all_valid:
            features = features.masked_fill(~mask[..., None], 0.0)

        # Each valid snippet becomes the row [x[t-1], x[t], x[t+1]]: pad every video with one
        # zero snippet on each side, then view three consecutive rows as one (a strided view,
        # no copy) and gather the valid ones (the single copy).
        padded = F.pad(features, (0, 0, 1, 1)).reshape(batch * (length + 2), dim)
        windows = padded.as_strided((padded.shape[0] - 2, 3 * dim), (dim, 1))  # (B(T+2)-2, 3D)
        device = features.device
        starts = torch.arange(batch, device=device)[:, None] * (length + 2) + torch.arange(
            length, device=device
        )  # (B, T) window of snippet t
        starts = starts.reshape(-1) if all_valid else starts[mask]
        stacked = windows.index_select(0, starts)  # (N, 3D), N valid snippets

        # Conv1d kernel (E, D, 3): tap k multiplies x[t + k - 1], matching the row layout.
        kernel = self.embedding.weight.permute(0, 2, 1).reshape(self.embed_dim, 3 * dim)
        embedded = F.relu(torch.addmm(self.embedding.bias, stacked, kernel.t()))  # (N, E)
        logits = self.dropout(embedded) @ self.classifier.weight[..., 0].t()  # (N, C+1)

        if all_valid:
            embeddings = embedded.reshape(batch, length, self.embed_dim)
            cas = logits.reshape(batch, length, self.num_classes + 1)
        else:
            flat_valid = mask.reshape(-1).nonzero().squeeze(1)  # (N,) positions in B*T
            embeddings = embedded.new_zeros(batch * length, self.embed_dim)
            embeddings = embeddings.index_copy(0, flat_valid, embedded)
            embeddings = embeddings.reshape(batch, length, self.embed_dim)
            cas = logits.new_zeros(batch * length, self.num_classes + 1)
            cas = cas.index_copy(0, flat_valid, logits).reshape(batch, length, -1)
        p = torch.sigmoid(cas)  # (B, T, C+1)
        return {"embeddings": embeddings, "cas": cas, "p": p, "q": fuse_scores(p)}
