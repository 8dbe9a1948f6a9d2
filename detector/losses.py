"""The detector's losses: sigmoid focal loss, 1-D DIoU loss, and their normaliser.

Classification (every valid location, every class, one-hot targets; background all zero):
    FL(p, y) = -alpha_y (1 - p_y)^gamma log(p_y),   p_y = p if y = 1 else 1 - p,
    alpha_y = alpha if y = 1 else 1 - alpha        (alpha 0.25, gamma 2 by default)
computed from the logits (log p_y = -BCE-with-logits) for stability.

Regression (positive locations only), on the segments [p - d_s, p + d_e] of the prediction
and [p - t_s, p + t_e] of the target, both around the same location p, in stride units:
    inter = min(d_s, t_s) + min(d_e, t_e),  union = d_s + d_e + t_s + t_e - inter,
    enclosing = max(d_s, t_s) + max(d_e, t_e),
    rho = ((d_e - d_s) - (t_e - t_s)) / 2       (distance between the two centres),
    DIoU loss = 1 - inter / union + rho^2 / enclosing^2.

Normaliser: both sums are divided by an exponential moving average of the number of
positive locations in the batch, as in the paper: n <- m n + (1 - m) max(positives, 1)
before each step's losses (m 0.9, n starting at `loss_norm_init`), so a batch with few
positives does not swing the loss scale. total = cls + reg_weight * reg.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["LOSS_TERMS", "LossTerms", "detector_loss", "diou_loss_1d", "sigmoid_focal_loss", "update_normaliser"]

LOSS_TERMS = ("cls", "reg", "total")
"""The logged loss terms: training log rows hold `loss_<term>` for each."""


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, *, alpha: float, gamma: float) -> torch.Tensor:
    """Element-wise sigmoid focal loss.

    Args:
        logits: (...) logits.
        targets: (...) 0/1 targets of the same shape.
        alpha: weight of positives (1 - alpha for negatives).
        gamma: focusing exponent.

    Returns:
        (...) the loss of each element.
    """
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")  # -log(p_y)
    p_y = p * targets + (1 - p) * (1 - targets)
    alpha_y = alpha * targets + (1 - alpha) * (1 - targets)
    return alpha_y * (1 - p_y) ** gamma * ce


def diou_loss_1d(pred: torch.Tensor, target: torch.Tensor, *, eps: float = 1e-8) -> torch.Tensor:
    """1-D DIoU loss of distance pairs measured from the same location.

    Args:
        pred: (P, 2) predicted (start, end) distances, >= 0.
        target: (P, 2) target distances, > 0.
        eps: guards the divisions.

    Returns:
        (P,) 1 - IoU + (centre distance / enclosing length)^2.
    """
    pred_s, pred_e = pred[:, 0], pred[:, 1]
    target_s, target_e = target[:, 0], target[:, 1]
    inter = torch.minimum(pred_s, target_s) + torch.minimum(pred_e, target_e)  # (P,)
    union = pred_s + pred_e + target_s + target_e - inter
    enclosing = torch.maximum(pred_s, target_s) + torch.maximum(pred_e, target_e)
    rho = ((pred_e - pred_s) - (target_e - target_s)) / 2
    return 1 - inter / union.clamp(min=eps) + rho**2 / enclosing.clamp(min=eps) ** 2


def update_normaliser(previous: float, positives: int, *, momentum: float) -> float:
    """The EMA normaliser after a batch: momentum * previous + (1 - momentum) * max(positives, 1)."""
    return momentum * previous + (1 - momentum) * max(int(positives), 1)


@dataclass(frozen=True)
class LossTerms:
    """One step's losses (scalars with gradients)."""

    cls: torch.Tensor
    reg: torch.Tensor
    total: torch.Tensor

    def as_floats(self) -> dict[str, float]:
        """The terms as plain floats keyed `loss_<term>` (for the training log)."""
        return {f"loss_{name}": float(getattr(self, name).detach()) for name in LOSS_TERMS}


def detector_loss(
    cls_logits: torch.Tensor,
    regression: torch.Tensor,
    mask: torch.Tensor,
    labels: torch.Tensor,
    reg_targets: torch.Tensor,
    *,
    normaliser: float,
    alpha: float,
    gamma: float,
    reg_weight: float,
) -> LossTerms:
    """The focal and DIoU losses of a batch (module docstring).

    Args:
        cls_logits: (B, N, C) logits.
        regression: (B, N, 2) predicted distances (stride units).
        mask: (B, N) bool valid locations.
        labels: (B, N) int64 class per location, -1 for background.
        reg_targets: (B, N, 2) target distances (stride units).
        normaliser: the EMA positive count (`update_normaliser`).
        alpha, gamma: focal loss parameters.
        reg_weight: weight of the regression loss in the total.

    Returns:
        The `LossTerms`; reg is 0 (with a gradient path) when the batch has no positive.
    """
    num_classes = cls_logits.shape[-1]
    one_hot = F.one_hot(labels.clamp(min=0), num_classes).to(cls_logits.dtype)  # (B, N, C)
    one_hot = one_hot * (labels >= 0)[..., None].to(cls_logits.dtype)
    focal = sigmoid_focal_loss(cls_logits, one_hot, alpha=alpha, gamma=gamma)  # (B, N, C)
    cls = (focal * mask[..., None].to(focal.dtype)).sum() / normaliser
    positive = (labels >= 0) & mask  # (B, N)
    reg = diou_loss_1d(regression[positive], reg_targets[positive]).sum() / normaliser
    return LossTerms(cls=cls, reg=reg, total=cls + reg_weight * reg)
