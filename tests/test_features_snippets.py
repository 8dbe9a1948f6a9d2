"""Snippet counting, padding and batching; RGB and flow preprocessing values."""

from __future__ import annotations

import functools
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from features.snippets import (
    center_crop,
    iter_snippet_batches,
    preprocess_flow,
    preprocess_rgb,
    resize_short_side,
    snippet_count,
    snippet_starts,
)


@pytest.mark.parametrize(
    ("n_frames", "snippet", "stride", "expected"),
    [
        (1, 16, 16, 1),
        (15, 16, 16, 1),
        (16, 16, 16, 1),
        (17, 16, 16, 2),
        (32, 16, 16, 2),
        (33, 16, 16, 3),
        (1000, 16, 16, 63),  # ceil(1000 / 16)
        (16, 16, 8, 1),  # one snippet covers everything
        (17, 16, 8, 2),
        (24, 16, 8, 2),
        (25, 16, 8, 3),
        (32, 16, 32, 1),  # stride > snippet: starts 0 only (32 is past the end)
        (33, 16, 32, 2),
        (40, 16, 32, 2),
    ],
)
def test_snippet_count(n_frames: int, snippet: int, stride: int, expected: int) -> None:
    assert snippet_count(n_frames, snippet, stride) == expected


def test_snippet_count_rejects_empty_video() -> None:
    with pytest.raises(ValueError, match="n_frames"):
        snippet_count(0)


def _index_frames(n: int, *, channels: int = 3) -> np.ndarray:
    """(n, 2, 3, C) uint8 frames whose every value is the frame index."""
    return np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, 2, 3, channels)).copy()


def test_iter_snippet_batches_pads_last_snippet_with_last_frame() -> None:
    frames = _index_frames(37)  # 3 snippets: 0-15, 16-31, 32-36 then 36 x 11
    batches = list(iter_snippet_batches(frames, snippet=16, stride=16, batch=2))
    assert [tuple(b.shape) for b in batches] == [(2, 3, 16, 2, 3), (1, 3, 16, 2, 3)]
    assert all(b.dtype == torch.float32 for b in batches)
    frame_values = torch.cat(batches)[:, 0, :, 0, 0]  # (3, 16): the value of each snippet frame
    expected = torch.tensor([list(range(16)), list(range(16, 32)), [32, 33, 34, 35] + [36] * 12], dtype=torch.float32)
    assert torch.equal(frame_values, expected)
    assert batches[0].is_contiguous(memory_format=torch.channels_last_3d)


def test_iter_snippet_batches_overlapping_stride_and_short_video() -> None:
    frames = _index_frames(20, channels=2)
    (batch,) = iter_snippet_batches(frames, snippet=8, stride=4, batch=8)
    starts = snippet_starts(20, snippet=8, stride=4)
    assert starts.tolist() == [0, 4, 8, 12]
    expected = torch.tensor([list(range(s, s + 8)) for s in starts], dtype=torch.float32)
    assert torch.equal(batch[:, 1, :, 1, 2], expected)
    (short,) = iter_snippet_batches(_index_frames(3), snippet=4, stride=4, batch=8)
    assert short[0, 2, :, 0, 0].tolist() == [0.0, 1.0, 2.0, 2.0]


