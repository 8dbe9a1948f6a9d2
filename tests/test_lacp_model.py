"""LACPNet: padded batches equal per-video runs and the Conv1d reference; fused and video scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lacp.model import LACPNet, check_mask, fuse_scores, video_scores

D, E, C = 8, 16, 3


def _net(dropout: float = 0.7) -> LACPNet:
    torch.manual_seed(0)
    return LACPNet(num_classes=C, feature_dim=D, embed_dim=E, dropout=dropout).eval()


def _reference(net: LACPNet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings and CAS of one unpadded video (T, D) through plain F.conv1d."""
    emb = F.relu(F.conv1d(x.T[None], net.embedding.weight, net.embedding.bias, padding=1))
    cas = F.conv1d(emb, net.classifier.weight)
    return emb[0].T, cas[0].T


def test_state_dict_has_conv_layout():
    shapes = {k: tuple(v.shape) for k, v in _net().state_dict().items()}
    assert shapes == {"embedding.weight": (E, D, 3), "embedding.bias": (E,), "classifier.weight": (C + 1, E, 1)}


def test_padded_batch_equals_per_video_and_conv1d_reference():
    lengths = [5, 9, 1, 2]
    gen = torch.Generator().manual_seed(1)
    videos = [torch.randn(t, D, generator=gen) for t in lengths]
    features = torch.full((len(lengths), max(lengths), D), 7.0)  # garbage in the padding
    mask = torch.zeros(len(lengths), max(lengths), dtype=torch.bool)
    for b, x in enumerate(videos):
        features[b, : len(x)] = x
        mask[b, : len(x)] = True
    net = _net()
    with torch.no_grad():
        out = net(features, mask)
        for b, x in enumerate(videos):
            alone = net(x[None])
            emb_ref, cas_ref = _reference(net, x)
            t = len(x)
            torch.testing.assert_close(out["embeddings"][b, :t], alone["embeddings"][0], rtol=0, atol=1e-6)
            torch.testing.assert_close(out["cas"][b, :t], alone["cas"][0], rtol=0, atol=1e-6)
            torch.testing.assert_close(out["embeddings"][b, :t], emb_ref, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(out["cas"][b, :t], cas_ref, rtol=1e-5, atol=1e-5)
            # padded positions: zero embeddings and logits, so p = q_bg = 0.5
            assert torch.all(out["embeddings"][b, t:] == 0)
            assert torch.all(out["cas"][b, t:] == 0)
        torch.testing.assert_close(out["p"], torch.sigmoid(out["cas"]))
        torch.testing.assert_close(out["q"], fuse_scores(out["p"]))


def test_gradients_of_padded_batch_match_per_video_sum():
    lengths = [4, 7]
    gen = torch.Generator().manual_seed(2)
    videos = [torch.randn(t, D, generator=gen) for t in lengths]
    features = torch.zeros(2, 7, D)
    mask = torch.zeros(2, 7, dtype=torch.bool)
    for b, x in enumerate(videos):
        features[b, : len(x)], mask[b, : len(x)] = x, True
    net = _net()
    out = net(features, mask)
    (out["cas"][mask].sum() + out["embeddings"][mask].square().sum()).backward()
    batched = net.embedding.weight.grad.clone()
    net.zero_grad()
    for x in videos:
        emb, cas = _reference(net, x)
        (cas.sum() + emb.square().sum()).backward()
    torch.testing.assert_close(batched, net.embedding.weight.grad, rtol=1e-4, atol=1e-4)


def test_dropout_only_in_training_and_not_on_embeddings():
    net = _net(dropout=0.5)
    x = torch.randn(1, 6, D, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        eval_out = net(x)
        net.train()
        train_out = net(x)
    torch.testing.assert_close(train_out["embeddings"], eval_out["embeddings"])
    assert not torch.allclose(train_out["cas"], eval_out["cas"])


def test_fuse_scores_by_hand():
    p = torch.tensor([[0.8, 0.4, 0.5], [0.2, 1.0, 0.0]])
    expected = torch.tensor([[0.8 * 0.5, 0.4 * 0.5, 0.5], [0.2, 1.0, 0.0]])
    torch.testing.assert_close(fuse_scores(p), expected)


def test_video_scores_top_k_by_hand():
    # video 0: 8 valid snippets, r_act 4 -> k = 2; video 1: 3 valid, k = max(1, 0) = 1
    cls0 = [0.1, 0.9, 0.3, 0.7, 0.2, 0.8, 0.4, 0.0]
    cls1 = [0.5] * 8
    p = torch.zeros(2, 8, 3)
    p[0, :, 0], p[0, :, 1] = torch.tensor(cls0), torch.tensor(cls1)
    p[1, :3, 0] = torch.tensor([0.2, 0.6, 0.4])
    p[1, 3:, :] = 0.99  # padding must never rank
    p[1, :3, 1] = torch.tensor([0.3, 0.3, 0.9])
    mask = torch.tensor([[True] * 8, [True] * 3 + [False] * 5])
    scores = video_scores(p, mask, r_act=4)
    expected = torch.tensor([[(0.9 + 0.8) / 2, 0.5], [0.6, 0.9]])
    torch.testing.assert_close(scores, expected)

    # training: absent classes (label 0) use the mean over the valid snippets
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    scores = video_scores(p, mask, labels, r_act=4)
    expected = torch.tensor([[(0.9 + 0.8) / 2, 0.5], [(0.2 + 0.6 + 0.4) / 3, 0.9]])
    torch.testing.assert_close(scores, expected)


def test_video_scores_gradient_reaches_only_top_k():
    p = torch.tensor([[[0.1, 0.5], [0.9, 0.5], [0.3, 0.5], [0.7, 0.5]]], requires_grad=True)
    mask = torch.ones(1, 4, dtype=torch.bool)
    video_scores(p, mask, r_act=2)[0, 0].backward()  # k = 2: snippets 1 and 3
    np.testing.assert_allclose(p.grad[0, :, 0].numpy(), [0.0, 0.5, 0.0, 0.5])
    assert torch.all(p.grad[0, :, 1] == 0)  # background channel unused


def test_bad_mask_is_rejected():
    with pytest.raises(ValueError, match="come first"):
        check_mask(torch.tensor([[True, False, True]]), shape=(1, 3))
    with pytest.raises(ValueError, match="at least one"):
        check_mask(torch.tensor([[False, False]]), shape=(1, 2))
    with pytest.raises(ValueError, match="channels"):
        _net()(torch.zeros(1, 3, D + 1))
