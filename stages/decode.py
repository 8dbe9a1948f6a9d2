"""decode stage: every dataset video -> constant 25 fps, resized H.264 mp4 + manifest.

Per video `<out>/<vid>.mp4` and a sidecar `<out>/<vid>.json` (the manifest row plus a
fingerprint of the params, the decoding code and the source file). A rerun skips a video whose sidecar matches;
`finish` merges the sidecars into `<out>/manifest.json` and lists the failures.

The mp4 is flushed to disk before its sidecar is written, so a power cut cannot leave a sidecar
that vouches for an empty file. A source that cannot be seen (a moved file, an unmounted drive)
is a failure of that video, but what an earlier run finished for it is kept: its source may be
back on the next run. When no source at all can be seen, the stage stops and changes nothing.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Any

from core.files import atomic_path, quick_fingerprint, read_json, remove_stale_tmp, write_json
from features import video
from features.video import DecodedVideo, DecodeSettings, VideoDecodeError, decode_to_mp4
from stages.artifacts import SOURCE_MISSING, DecodeManifest, read_video_paths
from stages.common import StageParams, VideoError, VideoPlan, VideoResult, code_fingerprint

_LISTED = 5  # source paths named in the message of an unreachable folder


class SourcesUnreachableError(ValueError):
    """Not one source video of the dataset can be seen: its folder looks unreachable."""


class DecodeParams(StageParams, DecodeSettings):
    """The decode section: `features.video.DecodeSettings`, handed to `decode_to_mp4` as it is."""


def source_identity(path: Path) -> dict[str, Any]:
    """What identifies a source file cheaply: its name and `core.files.quick_fingerprint` (size
    and the first and last MiB; not mtime, which clones change)."""
    return {"name": Path(path).name, "fingerprint": quick_fingerprint(path)}


def decode_video(source: Path, *, out: Path, params: DecodeParams, video_id: str) -> DecodedVideo:
    """Decode one source video into an mp4 at `out`, on disk before this returns.

    Args:
        source: the source video file.
        out: the mp4 to write (written through a temporary name and flushed, so that a record
            written after it may vouch for it).
        params: the `decode` params section.
        video_id: the video's name in a `VideoError`.

    Returns:
        The decoded video's manifest row.

    Raises:
        VideoError: the source is unreadable, too short, or out of `features.video`'s bounds
            (the reason is `features.video`'s message, naming the file).
    """
    try:
        with atomic_path(out, fsync=True) as tmp:
            row = decode_to_mp4(source, tmp, settings=params)
    except VideoDecodeError as err:
        raise VideoError(video_id, str(err)) from None
    return row


def decode_one(video_id: str, *, params: DecodeParams, sources: dict[str, str], out_dir: Path) -> VideoResult:
    """Decode one video unless an identical earlier result exists.

    Args:
        video_id: the video.
        params: the `decode` params section.
        sources: video id -> source path (`stages.artifacts.read_video_paths`).
        out_dir: where its mp4 and sidecar go.

    Returns:
        The video's manifest row (skipped: an earlier run's, whose sidecar matches).

    Raises:
        VideoError: the source is missing (its earlier outputs are left in place; `finish`
            keeps them), unreadable, too short, or out of `features.video`'s bounds.
    """
    src = Path(sources[video_id])
    mp4, sidecar = out_dir / f"{video_id}.mp4", out_dir / f"{video_id}.json"
    if not src.is_file():
        kept = "; its decoded video of an earlier run is kept" if mp4.is_file() and sidecar.is_file() else ""
        raise VideoError(video_id, f"{SOURCE_MISSING}: {src}{kept} (restore it, or reconnect its folder, and rerun)")
    key = {
        "params": params.fingerprint(),
        "code": code_fingerprint(video, sys.modules[__name__]),
        "source": source_identity(src),
    }
    if mp4.is_file() and sidecar.is_file():
        done = read_json(sidecar, what="decode sidecar")
        if done.get("key") == key:
            return VideoResult(video_id, ok=True, info=done["info"], skipped=True)
    row = decode_video(src, out=mp4, params=params, video_id=video_id)  # on disk before the sidecar says it is done
    write_json(sidecar, {"key": key, "info": row.as_dict()})
    return VideoResult(video_id, ok=True, info=row.as_dict())


def finish(
    results: list[VideoResult], *, out_dir: Path, params: DecodeParams, sources: dict[str, str]
) -> dict[str, Any]:
    """Write manifest.json (the frame rate, the params, ok videos and failures) and drop the outputs
    of failed videos, but those whose source is missing (it may only be out of reach for now).

    Args:
        results: every video's result.
        out_dir: the decode folder.
        params: the `decode` params section.
        sources: video id -> source path.

    Returns:
        The summary: videos, decoded, skipped, failed (missing_sources of them), frames_out.

    Raises:
        SourcesUnreachableError: every video's source is missing; nothing is written or removed.
    """
    videos = {r.video_id: r.info for r in results if r.ok}
    failed = {r.video_id: r.reason for r in results if not r.ok}
    missing = sorted(vid for vid, reason in failed.items() if reason.startswith(SOURCE_MISSING))
    if missing and len(missing) == len(results):
        paths = [sources[vid] for vid in missing]
        folder = os.path.commonpath([os.path.dirname(p) for p in paths])
        raise SourcesUnreachableError(
            f"decode: none of the {len(paths)} source videos can be found ({', '.join(paths[:_LISTED])}"
            f"{' ...' if len(paths) > _LISTED else ''}): their folder {folder} looks unreachable (an unmounted "
            f"drive or share, or a moved folder?); no decoded video in {out_dir} was removed and no manifest "
            "written: reconnect it and rerun"
        )
    for vid in failed.keys() - set(missing):
        for suffix in (".mp4", ".json"):
            (out_dir / f"{vid}{suffix}").unlink(missing_ok=True)
    DecodeManifest(fps=params.fps, params=params.model_dump(), videos=videos, failed=failed).write(out_dir)
    return {
        "videos": len(results),
        "decoded": sum(r.ok and not r.skipped for r in results),
        "skipped": sum(r.skipped for r in results),
        "failed": len(failed),
        "missing_sources": len(missing),
        "frames_out": sum(v["frames_out"] for v in videos.values()),
    }


def plan(params: DecodeParams, *, dataset_dir: Path, out_dir: Path) -> VideoPlan:
    """The decode stage as a per-video plan.

    Args:
        params: the `decode` params section.
        dataset_dir: prepare's output (videos.json).
        out_dir: where decoded videos and the manifest go.

    Returns:
        A `VideoPlan` over every dataset video.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(out_dir, targets=("*.mp4", "*.json"))  # its videos, sidecars and manifest
    sources = read_video_paths(dataset_dir)
    return VideoPlan(
        stage="decode",
        videos=sorted(sources),
        process=functools.partial(decode_one, params=params, sources=sources, out_dir=out_dir),
        finish=functools.partial(finish, out_dir=out_dir, params=params, sources=sources),
    )
