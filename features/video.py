"""Video decoding: any input video to constant-rate, resized frames, and the compact store.

Decoding goes through pytorchvideo's PyAV backend (`EncodedVideoPyAV`), which opens the
container and checks for a video stream. Frames are then streamed from that backend's
container one at a time: pytorchvideo's public `get_clip` drops frame timestamps and casts
whole clips to float32, while the constant-rate mapping below needs each frame's exact
presentation time and must run in constant memory on hour-long videos. A video stream that
declares no duration (Matroska, WebM, raw H.264) is opened with PyAV directly: that backend
would decode all of such a file into memory at open, to learn its duration.

Constant frame rate by timestamps (sample and hold): output frame k is shown at
t_k = k / fps and takes the last source frame whose presentation time is <= t_k. The
output has every k with t_k < end, where end is the last frame's time plus the interval
before it (containers disagree on the last frame's duration; this rule does not).
Times are exact fractions of the stream's time base, so 29.97 fps (30000/1001) and
variable-frame-rate input map without rounding drift.

Bounds on what a file can declare: the timestamps may not run past the duration the container
(or the stream) declares by more than one frame (`duration_limit`), so a few frames whose
timestamps jump by an hour cannot turn into a 180,000-frame video; a frame beyond that limit is
refused, the end is capped at it. One frame is the longest interval between the frames before
(at least one output frame): muxers often declare the last frame one tick long, and the last
frame still lasts the interval before it. The decoded size keeps within `MAX_ASPECT_RATIO` and
`MAX_SIDE`. Every failure that comes from the file, the H.264 encoder's refusals included, is a
`VideoDecodeError` naming the file.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np
from pydantic import Field

from core.closing import Closing
from core.config import Config

MAX_ASPECT_RATIO = 8.0
"""Longer over shorter side of a source frame above which a video is refused: a 16x4096 strip
would resize to 128x32768, which no encoder or flow window is meant for (32:9 is 3.6)."""

MAX_SIDE = 16384
"""Largest side in pixels of a decoded video: libx264 refuses wider or taller frames."""


class VideoDecodeError(ValueError):
    """A file that cannot be decoded as a video; the message names the file and the reason."""


class DecodeSettings(Config):
    """How `decode_to_mp4` decodes a video (the decode section of params.yaml)."""

    fps: int = Field(25, ge=1, description="output frame rate")
    short_side: int = Field(128, ge=16, le=2160, description="output shorter side (px); 256 for real data")
    crf: int = Field(20, ge=0, le=51, description="x264 constant rate factor")
    preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium"] = Field(
        "veryfast", description="x264 speed preset"
    )
    min_frames: int = Field(16, ge=1, description="minimum output frames (one snippet)")


@dataclass(frozen=True)
class SourceInfo:
    """What the source container says about its video stream."""

    fps: float  # average frame rate of the source
    width: int
    height: int
    duration: Fraction | None = None  # seconds the stream or container declares (the longer); None: neither does


def output_frame_count(end_time: Fraction, fps: int) -> int:
    """Number of output frames k with k / fps < end_time."""
    return max(0, math.ceil(end_time * fps))


def resized_shape(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) with the shorter side = short_side, both even (H.264 4:2:0 needs even sizes)."""
    scale = short_side / min(width, height)
    w = max(2, int(round(width * scale / 2)) * 2)
    h = max(2, int(round(height * scale / 2)) * 2)
    return w, h