def test_iter_snippet_batches_frame_step_keeps_every_kth_frame_of_each_snippet() -> None:
    frames = _index_frames(37)  # snippets start at 0, 16, 32; the last one pads with frame 36
    batches = list(iter_snippet_batches(frames, snippet=16, stride=16, batch=2, frame_step=2))
    assert [tuple(b.shape) for b in batches] == [(2, 3, 8, 2, 3), (1, 3, 8, 2, 3)]
    frame_values = torch.cat(batches)[:, 0, :, 0, 0]  # (3, 8)
    expected = torch.tensor(
        [list(range(0, 16, 2)), list(range(16, 32, 2)), [32, 34, 36, 36, 36, 36, 36, 36]], dtype=torch.float32
    )
    assert torch.equal(frame_values, expected)
    assert batches[0].is_contiguous(memory_format=torch.channels_last_3d)
    (odd,) = iter_snippet_batches(_index_frames(10), snippet=5, stride=5, batch=4, frame_step=3)
    assert odd[:, 0, :, 0, 0].tolist() == [[0.0, 3.0], [5.0, 8.0]]  # ceil(5 / 3) = 2 frames each
    with pytest.raises(ValueError, match="frame_step must be in \\[1, snippet=16\\], got 17"):
        next(iter_snippet_batches(frames, snippet=16, stride=16, frame_step=17))


def test_iter_snippet_batches_applies_transform_and_reads_h5py(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    flow = rng.integers(0, 256, size=(10, 6, 8, 2), dtype=np.uint8)
    with h5py.File(tmp_path / "flow.h5", "w") as handle:
        handle["flow"] = flow
    with h5py.File(tmp_path / "flow.h5", "r") as handle:
        transform = functools.partial(preprocess_flow, crop=4)
        batches = list(iter_snippet_batches(handle["flow"], snippet=4, stride=4, batch=2, transform=transform))
    assert [tuple(b.shape) for b in batches] == [(2, 2, 4, 4, 4), (1, 2, 4, 4, 4)]
    last = batches[1][0]  # frames 8, 9, 9, 9
    expected = flow[[8, 9, 9, 9], 1:5, 2:6].astype(np.float32) / 255 * 2 - 1  # (4, 4, 4, 2)
    np.testing.assert_allclose(last.permute(1, 2, 3, 0).numpy(), expected, atol=1e-6)


def test_preprocess_rgb_values_and_crop() -> None:
    frames = np.zeros((1, 6, 8, 3), dtype=np.uint8)
    frames[0, :, :, 0] = 255
    frames[0, :, :, 1] = 51
    frames[0, 1, 2, 2] = 102  # top-left pixel of the centre 4x4 crop: rows 1-4, cols 2-5
    out = preprocess_rgb(frames, short_side=None, crop=4)
    assert out.shape == (1, 4, 4, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0, 0], [1.0, -0.6, -0.2], atol=1e-6)
    np.testing.assert_allclose(out[0, 1, 1], [1.0, -0.6, -1.0], atol=1e-6)


def test_resize_short_side_keeps_aspect_and_constant_colour() -> None:
    frames = np.full((2, 4, 6, 3), 77, dtype=np.uint8)
    resized = resize_short_side(frames, short_side=8)
    assert resized.shape == (2, 8, 12, 3) and (resized == 77).all()
    assert resize_short_side(frames, short_side=4) is frames
    tall = resize_short_side(np.zeros((1, 10, 4, 3), dtype=np.uint8), short_side=2)
    assert tall.shape == (1, 5, 2, 3)
    out = preprocess_rgb(np.full((1, 300, 400, 3), 255, dtype=np.uint8))  # 256x341 then 224x224
    assert out.shape == (1, 224, 224, 3) and np.allclose(out, 1.0)


def test_preprocess_flow_maps_quantised_flow_to_unit_range() -> None:
    flow = np.array([0, 255, 128, 64], dtype=np.uint8).reshape(1, 1, 2, 2)
    out = preprocess_flow(flow, crop=None)
    np.testing.assert_allclose(out.ravel(), [-1.0, 1.0, 128 / 255 * 2 - 1, 64 / 255 * 2 - 1], atol=1e-6)


def test_preprocess_rejects_bad_frames() -> None:
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        preprocess_rgb(np.zeros((2, 4, 4, 2), dtype=np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        preprocess_flow(np.zeros((2, 4, 4, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="smaller than the crop 224"):
        center_crop(np.zeros((1, 200, 300, 3), dtype=np.uint8), crop=224)
