"""Tests of features.flow: quantisation, flow direction and alignment, flow files."""

from __future__ import annotations

from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

from features.flow import (
    FlowFileError,
    FlowReader,
    FlowSettings,
    compute_flow,
    dequantize,
    dequantize_pixels,
    iter_flow,
    iter_flow_frames,
    make_pair_flow,
    quantize,
    read_flow,
    write_flow,
    write_flow_frames,
)


def _texture(size: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth random texture, (size, size) uint8, full 0..255 range."""
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.random((size, size)).astype(np.float32), (0, 0), 2.0)
    img = (img - img.min()) / (img.max() - img.min()) * 255
    return np.rint(img).astype(np.uint8)


# ---------------------------------------------------------------- quantisation


def test_quantize_hand_computed_values_and_clipping() -> None:
    v = np.array([-100.0, -20.0, -10.0, 0.0, 10.0, 20.0, 100.0], dtype=np.float32)
    # (v + 20) * 255 / 40: 0, 0, 63.75, 127.5, 191.25, 255, 255 -> rint (half to even)
    np.testing.assert_array_equal(quantize(v, 20.0), [0, 0, 64, 128, 191, 255, 255])
    assert quantize(v, 20.0).dtype == np.uint8


@pytest.mark.parametrize("bound", [1.0, 5.0, 20.0])
def test_quantize_round_trip_within_half_step(bound: float) -> None:
    v = np.random.default_rng(1).uniform(-bound, bound, size=10_000).astype(np.float32)
    back = dequantize_pixels(quantize(v, bound), bound)
    assert back.dtype == np.float32
    assert np.abs(back - v).max() <= bound / 255 + 1e-5
    # values beyond the bound come back as the bound itself
    far = np.array([-3 * bound, 3 * bound])
    np.testing.assert_allclose(dequantize_pixels(quantize(far, bound), bound), [-bound, bound])


def test_dequantize_unit_scale() -> None:
    q = np.array([0, 255, 51], dtype=np.uint8)
    np.testing.assert_allclose(dequantize(q, 20.0), [-1.0, 1.0, 51 / 255 * 2 - 1], atol=1e-7)
    v = np.linspace(-20, 20, 101, dtype=np.float32)
    assert np.abs(dequantize(quantize(v, 20.0), 20.0) - v / 20).max() <= 1 / 255 + 1e-6


def test_bad_bound_is_rejected() -> None:
    with pytest.raises(ValueError, match="bound"):
        quantize(np.zeros(2), 0.0)


# ---------------------------------------------------------------- flow direction and alignment


@pytest.mark.parametrize("method", ["dis", "tvl1", "tvl1_torch"])
@pytest.mark.parametrize(("axis", "channel"), [(1, 0), (0, 1)])
def test_shift_by_two_pixels_gives_flow_two(method: str, axis: int, channel: int) -> None:
    img = _texture()
    moved = np.roll(img, 2, axis=axis)  # content moves +2 px along x (axis 1) or y (axis 0)
    q = compute_flow(np.stack([img, moved]), FlowSettings(method=method, bound=20.0))
    flow = dequantize_pixels(q[0, 8:-8, 8:-8], 20.0)  # interior, away from the wrap
    assert flow[..., channel].mean() == pytest.approx(2.0, abs=0.15)
    assert flow[..., 1 - channel].mean() == pytest.approx(0.0, abs=0.15)


def test_output_has_n_frames_with_last_pair_repeated() -> None:
    img = _texture()
    frames = np.stack([img, np.roll(img, 1, axis=1), np.roll(img, 3, axis=1)])  # shifts +1, +2
    q = compute_flow(frames, FlowSettings(method="dis"))
    assert q.shape == (3, 64, 64, 2) and q.dtype == np.uint8
    np.testing.assert_array_equal(q[2], q[1])
    dx = dequantize_pixels(q[:, 8:-8, 8:-8, 0], 20.0).mean(axis=(1, 2))
    np.testing.assert_allclose(dx, [1.0, 2.0, 2.0], atol=0.15)


@pytest.mark.parametrize("method", ["tvl1", "tvl1_torch"])
def test_single_frame_gives_zero_flow(method: str) -> None:
    q = compute_flow(_texture()[None], FlowSettings(method=method))
    assert q.shape == (1, 64, 64, 2)
    np.testing.assert_array_equal(q, 128)  # round(127.5) = 128, i.e. 20/255 px
    assert np.abs(dequantize_pixels(q, 20.0)).max() <= 20 / 255 + 1e-6


def _shifting_clip(n: int, size: int = 32) -> np.ndarray:
    """n frames, frame k the texture shifted by k * (k + 1) / 2 px in x (speeds 1, 2, 3...)."""
    img = _texture(size)
    return np.stack([np.roll(img, k * (k + 1) // 2, axis=1) for k in range(n)])


@pytest.fixture(scope="module")
def shifting_clip_pair_flows() -> tuple[np.ndarray, list[np.ndarray]]:
    """A 5-frame clip and the quantised tvl1_torch flow of each of its pairs computed alone."""
    frames = _shifting_clip(5)
    pair_flow = make_pair_flow(FlowSettings(method="tvl1_torch"))
    return frames, [quantize(pair_flow(frames[i], frames[i + 1]), 20.0) for i in range(4)]


@pytest.mark.parametrize("batch", [1, 3, 8])
def test_tvl1_torch_streams_in_batches_like_the_pairwise_methods(
    batch: int, shifting_clip_pair_flows: tuple[np.ndarray, list[np.ndarray]]
) -> None:
    """Same frame count, the last pair repeated, each pair's flow the flow of that pair alone,
    whatever the batch (full batches, a remainder, one short batch); at most batch + 1 frames
    are taken from the decoder ahead of the output."""
    frames, alone = shifting_clip_pair_flows
    taken = 0

    def decoder():
        nonlocal taken
        for f in frames:
            taken += 1
            yield f

    out = []
    for k, q in enumerate(iter_flow(decoder(), FlowSettings(method="tvl1_torch", tvl1_torch_batch=batch))):
        assert taken <= k + batch + 1
        out.append(q)
    out = np.stack(out)
    assert out.shape == (5, 32, 32, 2) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[4], out[3])
    np.testing.assert_array_equal(out[:4], np.stack(alone))
    dx = dequantize_pixels(out[:4, 8:-8, 8:-8, 0], 20.0).mean(axis=(1, 2))
    np.testing.assert_allclose(dx, [1, 2, 3, 4], atol=0.2)


def test_tvl1_torch_agrees_with_tvl1_after_quantisation() -> None:
    frames = _shifting_clip(3, 48)
    a = compute_flow(frames, FlowSettings(method="tvl1")).astype(int)
    b = compute_flow(frames, FlowSettings(method="tvl1_torch", tvl1_torch_batch=2)).astype(int)
    assert np.abs(a - b).max() <= 2 and (a == b).mean() > 0.95


def test_streaming_matches_whole_clip() -> None:
    img = _texture(48)
    frames = np.stack([np.roll(img, k, axis=1) for k in range(4)])
    streamed = np.stack(list(iter_flow((f for f in frames), FlowSettings(method="dis", bound=10.0))))
    np.testing.assert_array_equal(streamed, compute_flow(frames, FlowSettings(method="dis", bound=10.0)))


def test_bad_inputs_are_rejected() -> None:
    frames = np.zeros((2, 16, 16), dtype=np.uint8)
    with pytest.raises(ValueError, match="uint8"):
        compute_flow(frames.astype(np.float32))
    with pytest.raises(ValueError, match="uint8"):
        compute_flow(np.zeros((2, 16, 16, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="'farneback'"):
        FlowSettings(method="farneback")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"tvl1\.lambda\n  Extra inputs are not permitted"):
        FlowSettings(method="tvl1", tvl1={"lambda": 0.1})
    with pytest.raises(ValueError, match="batch"):
        FlowSettings(method="tvl1_torch", tvl1_torch_batch=0)
    with pytest.raises(ValueError, match="frame 1"):
        list(iter_flow([frames[0], np.zeros((8, 8), dtype=np.uint8)], FlowSettings(method="tvl1_torch")))
    with pytest.raises(ValueError, match="'slow'"):
        FlowSettings(method="dis", dis_preset="slow")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="frame 1"):
        list(iter_flow([frames[0], np.zeros((8, 8), dtype=np.uint8)], FlowSettings(method="dis")))


@pytest.mark.parametrize("method", ["tvl1", "tvl1_torch"])
def test_tvl1_params_are_applied(method: str) -> None:
    img = _texture()
    frames = np.stack([img, np.roll(img, 2, axis=1)])
    default = compute_flow(frames, FlowSettings(method=method))
    coarse = compute_flow(frames, FlowSettings(method=method, tvl1={"nscales": 1, "warps": 1, "lambda_": 0.01}))
    assert not np.array_equal(default, coarse)


# ---------------------------------------------------------------- flow files


def _flow_clip(n: int = 5) -> np.ndarray:
    rng = np.random.default_rng(2)
    return rng.integers(0, 256, size=(n, 12, 10, 2), dtype=np.uint8)  # (N, H, W, 2)


@pytest.mark.parametrize("compression", ["gzip", "lzf"])
def test_write_read_round_trip_and_attrs(tmp_path: Path, compression: str) -> None:
    flow = _flow_clip()
    path = tmp_path / "v1.h5"
    n = write_flow(path, flow, method="dis", bound=20.0, compression=compression, params={"dis_preset": "fast"})
    assert n == 5
    back, attrs = read_flow(path)
    np.testing.assert_array_equal(back, flow)
    assert attrs == {"method": "dis", "bound": 20.0, "frames": 5, "params": {"dis_preset": "fast"}}
    with h5py.File(path, "r") as h5:
        assert h5["flow"].chunks == (1, 12, 10, 2)
        assert h5["flow"].compression == compression
    assert [p.name for p in tmp_path.iterdir()] == ["v1.h5"]  # no temp file left


def test_reader_is_lazy_and_iterates_frames(tmp_path: Path) -> None:
    flow = _flow_clip(6)
    write_flow(tmp_path / "v.h5", flow, method="tvl1", bound=20.0)
    with FlowReader(tmp_path / "v.h5") as reader:
        assert len(reader) == 6 and reader.shape == (6, 12, 10, 2)
        np.testing.assert_array_equal(reader[2:4], flow[2:4])
        np.testing.assert_array_equal(reader[5], flow[5])
    np.testing.assert_array_equal(np.stack(list(iter_flow_frames(tmp_path / "v.h5"))), flow)


def test_failed_write_leaves_previous_file_and_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "v.h5"
    old = _flow_clip(2)
    write_flow(path, old, method="dis", bound=20.0)

    def frames_then_crash():
        yield old[0]
        raise RuntimeError("decoder died")

    with pytest.raises(RuntimeError, match="decoder died"):
        write_flow_frames(path, frames_then_crash(), method="dis", bound=20.0)
    np.testing.assert_array_equal(read_flow(path)[0], old)
    assert [p.name for p in tmp_path.iterdir()] == ["v.h5"]
    with pytest.raises(ValueError, match="no flow frame"):
        write_flow_frames(tmp_path / "empty.h5", iter([]), method="dis", bound=20.0)
    assert not (tmp_path / "empty.h5").exists()


def test_streaming_compute_and_write(tmp_path: Path) -> None:
    img = _texture(32)
    frames = [np.roll(img, k, axis=1) for k in range(3)]
    n = write_flow_frames(
        tmp_path / "s.h5", iter_flow(iter(frames), FlowSettings(method="dis")), method="dis", bound=20.0
    )
    assert n == 3
    np.testing.assert_array_equal(
        read_flow(tmp_path / "s.h5")[0], compute_flow(np.stack(frames), FlowSettings(method="dis"))
    )


def test_truncated_missing_or_foreign_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "v.h5"
    write_flow(path, _flow_clip(), method="dis", bound=20.0)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FlowFileError, match=r"v\.h5.*truncated"):
        read_flow(path)
    with pytest.raises(FlowFileError, match="no such file"):
        read_flow(tmp_path / "absent.h5")
    with h5py.File(tmp_path / "other.h5", "w") as h5:
        h5["x"] = np.zeros(3)
    with pytest.raises(FlowFileError, match=r"other\.h5.*'flow'"):
        read_flow(tmp_path / "other.h5")