def decoded_size(src: Path, width: int, height: int, short_side: int) -> tuple[int, int]:
    """The decoded (width, height) of `src`'s width x height frames (`resized_shape`), within bounds.

    Args:
        src: the source video (for the error message).
        width, height: its frame size in pixels.
        short_side: the decoded shorter side.

    Returns:
        The decoded (width, height).

    Raises:
        VideoDecodeError: the aspect ratio is above `MAX_ASPECT_RATIO`, or a decoded side would
            be above `MAX_SIDE`; the message names the file, the sizes and the limit.
    """
    ratio = max(width, height) / min(width, height)
    if ratio > MAX_ASPECT_RATIO:
        raise VideoDecodeError(
            f"{src}: {width}x{height} px frames have an aspect ratio of {ratio:.4g}:1, above the limit of "
            f"{MAX_ASPECT_RATIO:g}:1 (features.video.MAX_ASPECT_RATIO); crop the video to a usual shape or leave it out"
        )
    size = resized_shape(width, height, short_side)
    if max(size) > MAX_SIDE:
        raise VideoDecodeError(
            f"{src}: {width}x{height} px at a short side of {short_side} px would decode to {size[0]}x{size[1]} px, "
            f"above the limit of {MAX_SIDE} px per side (features.video.MAX_SIDE); lower decode.short_side"
        )
    return size


def duration_limit(declared: Fraction | None, frame: Fraction) -> Fraction | None:
    """How far (s) a video's frame times, and its end, may run past its first frame.

    Args:
        declared: the duration the file declares (`SourceInfo.duration`), None when it declares none.
        frame: how long one frame may last: the longest interval between the frames so far, at
            least one output frame.

    Returns:
        The declared duration plus one frame; None where nothing is declared (nothing to bound by).
    """
    return None if declared is None else declared + frame


def _declared_duration(container: av.container.InputContainer, stream: av.VideoStream) -> Fraction | None:
    """The longer of the stream's and the container's declared durations in seconds (None: neither
    declares one; a Matroska file without its Duration element, a raw stream)."""
    declared = []
    if stream.duration and stream.duration > 0 and stream.time_base:
        declared.append(Fraction(stream.duration) * Fraction(stream.time_base))
    if container.duration and container.duration > 0:
        declared.append(Fraction(container.duration, av.time_base))
    return max(declared, default=None)


def open_source(path: Path) -> tuple[av.container.InputContainer, Callable[[], None]]:
    """Open a video for streaming: with pytorchvideo's PyAV backend, or with PyAV directly when
    its video stream declares no duration (see the module docstring).

    pytorchvideo is imported here, on first use: its package imports torchvision's models
    and torch._dynamo (several seconds), which every stage would otherwise pay at start-up,
    since the pipeline imports all stage modules to build its params.

    Args:
        path: the video file.

    Returns:
        (its PyAV input container, not yet decoding; a function that closes it).

    Raises:
        VideoDecodeError: empty file, not a media file, or no video stream.
    """
    from pytorchvideo.data.encoded_video_pyav import EncodedVideoPyAV

    path = Path(path)
    if not path.is_file():
        raise VideoDecodeError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise VideoDecodeError(f"{path}: empty file (0 bytes)")
    try:
        with av.open(str(path)) as probe:
            undeclared = bool(probe.streams.video) and probe.streams.video[0].duration is None
    except av.error.FFmpegError:
        undeclared = False  # not a media file: the backend's open below says so
    if undeclared:
        container = av.open(str(path))
        return container, container.close
    fh = open(path, "rb")
    try:
        video = EncodedVideoPyAV(fh, video_name=path.name, decode_audio=False)
    except RuntimeError as err:
        fh.close()
        if "Video stream not found" in str(err):
            raise VideoDecodeError(f"{path}: {_missing_video_reason(path)}") from None
        raise VideoDecodeError(f"{path}: not a readable video container ({err})") from None

    def close() -> None:
        video.close()
        fh.close()

    return video._container, close  # the backend's PyAV container: streamed, see the module docstring


def _missing_video_reason(path: Path) -> str:
    """Why a container that opens has no video stream: other streams only, or none at all."""
    try:
        with av.open(str(path)) as container:
            kinds = sorted({stream.type for stream in container.streams})
    except av.error.FFmpegError:
        kinds = []
    if "audio" in kinds:
        return f"no video stream (the file holds only {', '.join(kinds)} streams)"
    return f"no video stream (streams found: {', '.join(kinds) or 'none'}; a truncated file, or not a video?)"


