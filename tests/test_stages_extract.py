"""The extract stage streams a video in windows and gives the features of the in-memory path."""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from features.flow import compute_flow, read_flow, write_flow
from features.i3d import I3D
from features.snippets import iter_snippet_batches, preprocess_flow, preprocess_rgb
from features.store import FILE_ATTR_KEYS, FeatureStore, FeatureStoreWriter
from features.video import decode_to_mp4, read_decoded_frames
from features.weights import save_state_dict
from stages.common import VideoError
from stages.extract import ExtractParams, extract_one, load_stream, stream_features
from tests.videos import write_texture_video

VID = "clip"
FRAMES = 90  # 6 snippets of 16; batch 1 holds 16 frames, so the video is longer than the window


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """A decoded textured video, its DIS flow file and seeded random I3D weights."""
    root = tmp_path_factory.mktemp("extract")
    decoded, flow, weights = root / "decoded", root / "flow", root / "weights"
    for d in (decoded, flow, weights):
        d.mkdir()
    write_texture_video(root / "src.mp4", FRAMES, size=(64, 48))
    decode_to_mp4(root / "src.mp4", decoded / f"{VID}.mp4", fps=25, short_side=64, min_frames=1)
    gray = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in read_decoded_frames(decoded / f"{VID}.mp4")])
    write_flow(flow / f"{VID}.h5", compute_flow(gray, method="dis"), method="dis", bound=20.0)
    for name, channels in (("rgb", 3), ("flow", 2)):
        torch.manual_seed(channels)
        save_state_dict(I3D(in_channels=channels).state_dict(), weights / f"{name}.pt")
    return {"root": root, "decoded": decoded, "flow": flow, "weights": weights}


def _attrs() -> dict[str, object]:
    return {key: 1 if key in ("fps", "snippet", "stride", "crop") else "test" for key in FILE_ATTR_KEYS}


def _extract(inputs: dict[str, Path], out: Path, *, frames_out: int = FRAMES) -> VideoError | None:
    params = ExtractParams(crop=64, batch=1, precision="fp32", device="cpu", frame_step=2)
    return extract_one(
        VID,
        params=params,
        decoded_dir=inputs["decoded"],
        flow_dir=inputs["flow"],
        weights_dir=inputs["weights"],
        out_path=out,
        attrs=_attrs(),
        decoded={VID: {"frames_out": frames_out, "source_fps": 25.0}},
    )


def test_streamed_features_equal_the_whole_video_path(inputs):
    out = inputs["root"] / "features.h5"
    result = _extract(inputs, out)
    assert result.ok and result.info == {"snippets": 6}

    # reference: the whole video in memory, through the same networks and cut
    cut = dict(snippet=16, stride=16, batch=1, frame_step=2)
    rgb_model = load_stream(str(inputs["weights"] / "rgb.pt"), 3, "fp32", "cpu")
    flow_model = load_stream(str(inputs["weights"] / "flow.pt"), 2, "fp32", "cpu")
    frames = read_decoded_frames(inputs["decoded"] / f"{VID}.mp4")  # (90, 64, 86, 3)
    with FeatureStore(FeatureStoreWriter(out, attrs=_attrs()).finalize()) as store:
        got = store[VID]  # (6, 2048)
    rgb = stream_features(rgb_model, iter_snippet_batches(frames, transform=functools.partial(
        preprocess_rgb, short_side=None, crop=64), **cut))
    flow_u8, _ = read_flow(inputs["flow"] / f"{VID}.h5")
    flow = stream_features(flow_model, iter_snippet_batches(flow_u8, transform=functools.partial(
        preprocess_flow, crop=64), **cut))
    assert got.shape == (6, 2048) and np.abs(got).max() > 0
    np.testing.assert_array_equal(got[:, :1024], rgb)
    np.testing.assert_array_equal(got[:, 1024:], flow)


def test_a_decoded_video_shorter_than_its_manifest_is_a_video_error(inputs, tmp_path):
    _write_flow_of_length(inputs, tmp_path, 96)
    with pytest.raises(VideoError, match=r"video 'clip': .*clip.mp4: ends after 90 frames, expected 96.*rerun the decode stage"):
        _extract({**inputs, "flow": tmp_path}, tmp_path / "f.h5", frames_out=96)


def _write_flow_of_length(inputs: dict[str, Path], flow_dir: Path, n: int) -> None:
    """A flow file of n zero frames, so that the flow-length check passes and decoding is reached."""
    h, w = read_decoded_frames(inputs["decoded"] / f"{VID}.mp4").shape[1:3]
    write_flow(flow_dir / f"{VID}.h5", np.full((n, h, w, 2), 128, np.uint8), method="dis", bound=20.0)
