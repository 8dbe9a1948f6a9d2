"""flow stage: each decoded video -> uint8-quantised optical flow (one HDF5 file per video).

Per video `<out>/<vid>.h5` (dataset `flow` (N, H, W, 2) uint8, attrs method/bound) and a
sidecar `<out>/<vid>.json` with the fingerprint of the params, the flow code and the decoded
video; finished videos are skipped on a rerun where all three are unchanged. `finish` writes
`<out>/manifest.json` with bytes per video-minute.

`method: tvl1_torch` (features/tvl1.py) computes `tvl1_torch_batch` frame pairs at a time on
`device` (auto: CUDA when available) and runs one video at a time, since torch already uses
every core (or the GPU); `tvl1` params drive it as they drive OpenCV's `tvl1`.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any, Literal

import cv2
import torch

import features.flow
import features.tvl1
import features.video
from core.device import resolve_device
from core.files import read_json, remove_stale_tmp, sha256_file, write_json
from features.flow import FlowSettings, iter_flow, write_flow_frames
from features.video import VideoDecodeError, iter_decoded_frames
from stages.artifacts import DecodeManifest, FlowManifest
from stages.common import StageParams, VideoError, VideoPlan, VideoResult, code_fingerprint


class FlowParams(StageParams, FlowSettings):
    """The flow section: `features.flow.FlowSettings` (its `tvl1` subsection
    `features.tvl1.TVL1Settings`), handed to `iter_flow` as it is, and where it runs."""

    device: Literal["auto", "cpu", "cuda"] = "auto"  # tvl1_torch only


def recorded_params(params: FlowParams) -> dict[str, Any]:
    """The settings that make the flow what it is, as the manifest (and from there the feature
    store and the model folder) records them: every key but `device`, where it runs."""
    return params.model_dump(exclude={"device"})


def _gray_frames(path: Path):
    for rgb in iter_decoded_frames(path):
        yield cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def check_device(params: FlowParams) -> None:
    """Refuse `device: cuda` for tvl1_torch where torch sees no CUDA device, before any video runs.

    Args:
        params: the `flow` params section.

    Raises:
        ValueError: naming the setting.
    """
    if params.method == "tvl1_torch" and resolve_device(params.device).type == "cuda" and not torch.cuda.is_available():
        raise ValueError("flow.device: cuda, but torch sees no CUDA device; use auto or cpu")


def flow_video(decoded: Path, *, out: Path, params: FlowParams, video_id: str) -> int:
    """Compute the flow of one decoded video into an HDF5 file at `out` (`features.flow`).

    Args:
        decoded: the decoded mp4.
        out: the flow file to write (`features.flow.write_flow_frames`: through a temporary name).
        params: the `flow` params section (`check_device` passed).
        video_id: the video's name in a `VideoError`.

    Returns:
        The number of flow frames written (the decoded video's frame count).

    Raises:
        VideoError: the decoded video cannot be read.
    """
    device = resolve_device(params.device) if params.method == "tvl1_torch" else "cpu"
    flows = iter_flow(_gray_frames(decoded), params, device=device)
    try:
        return write_flow_frames(out, flows, method=params.method, bound=params.bound, params=params.model_dump())
    except VideoDecodeError as err:
        raise VideoError(video_id, str(err)) from None


def flow_one(video_id: str, *, params: FlowParams, decoded_dir: Path, out_dir: Path) -> VideoResult:
    """Compute and store the flow of one decoded video unless an identical result exists."""
    src = decoded_dir / f"{video_id}.mp4"
    dst, sidecar = out_dir / f"{video_id}.h5", out_dir / f"{video_id}.json"
    torch_method = params.method == "tvl1_torch"
    code = (features.flow, features.video, sys.modules[__name__]) + ((features.tvl1,) if torch_method else ())
    key = {"params": params.fingerprint(), "code": code_fingerprint(*code), "source": sha256_file(src)}
    if dst.is_file() and sidecar.is_file():
        done = read_json(sidecar, what="flow sidecar")
        if done.get("key") == key:
            return VideoResult(video_id, ok=True, info=done["info"], skipped=True)
    frames = flow_video(src, out=dst, params=params, video_id=video_id)
    info = {"frames": frames, "bytes": dst.stat().st_size}
    write_json(sidecar, {"key": key, "info": info})
    return VideoResult(video_id, ok=True, info=info)


def finish(results: list[VideoResult], *, params: FlowParams, out_dir: Path) -> dict[str, Any]:
    """Write manifest.json and the storage summary."""
    videos = {r.video_id: r.info for r in results if r.ok}
    failed = {r.video_id: r.reason for r in results if not r.ok}
    remove_stale_tmp(out_dir, targets=("*.h5", "*.json"))
    FlowManifest(
        method=params.method, bound=params.bound, params=recorded_params(params), videos=videos, failed=failed
    ).write(out_dir)
    frames = sum(v["frames"] for v in videos.values())
    stored = sum(v["bytes"] for v in videos.values())
    return {
        "videos": len(results),
        "computed": sum(r.ok and not r.skipped for r in results),
        "skipped": sum(r.skipped for r in results),
        "failed": len(failed),
        "bytes_per_video_minute": round(stored / (frames / 25 / 60)) if frames else 0,
    }


def plan(params: FlowParams, *, decoded_dir: Path, out_dir: Path) -> VideoPlan:
    """The flow stage as a per-video plan over the successfully decoded videos."""
    decoded_dir, out_dir = Path(decoded_dir), Path(out_dir)
    check_device(params)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(out_dir, targets=("*.h5", "*.json"))  # its flow files, sidecars and manifest
    videos = sorted(DecodeManifest.read(decoded_dir).videos)
    return VideoPlan(
        stage="flow",
        videos=videos,
        process=functools.partial(flow_one, params=params, decoded_dir=decoded_dir, out_dir=out_dir),
        finish=functools.partial(finish, params=params, out_dir=out_dir),
        max_workers=1 if params.method == "tvl1_torch" else None,  # torch already uses every core / the GPU
    )