def iter_source_frames(path: Path) -> Iterator[tuple[av.VideoFrame, Fraction, SourceInfo]]:
    """Stream (frame, presentation time in s, info) for every decodable frame."""
    container, close = open_source(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        info = SourceInfo(
            fps=float(rate) if rate else 0.0,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            duration=_declared_duration(container, stream),
        )
        time_base = stream.time_base
        index = 0
        try:
            for frame in container.decode(stream):
                if frame.pts is not None and time_base is not None:
                    t = Fraction(frame.pts) * Fraction(time_base)
                else:  # raw streams without timestamps: fall back to the nominal rate
                    t = Fraction(index) / Fraction(rate)
                index += 1
                yield frame, t, info
        except av.error.FFmpegError as err:
            if index == 0:
                raise VideoDecodeError(f"{path}: no frame could be decoded ({err})") from None
            raise VideoDecodeError(f"{path}: corrupt or truncated after {index} frames ({err})") from None
    finally:
        close()


@dataclass(frozen=True)
class DecodedVideo:
    """Manifest row of one decoded video."""

    source_fps: float
    duration: float  # seconds, of the source
    frames_in: int
    frames_out: int
    width: int
    height: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class _SampleAndHold:
    """Turns a stream of timed source frames into constant-rate output frames."""

    def __init__(self, fps: int):
        self.fps = fps
        self.t0: Fraction | None = None
        self.next_k = 0
        self.prev: av.VideoFrame | None = None

    def push(self, frame: av.VideoFrame, t: Fraction) -> Iterator[av.VideoFrame]:
        """Emit the output frames that the previous frame holds, up to (excluding) time t."""
        if self.t0 is None:
            self.t0 = t
        rel = t - self.t0
        if self.prev is not None:
            while Fraction(self.next_k, self.fps) < rel:
                self.next_k += 1
                yield self.prev
        self.prev = frame

    def close(self, end_rel: Fraction) -> Iterator[av.VideoFrame]:
        """Emit the frames the last source frame holds until the end of the video."""
        if self.prev is None:
            return
        n_out = output_frame_count(end_rel, self.fps)
        while self.next_k < n_out:
            self.next_k += 1
            yield self.prev


def decode_to_mp4(src: Path, dst: Path, *, settings: DecodeSettings = DecodeSettings()) -> DecodedVideo:
    """Decode `src` to a constant-rate, resized H.264 mp4 at `dst`.

    `dst` should be a temporary path (the caller renames it into place on success).

    Args:
        src: any video PyAV can read.
        dst: output .mp4 path.
        settings: frame rate, shorter side in pixels (the longer keeps the aspect, both even),
            x264 crf and preset, and the fewest output frames (fewer is an error).

    Returns:
        The manifest row.

    Raises:
        VideoDecodeError: unreadable, empty, audio-only, corrupt or too short input, frame times
            past the declared duration (`duration_limit`), a size out of bounds
            (`decoded_size`), or an output the H.264 encoder refuses. Errors of the machine
            (a full disk, no memory) propagate as they are.
    """
    fps, min_frames = settings.fps, settings.min_frames
    hold = _SampleAndHold(fps)
    out = None
    frames_in = 0
    frames_out = 0
    last_t = prev_t = Fraction(0)
    info: SourceInfo | None = None
    size: tuple[int, int] | None = None
    longest = Fraction(1, fps)  # the longest interval between frames so far: what one frame may last
    source = iter_source_frames(src)
    try:
        for frame, t, info in source:
            limit = duration_limit(info.duration, longest)
            if out is None:
                size = decoded_size(src, frame.width, frame.height, settings.short_side)
                out, ostream = _open_writer(dst, size, fps=fps, crf=settings.crf, preset=settings.preset)
            else:
                if limit is not None and t - hold.t0 > limit:
                    raise VideoDecodeError(
                        f"{src}: frame {frames_in} is at {_seconds(t - hold.t0)}, {_seconds(t - last_t)} after the one "
                        f"before it, past the {_seconds(info.duration)} the file declares plus one frame of "
                        f"{_seconds(longest)} (limit {_seconds(limit)}, features.video.duration_limit): its timestamps "
                        "jump; re-encode it with regenerated timestamps or leave it out"
                    )
                longest = max(longest, t - last_t)
            frames_in += 1
            prev_t, last_t = last_t, t
            small = frame.reformat(width=size[0], height=size[1], format="yuv420p", interpolation="AREA")
            for held in hold.push(small, t):
                frames_out += _encode(out, ostream, held, frames_out)
        if info is None or hold.t0 is None:
            raise VideoDecodeError(f"{src}: the video stream has no frames")
        # The last frame lasts as long as the interval before it (containers disagree on it),
        # but not past the declared duration plus one frame (`limit`, of the frames before it).
        if frames_in > 1:
            step = last_t - prev_t
        else:
            step = Fraction(1) / Fraction(info.fps) if info.fps else Fraction(1, fps)
        end_rel = last_t + step - hold.t0
        if limit is not None:
            end_rel = min(end_rel, limit)
        for held in hold.close(end_rel):
            frames_out += _encode(out, ostream, held, frames_out)
        if frames_out < min_frames:
            raise VideoDecodeError(
                f"{src}: too short: {frames_out} frames at {fps} fps, expected at least {min_frames} (one snippet)"
            )
        for packet in ostream.encode(None):
            out.mux(packet)
    except av.error.FFmpegError as err:  # the decoder's are VideoDecodeErrors already: these are the encoder's
        if isinstance(err, (OSError, MemoryError)):
            raise  # the disk or the machine, not this video
        output = f"the {size[0]}x{size[1]} px output" if size else "the output"
        raise VideoDecodeError(f"{src}: the H.264 encoder refused {output}: {err}") from None
    finally:
        source.close()
        if out is not None:
            out.close()
    return DecodedVideo(
        source_fps=round(info.fps, 6),
        duration=float(end_rel),
        frames_in=frames_in,
        frames_out=frames_out,
        width=size[0],
        height=size[1],
    )


def _seconds(t: Fraction) -> str:
    """A time in seconds for messages, to the millisecond."""
    return f"{float(t):.3f} s"


def add_h264_stream(container, *, width: int, height: int, rate: int | Fraction, crf: int, preset: str):
    """Add the project's deterministic H.264 stream (yuv420p) to an output container.

    Every mp4 the project writes (decoded videos, rendered synthetic videos) goes through
    here. One thread and no macroblock-tree rate control: with mbtree on and x264's own
    threads, identical input gave different bytes now and then at small sizes (at 64x64 on
    an AVX-512 CPU: one video of six, from its 34th frame, in one of six runs of
    tests/test_pipeline_dask.py; at 64x48, 64x64 and 80x60 in the renderer).

    Args:
        container: a PyAV output container.
        width, height: frame size in pixels.
        rate: frames per second.
        crf: x264 constant rate factor.
        preset: x264 preset name.

    Returns:
        The PyAV video stream.
    """
    stream = container.add_stream("libx264", rate=rate)
    stream.width, stream.height = width, height
    stream.pix_fmt = "yuv420p"
    stream.options = {"crf": str(crf), "preset": preset, "x264-params": "mbtree=0"}
    stream.codec_context.thread_count = 1
    return stream


def _open_writer(dst: Path, size: tuple[int, int], *, fps: int, crf: int, preset: str):
    out = av.open(str(dst), mode="w", format="mp4")
    stream = add_h264_stream(out, width=size[0], height=size[1], rate=fps, crf=crf, preset=preset)
    stream.codec_context.time_base = Fraction(1, fps)
    return out, stream


def _encode(out, stream, held: av.VideoFrame, index: int) -> int:
    held.pts = index  # the encoder copies the frame, so a held frame can be sent again
    held.time_base = stream.codec_context.time_base
    for packet in stream.encode(held):
        out.mux(packet)
    return 1


def iter_decoded_frames(path: Path) -> Iterator[np.ndarray]:
    """Stream the RGB frames (H, W, 3) uint8 of a decoded (constant-rate) video, in order."""
    for frame, _t, _info in iter_source_frames(path):
        yield frame.to_ndarray(format="rgb24")


class DecodedFrames(Closing):
    """A decoded video's RGB frames as a forward-only, sliceable sequence in bounded memory.

    ``frames[lo:hi]`` returns the (hi - lo, H, W, 3) uint8 frames lo..hi-1, decoding on demand;
    frames before the latest ``lo`` are released, so memory holds one window (the frames of
    one snippet batch in the extract stage), whatever the video's length. Slices must move
    forward (``lo`` never decreases), which is how ``features.snippets.iter_snippet_batches``
    reads. The length comes from the decode manifest; the stream is checked against it.

    Args:
        path: a decoded (constant-rate) video, e.g. ``data/decoded/<vid>.mp4``.
        num_frames: its frame count (the decode manifest's ``frames_out``).
    """

    def __init__(self, path: Path, *, num_frames: int) -> None:
        self.path = Path(path)
        self.num_frames = int(num_frames)
        self._stream = iter_decoded_frames(self.path)
        self._window: list[np.ndarray] = []  # frames _first .. _decoded - 1
        self._first = 0
        self._decoded = 0  # frames taken from the stream so far
        self._shape: tuple[int, ...] = (0, 0, 3)  # (H, W, 3) once a frame is decoded
        self._exhausted = False

    def __len__(self) -> int:
        return self.num_frames

    def __getitem__(self, index: slice) -> np.ndarray:
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError(f"{self.path}: DecodedFrames takes contiguous slices frames[lo:hi], got {index!r}")
        lo, hi, _ = index.indices(self.num_frames)
        hi = max(hi, lo)
        if lo < self._first:
            raise ValueError(
                f"{self.path}: frames before {self._first} were released; slices must move forward (asked from {lo})"
            )
        if lo >= self._decoded:  # past the window: skip the frames in between
            self._window.clear()
            while self._decoded < lo:
                self._next_frame()
        else:
            del self._window[: lo - self._first]
        self._first = lo
        while self._decoded < hi:
            self._window.append(self._next_frame())
        if hi == self.num_frames:
            self._check_end()
        if hi == lo:
            return np.empty((0, *self._shape), np.uint8)
        return np.stack(self._window[: hi - lo])  # (hi - lo, H, W, 3)

    def _next_frame(self) -> np.ndarray:
        frame = next(self._stream, None)
        if frame is None:
            raise VideoDecodeError(
                f"{self.path}: ends after {self._decoded} frames, expected {self.num_frames} (decode manifest)"
            )
        self._decoded += 1
        self._shape = frame.shape
        return frame

    def _check_end(self) -> None:
        """The stream must end where the manifest says (a stale manifest or a replaced file otherwise)."""
        if not self._exhausted:
            extra = next(self._stream, None)
            self._exhausted = True
            if extra is not None:
                self._stream.close()
                raise VideoDecodeError(
                    f"{self.path}: has more than the {self.num_frames} frames of the decode manifest"
                )

    def close(self) -> None:
        """Stop decoding and release the file."""
        self._stream.close()
        self._window.clear()


def read_decoded_frames(path: Path) -> np.ndarray:
    """All frames of a decoded video as one (N, H, W, 3) uint8 array (small videos, tests;
    the stages stream through `DecodedFrames` or `iter_decoded_frames`)."""
    frames = list(iter_decoded_frames(path))
    if not frames:
        raise VideoDecodeError(f"{path}: no frames")
    return np.stack(frames)
