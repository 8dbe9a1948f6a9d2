"""extract stage: decoded frames + flow -> two-stream I3D features in one HDF5 file.

One Prefect task per video. Each finished video is written to its own part file
(`<features>.parts/<vid>.h5`), so a killed extraction resumes where it stopped; the parts are
merged into `<features>` at the end. A part, or a video of the finished `<features>` of an
earlier run (DVC keeps it: the out is `persist: true`), is reused while everything that changes
its numbers is unchanged: the settings in the store attrs (weights, time grid, crop, frame step,
flow and decode params, precision, code) and the video's input files (`input_identity`, recorded
per video); which videos failed upstream and the dtype the hardware ran in are bookkeeping,
recorded but not compared. So fixing or adding one video computes that one video only.
The network runs on exactly the path `bench/i3d.py` measures (`features.i3d.prepare_for_inference`).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

import features.i3d
import features.snippets
import features.video
from core.device import resolve_device
from core.files import quick_fingerprint, remove_stale_tmp
from features.flow import FlowFileError, FlowReader
from features.i3d import I3DInference, default_inference_dtype, prepare_for_inference
from features.snippets import SnippetSettings, stream_batches
from features.store import FeatureStoreWriter
from features.timegrid import TimeGrid
from features.video import DecodedFrames, VideoDecodeError
from features.weights import load_i3d
from stages.artifacts import DecodeManifest, FlowManifest, read_weights_info
from stages.common import StageParams, VideoError, VideoPlan, VideoResult, code_fingerprint

log = logging.getLogger(__name__)


class ExtractParams(StageParams, SnippetSettings):
    """The extract section: `features.snippets.SnippetSettings`, handed to `stream_batches` as it
    is, and where the network runs."""

    device: Literal["auto", "cpu", "cuda"] = "auto"


@functools.lru_cache(maxsize=4)
def load_stream(weights: str, in_channels: int, precision: str, device: str) -> I3DInference:
    """One inference-ready I3D per (weights, stream, precision, device) and process."""
    model = load_i3d(Path(weights), in_channels=in_channels)
    dtype = None if precision == "bf16" else torch.float32  # None: bf16 where the hardware has it
    return prepare_for_inference(model, dtype=dtype, device=device)


def stream_features(model: I3DInference, batches) -> np.ndarray:
    """(T, 1024) float32 features of all snippet batches."""
    return torch.cat([model.features(b) for b in batches]).float().cpu().numpy()


def dtype_name(dtype: torch.dtype) -> str:
    """A torch dtype as the store records it ("bfloat16", "float32")."""
    return str(dtype).removeprefix("torch.")


def input_identity(video_id: str, *, decoded_dir: Path, flow_dir: Path) -> str:
    """What identifies one video's input cheaply: `core.files.quick_fingerprint` of its decoded
    video and its flow file (size and first and last MiB: a redone decode or flow changes it).

    Raises:
        VideoError: one of the two files is missing, naming it and the stage to rerun.
    """
    files = {"decoded": (decoded_dir / f"{video_id}.mp4", "decode"), "flow": (flow_dir / f"{video_id}.h5", "flow")}
    for path, stage in files.values():
        if not path.is_file():
            raise VideoError(video_id, f"{path}: no such file (rerun the {stage} stage)")
    return json.dumps({key: quick_fingerprint(path) for key, (path, _) in files.items()}, sort_keys=True)


@dataclass(frozen=True)
class VideoFeatures:
    """One video's two-stream I3D features.

    Attributes:
        rgb: (T, 1024) float32, the RGB stream's.
        flow: (T, 1024) float32, the flow stream's.
        compute_dtype: the dtype the network ran in (`dtype_name`).
    """

    rgb: np.ndarray
    flow: np.ndarray
    compute_dtype: str


def extract_video(
    video_id: str, *, decoded: Path, flow: Path, num_frames: int, params: ExtractParams, weights_dir: Path
) -> VideoFeatures:
    """The I3D features of one video from its decoded mp4 and its flow file.

    Frames stream through in windows of one snippet batch (`features.video.DecodedFrames`,
    the flow file is read by slices), so memory does not grow with the video's length.

    Args:
        video_id: the video's name in a `VideoError`.
        decoded: the decoded mp4.
        flow: its flow file.
        num_frames: its frame count (the decode manifest's `frames_out`), checked against both.
        params: the `extract` params section.
        weights_dir: the I3D weights folder (rgb.pt, flow.pt).

    Returns:
        The features.

    Raises:
        VideoError: the flow file is unreadable or of another length, or the decoded video is
            not `num_frames` long or unreadable (naming the stage to rerun).
    """
    device = str(resolve_device(params.device))
    # fp32 convolutions sum in an order that depends on the thread count: use every core the
    # process may run on, whatever the runner (a Dask worker starts with OMP_NUM_THREADS=1),
    # so that a video's features do not depend on where it ran
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    rgb_model = load_stream(str(weights_dir / "rgb.pt"), 3, params.precision, device)
    flow_model = load_stream(str(weights_dir / "flow.pt"), 2, params.precision, device)
    cut = functools.partial(stream_batches, settings=params, dtype=rgb_model.dtype, device=device)
    try:
        flow_frames = FlowReader(flow)
    except FlowFileError as err:
        raise VideoError(video_id, f"{err} (delete it and rerun the flow stage)") from None
    with flow_frames:
        if len(flow_frames) != num_frames:
            raise VideoError(
                video_id, f"flow has {len(flow_frames)} frames, the decoded video {num_frames}: rerun the flow stage"
            )
        flow_feats = stream_features(flow_model, cut(flow_frames, stream="flow"))  # (T, 1024)
    try:
        with DecodedFrames(decoded, num_frames=num_frames) as frames:  # (N, H, W, 3) uint8
            rgb_feats = stream_features(rgb_model, cut(frames, stream="rgb"))  # (T, 1024)
    except VideoDecodeError as err:
        raise VideoError(video_id, f"{err} (rerun the decode stage)") from None
    return VideoFeatures(rgb=rgb_feats, flow=flow_feats, compute_dtype=dtype_name(rgb_model.dtype))


def extract_one(
    video_id: str,
    *,
    params: ExtractParams,
    decoded_dir: Path,
    flow_dir: Path,
    weights_dir: Path,
    out_path: Path,
    attrs: dict[str, Any],
    decoded: dict[str, dict[str, Any]],
) -> VideoResult:
    """Features of one video (`extract_video`) into its part file, unless a part or the finished
    store already holds them, made from the same input under the same settings
    (`features.store.FeatureStoreWriter.reuse`).

    Args:
        video_id: the video.
        params: the `extract` params section.
        decoded_dir: the decode stage's folder (`<vid>.mp4`).
        flow_dir: the flow stage's folder (`<vid>.h5`).
        weights_dir: the I3D weights folder.
        out_path: the feature store (its parts go to `<out_path>.parts/`).
        attrs: the store attrs (`store_attrs`).
        decoded: the decode manifest's rows (frame count and source fps per video).

    Returns:
        The video's result (`info`: its snippet count; skipped: reused).

    Raises:
        VideoError: as `extract_video`, or a missing input file (`input_identity`).
    """
    writer = FeatureStoreWriter(out_path, attrs=attrs)
    input_id = input_identity(video_id, decoded_dir=decoded_dir, flow_dir=flow_dir)
    if writer.reuse(video_id, input_id=input_id):
        return VideoResult(video_id, ok=True, skipped=True)
    num_frames = int(decoded[video_id]["frames_out"])
    got = extract_video(
        video_id,
        decoded=decoded_dir / f"{video_id}.mp4",
        flow=flow_dir / f"{video_id}.h5",
        num_frames=num_frames,
        params=params,
        weights_dir=weights_dir,
    )
    writer.write(
        video_id,
        rgb=got.rgb,
        flow=got.flow,
        frames=num_frames,
        source_fps=float(decoded[video_id]["source_fps"]),
        compute_dtype=got.compute_dtype,
        input_id=input_id,
    )
    return VideoResult(video_id, ok=True, info={"snippets": len(got.rgb)})


def finish(results: list[VideoResult], *, out_path: Path, attrs: dict[str, Any]) -> dict[str, Any]:
    """Merge the part files of the videos that succeeded into the feature store."""
    writer = FeatureStoreWriter(out_path, attrs=attrs)
    writer.finalize([r.video_id for r in results if r.ok])
    remove_stale_tmp(out_path.parent, targets=(out_path.name,))  # its own leftovers, no other stage's
    return {
        "videos": len(results),
        "extracted": sum(r.ok and not r.skipped for r in results),
        "resumed": sum(r.skipped for r in results),
        "failed": sum(not r.ok for r in results),
        "snippets": sum(r.info.get("snippets", 0) for r in results),
    }


def compute_dtype(params: ExtractParams) -> str:
    """The dtype the network computes in with these params on this machine ("bfloat16" or
    "float32"): `precision: bf16` falls back to float32 where the hardware lacks bf16."""
    if params.precision == "fp32":
        return "float32"
    return dtype_name(default_inference_dtype(resolve_device(params.device)))


def store_attrs(
    params: ExtractParams,
    *,
    decode: dict[str, Any],
    flow: dict[str, Any],
    weights: dict[str, Any],
    excluded: dict[str, str],
) -> dict[str, Any]:
    """File attributes of the feature store: its time grid (`features.timegrid`, the decoded
    frame rate and this stage's snippet and stride) and the provenance of every feature.

    Everything that makes a feature what it is is recorded, so that the train stage can copy it
    into the model folder and `pipeline.detect` can remake the features of a new video the same
    way: the decode and flow sections (`decode_params`, `flow_params`, JSON), this section's
    keys but `batch` and `device`, the weights' SHA-256 and the dtype the network ran in.

    Args:
        params: the `extract` section.
        decode: the decode section as its manifest records it (`params`).
        flow: the flow section as its manifest records it (`params`: all but the device).
        weights: `weights.json` (`stages.artifacts.read_weights_info`).
        excluded: videos left out upstream, with the reason.

    Returns:
        The attrs (scalars only, as HDF5 attributes must be).
    """
    return {
        **TimeGrid(fps=int(decode["fps"]), snippet=params.snippet, stride=params.stride).as_attrs(),
        "frame_step": params.frame_step,
        "crop": params.crop,
        "backbone": "i3d-inception-v1 (two-stream)",
        "weights_sha256": f"rgb:{weights['rgb_sha256']} flow:{weights['flow_sha256']}",
        "flow_method": f"{flow['method']} (bound {flow['bound']})",
        "flow_init": weights["flow_init"],
        "precision": params.precision,
        "compute_dtype": compute_dtype(params),  # this machine's; the store gets what its parts ran in
        "decode_params": json.dumps(decode, sort_keys=True),
        "flow_params": json.dumps(flow, sort_keys=True),
        # a change of the extraction code makes every part stale (the writer drops them);
        # excluded_videos and compute_dtype do not (features.store.RUN_ATTR_KEYS)
        "code": code_fingerprint(features.i3d, features.snippets, features.video, sys.modules[__name__]),
        "excluded_videos": json.dumps(excluded, sort_keys=True),
    }


def plan(params: ExtractParams, *, decoded_dir: Path, flow_dir: Path, weights_dir: Path, out_path: Path) -> VideoPlan:
    """The extract stage as a per-video plan over the videos that decode and flow produced."""
    decoded_dir, flow_dir, weights_dir, out_path = map(Path, (decoded_dir, flow_dir, weights_dir, out_path))
    decode_manifest = DecodeManifest.read(decoded_dir)
    flow_manifest = FlowManifest.read(flow_dir)
    decoded = decode_manifest.videos
    excluded = {**decode_manifest.failed, **flow_manifest.failed}
    videos = sorted(v for v in decoded if v in flow_manifest.videos)
    attrs = store_attrs(
        params,
        decode=decode_manifest.params,
        flow=flow_manifest.params,
        weights=read_weights_info(weights_dir),
        excluded=excluded,
    )
    FeatureStoreWriter(out_path, attrs=attrs)  # drops parts left by a run with other settings
    common = dict(out_path=out_path, attrs=attrs)
    return VideoPlan(
        stage="extract",
        videos=videos,
        process=functools.partial(
            extract_one,
            params=params,
            decoded_dir=decoded_dir,
            flow_dir=flow_dir,
            weights_dir=weights_dir,
            decoded=decoded,
            **common,
        ),
        finish=functools.partial(finish, **common),
        max_workers=1,  # the network already uses every core
    )
