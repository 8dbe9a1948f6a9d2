"""Detector losses on hand-made tensors: sigmoid focal loss, 1-D DIoU, the normaliser and the total."""

from __future__ import annotations

import math

import pytest
import torch

from detector.losses import detector_loss, diou_loss_1d, sigmoid_focal_loss, update_normaliser

LN2, LN3 = math.log(2.0), math.log(3.0)


def test_focal_loss_values():
    """alpha 0.25, gamma 2:
    logit 0 (p = 0.5), y = 1: 0.25 * 0.5^2 * ln 2          = 0.0625 ln 2
    logit 0 (p = 0.5), y = 0: 0.75 * 0.5^2 * ln 2          = 0.1875 ln 2
    logit ln 3 (p = 0.75), y = 1: 0.25 * 0.25^2 * ln(4/3)  = ln(4/3) / 64
    logit ln 3 (p = 0.75), y = 0: 0.75 * 0.75^2 * ln 4     = 0.421875 ln 4
    """
    logits = torch.tensor([0.0, 0.0, LN3, LN3], dtype=torch.float64)
    targets = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    loss = sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=2.0)
    expected = [0.0625 * LN2, 0.1875 * LN2, math.log(4 / 3) / 64, 0.421875 * math.log(4)]
    torch.testing.assert_close(loss, torch.tensor(expected, dtype=torch.float64))


def test_diou_loss_values():
    """pred (1, 3), target (2, 2) around the same location p: segments [p-1, p+3] and [p-2, p+2];
    inter 1 + 2 = 3, union 4 + 4 - 3 = 5 (IoU 0.6), enclosing 2 + 3 = 5, centres p+1 and p
    (rho 1): 1 - 0.6 + 1/25 = 0.44.  A perfect prediction (2, 2): 0.  Disjoint sides cannot happen
    (both contain p); pred (0, 1) vs target (3, 1): inter 1, union 4, enclosing 4, rho (1 - (-2))/2
    = 1.5: 1 - 0.25 + 2.25 / 16 = 0.890625."""
    pred = torch.tensor([[1.0, 3.0], [2.0, 2.0], [0.0, 1.0]], dtype=torch.float64)
    target = torch.tensor([[2.0, 2.0], [2.0, 2.0], [3.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(diou_loss_1d(pred, target), torch.tensor([0.44, 0.0, 0.890625], dtype=torch.float64))


def test_normaliser_is_an_ema_of_the_positive_count():
    assert update_normaliser(30.0, 10, momentum=0.9) == pytest.approx(28.0)  # 27 + 1
    assert update_normaliser(30.0, 0, momentum=0.9) == pytest.approx(27.1)  # max(0, 1) = 1


def test_detector_loss_sums_valid_locations_and_divides_by_the_normaliser():
    """B = 1, N = 3 locations, C = 1: location 0 positive (logit 0, pred (1, 3), target (2, 2)),
    location 1 background (logit ln 3), location 2 padding (ignored whatever it holds).
    cls = (0.0625 ln 2 + 0.421875 ln 4) / 2, reg = 0.44 / 2, total = cls + 0.5 reg."""
    logits = torch.tensor([[[0.0], [LN3], [5.0]]], dtype=torch.float64)
    regression = torch.tensor([[[1.0, 3.0], [9.0, 9.0], [9.0, 9.0]]], dtype=torch.float64)
    mask = torch.tensor([[True, True, False]])
    labels = torch.tensor([[0, -1, 0]])
    targets = torch.tensor([[[2.0, 2.0], [0.0, 0.0], [1.0, 1.0]]], dtype=torch.float64)
    terms = detector_loss(
        logits, regression, mask, labels, targets, normaliser=2.0, alpha=0.25, gamma=2.0, reg_weight=0.5
    )
    cls = (0.0625 * LN2 + 0.421875 * math.log(4)) / 2
    assert terms.cls.item() == pytest.approx(cls)
    assert terms.reg.item() == pytest.approx(0.22)
    assert terms.total.item() == pytest.approx(cls + 0.11)
    assert set(terms.as_floats()) == {"loss_cls", "loss_reg", "loss_total"}
