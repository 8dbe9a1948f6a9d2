"""`python -m pipeline detect`: a trained model applied to new videos.

Each video goes through the stages' own code, with every setting taken from the model folder's
record (`lacp.model_io`: the attributes of the feature store the model was trained on), so the
features of a new video are made exactly as the training's were:

    decode (`stages.decode`, 25 fps, the recorded short side) -> flow (`stages.flow`, the
    recorded method and settings) -> I3D features (`stages.extract`, the recorded crop,
    frame_step, precision; weights checked by SHA-256) -> the evaluate stage's inference
    (`lacp.inference.predict`) and proposal step (`lacp.proposals`, the recorded detection settings,
    each overridable by a flag: `detection_settings`)

Each step calls the stage's own per-video function (`stages.decode.decode_video`,
`stages.flow.flow_video`, `stages.extract.extract_video`) with its files in a temporary folder
that is removed afterwards; frames stream through every step, so memory does not grow with the
video's length. No DVC repository, Prefect server or params file is needed (params.yaml, when
there is one, only gives the default places of the model and the I3D weights).

Phases (`detect`):
  1. `load_detector`: rebuild the decode, flow and extract params from the record, remake the
     feature store attrs they give with the I3D weights at hand, and refuse the model folder,
     naming the setting, where any of them differs; warn where only numerics may differ (the
     extraction code changed, or this machine computes in another dtype).
  2. `detect_video`, video by video; a bad video (missing, corrupt, no video stream, too short)
     is reported by name with the reason and the others go on.
  3. `results_document`: ActivityNet results (`lacp.proposals.to_results_json`) plus what
     happened to each input, merged into the earlier results of the same file
     (`earlier_results`: a results file is never overwritten with less); `write_pictures`: one
     timeline per video.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pydantic
import torch

from core.device import resolve_device
from core.files import sha256_file
from core.version import project_version
from detector.config import InferenceConfig
from detector.model_io import VIDEO_SCORER, read_detector_meta
from features.store import FeatureStore, FeatureStoreWriter
from lacp.model_io import feature_record, read_model_meta
from lacp.plots.analysis import ModelView, plot_comparison
from lacp.plots.canvas import CURVE_NAMES
from lacp.proposals import DetectionConfig, to_results_json
from pipeline.console import format_seconds
from sources.directory import DEFAULT_EXTENSIONS
from stages import decode as decode_stage
from stages import extract as extract_stage
from stages import flow as flow_stage
from stages.artifacts import model_kind, read_weights_info
from stages.common import StageParams, VideoError
from stages.predictors import DetectorPredictor, LacpPredictor, load_predictor

log = logging.getLogger(__name__)

__all__ = [
    "Detector",
    "ModelFolderError",
    "RECORD_LIMITS",
    "ResultsFileError",
    "VideoDetections",
    "collect_videos",
    "detect",
    "detect_video",
    "detection_settings",
    "earlier_results",
    "load_detector",
    "results_document",
    "write_pictures",
]

VIDEO_ID = "video"  # the id (and file stem) a video has inside its temporary workspace (any file name works outside)
NUMERIC_ONLY = ("code", "compute_dtype")  # record keys whose difference changes numerics, not settings: warned about
EXTRACT_KEYS = ("snippet", "stride", "frame_step", "crop", "precision")  # the extract section's recorded keys
RESULT_SECTIONS = ("results", "failed", "videos")  # a results file's per-video sections (`results_document`)

# The most a model folder's feature record may state for each setting that sizes a new video's
# work (frames decoded per second, frames per snippet, pixels per crop, flow pairs per batch):
# far above a real model's (25 fps, snippets of 16, crop 224, batch 8), far below a decode of
# millions of frames or an exhausted memory. The decoded size is bounded by `DecodeParams` itself.
RECORD_LIMITS: dict[str, int] = {
    "decode_params.fps": 120,
    "snippet": 256,
    "stride": 256,
    "frame_step": 256,
    "crop": 2160,
    "flow_params.tvl1_torch_batch": 256,
}


class ModelFolderError(ValueError):
    """A model folder whose recorded feature settings this project cannot reproduce here."""


class ResultsFileError(ValueError):
    """A `--out` file that detect may not merge into without `--force`."""


@dataclass(frozen=True)
class Detector:
    """Everything `detect_video` needs, rebuilt from a model folder.

    Attributes:
        model_dir: the model folder.
        weights_dir: the I3D weights (rgb.pt, flow.pt, weights.json) matching the record.
        kind: the folder's model kind ("lacp" or "detector", `stages.artifacts.model_kind`).
        predictor: the model applied to stored features (`stages.predictors`), on `device`.
        classes: class names by index.
        settings: the detection settings a results file records, shaped as the params' `detection`
            section (`detection_settings`: the folder's record with the caller's overrides).
        decode: the decode section the training's features were made with.
        flow: the flow section (device: the caller's).
        extract: the extract section's recorded keys (device: the caller's).
        attrs: the feature store attrs these sections give here (`stages.extract.store_attrs`),
            checked against the record: those of a new video's features.
        device: where the flow (tvl1_torch), I3D and the model run.
    """

    model_dir: Path
    weights_dir: Path
    kind: str
    predictor: LacpPredictor | DetectorPredictor
    classes: list[str]
    settings: dict[str, Any]
    decode: decode_stage.DecodeParams
    flow: flow_stage.FlowParams
    extract: extract_stage.ExtractParams
    attrs: dict[str, Any]
    device: torch.device


@dataclass
class VideoDetections:
    """One video's outcome.

    Attributes:
        name: the results key (the file name without its extension).
        path: the input file.
        detections: {"label_index", "score", "segment": [s, e]} in the video's seconds, best first.
        q: (T or N, C+1) the picture's curves: LACP's fused scores on the grid the network saw, or
            the detector's `stages.predictors.coverage_scores`.
        q_seconds: seconds per row of `q`.
        duration: the video's length in seconds.
        seconds: wall time per phase (decode, flow, features, model).
        reason: why the video failed (empty when it did not).
    """

    name: str
    path: Path
    detections: list[dict] = field(default_factory=list)
    q: np.ndarray | None = None
    q_seconds: float = 0.0
    duration: float = 0.0
    seconds: dict[str, float] = field(default_factory=dict)
    reason: str = ""

    @property
    def ok(self) -> bool:
        return not self.reason


# ---------------------------------------------------------------------------------------------
# 1. the model folder


def _rebuild(model: type[StageParams], values: dict[str, Any], *, record_key: str, model_dir: Path) -> Any:
    """A stage's params from the record, or a `ModelFolderError` naming the setting."""
    try:
        return model(**values)
    except pydantic.ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ModelFolderError(
            f"{model_dir / 'model.json'}: recorded feature setting '{record_key}.{key}' = {first.get('input')!r} "
            f"cannot be reproduced by this version of the project ({project_version()}): {first['msg']}"
        ) from None


def _recorded_section(record: dict[str, Any], key: str, *, where: Path) -> dict[str, Any]:
    """The record's `decode_params` / `flow_params`: a JSON object written as a string."""
    try:
        section = json.loads(record[key])
    except (TypeError, json.JSONDecodeError):
        section = None
    if not isinstance(section, dict):
        raise ModelFolderError(
            f"{where}: recorded feature setting '{key}' = {record[key]!r:.200} is not a JSON object "
            "as a string (the train stage records one): the file was edited or not written by it"
        )
    return section


def _check_limits(values: dict[str, Any], *, where: Path) -> None:
    """Refuse a recorded setting above its `RECORD_LIMITS` entry, before anything is decoded."""
    for key, limit in RECORD_LIMITS.items():
        value = values.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > limit:
            raise ModelFolderError(
                f"{where}: recorded feature setting '{key}' = {value!r} is above {limit}, the most detect accepts "
                "(a real model's is far below it): the file was edited or not written by the train stage"
            )


def _weights_info(weights_dir: Path) -> dict[str, Any]:
    """weights.json with the SHA-256 of the files actually there (a replaced rgb.pt is caught)."""
    info = dict(read_weights_info(weights_dir))
    for stream in ("rgb", "flow"):
        path = weights_dir / f"{stream}.pt"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: --weights must name the folder of the I3D weights "
                "the model's features were made with (the weights stage writes it)"
            )
        info[f"{stream}_sha256"] = sha256_file(path)
    return info


def detection_settings(
    model_dir: Path, *, kind: str, overrides: Mapping[str, Any]
) -> tuple[DetectionConfig, InferenceConfig, dict[str, Any]]:
    """The detection settings `detect` applies: the model folder's record, each key the caller
    gives replacing the recorded one.

    An LACP folder records LACP's settings (model.json `detection`, the train stage's section); a
    detector folder its post-processing (`inference`, selftrain's `detection.detector`) and, when
    it fuses its scores with LACP's video scores, LACP's in the copied LACP folder.

    Args:
        model_dir: the model folder.
        kind: its kind ("lacp" or "detector").
        overrides: keys of the params' `detection` section: LACP's (`DetectionConfig` fields) and
            `detector` ({`InferenceConfig` field: value}).

    Returns:
        LACP's settings, the detector's (the defaults for an LACP folder, which does not use
        them), and what a results file records: LACP's keys (unless a detector folder fuses no
        LACP scores) plus `detector` for a detector folder.

    Raises:
        ModelFolderError: an override the folder does not use (the detector's post-processing for
            an LACP folder; LACP's keys for a detector folder without LACP video scores).
        ValueError: an override out of its range, named by its flag.
    """
    where = Path(model_dir) / "model.json"
    lacp_overrides = {k: v for k, v in overrides.items() if k != "detector"}
    detector_overrides = dict(overrides.get("detector", {}))
    if kind == "lacp":
        if detector_overrides:
            raise ModelFolderError(
                f"{where}: {_flags(detector_overrides)} set the self-trained detector's "
                "post-processing; an LACP folder's detections are LACP's proposals"
            )
        config = _overridden(DetectionConfig, read_model_meta(model_dir)["detection"], lacp_overrides)
        return config, InferenceConfig(), config.model_dump()
    meta, _, recorded = read_detector_meta(model_dir)
    inference = _overridden(InferenceConfig, recorded.model_dump(), detector_overrides)
    if meta["video_scores"] != "lacp":
        if lacp_overrides:
            raise ModelFolderError(
                f"{where}: {_flags(lacp_overrides)} set LACP's settings; this self-trained "
                "detector fuses no LACP video scores (video_scores: none)"
            )
        return DetectionConfig(), inference, {"detector": inference.model_dump()}
    config = _overridden(DetectionConfig, read_model_meta(Path(model_dir) / VIDEO_SCORER)["detection"], lacp_overrides)
    return config, inference, {**config.model_dump(), "detector": inference.model_dump()}


def _flags(keys: Iterable[str]) -> str:
    """The `detect` flags of detection keys: `--class-threshold, --nms-sigma`."""
    return ", ".join(f"--{k.replace('_', '-')}" for k in sorted(keys))


def _overridden(
    cls: type[DetectionConfig] | type[InferenceConfig], recorded: Mapping[str, Any], overrides: Mapping[str, Any]
) -> Any:
    """`cls` from a record with the caller's overrides; a bad override is named by its flag."""
    try:
        return cls(**{**recorded, **overrides})
    except pydantic.ValidationError as err:
        first = err.errors()[0]
        raise ValueError(f"detect {_flags([str(first['loc'][0])])} {first['input']!r}: {first['msg']}") from None


def load_detector(
    model_dir: Path,
    *,
    weights_dir: Path,
    device: str = "auto",
    overrides: dict[str, Any] | None = None,
) -> Detector:
    """Rebuild the feature and detection settings of a model folder and check they can be met.

    Args:
        model_dir: a model folder written by the train stage (LACP) or the selftrain stage (the
            self-trained detector: `kind` "detector" in its model.json).
        weights_dir: the I3D weights folder (the weights stage's output).
        device: auto | cpu | cuda, for the flow (tvl1_torch only), I3D and the model.
        overrides: keys of the params' `detection` section to use instead of the folder's record
            (`detection_settings`).

    Returns:
        The detector.

    Raises:
        ModelFolderError: the folder has no feature record, a recorded setting is above its
            `RECORD_LIMITS` entry or not one this version can reproduce, or the weights are not
            the recorded ones (the message names the setting, what was recorded and what is here).
        ValueError: model.json's sizes or detection settings are refused by
            `lacp.model_io.read_model_meta`, or model.pt does not fit them.
        FileNotFoundError: the model or the weights are missing.
    """
    model_dir, weights_dir = Path(model_dir), Path(weights_dir)
    kind = model_kind(model_dir)
    meta = read_model_meta(model_dir) if kind == "lacp" else read_detector_meta(model_dir)[0]
    config, inference, settings = detection_settings(model_dir, kind=kind, overrides=overrides or {})
    record = meta["features"]
    where = model_dir / "model.json"
    if not record:
        raise ModelFolderError(
            f"{where}: no feature record ('features'): the model was trained before model "
            "folders recorded their features, or outside the pipeline; retrain it with the train stage"
        )
    missing = [k for k in ("decode_params", "flow_params", *EXTRACT_KEYS) if k not in record]
    if missing:
        raise ModelFolderError(
            f"{where}: the feature record lacks {missing}: its features were not made by this "
            "pipeline's stages (imported .npy features?), so detect cannot make a new video's the same way"
        )

    # the stages' params as the record states them, bounded first; the device is the caller's
    recorded = {key: _recorded_section(record, key, where=where) for key in ("decode_params", "flow_params")}
    _check_limits(
        {**record, **{f"{key}.{k}": v for key, section in recorded.items() for k, v in section.items()}}, where=where
    )
    decode = _rebuild(
        decode_stage.DecodeParams, recorded["decode_params"], record_key="decode_params", model_dir=model_dir
    )
    flow = _rebuild(
        flow_stage.FlowParams,
        {**recorded["flow_params"], "device": device},
        record_key="flow_params",
        model_dir=model_dir,
    )
    flow_stage.check_device(flow)
    extract = _rebuild(
        extract_stage.ExtractParams,
        {k: record[k] for k in EXTRACT_KEYS} | {"device": device},
        record_key="features",
        model_dir=model_dir,
    )

    # the attrs these params give here, key by key against the record
    attrs = extract_stage.store_attrs(
        extract,
        decode=decode.model_dump(),
        flow=flow_stage.recorded_params(flow),
        weights=_weights_info(weights_dir),
        excluded={},
    )
    remade = feature_record(attrs)
    for key in sorted(set(record) | set(remade)):
        if record.get(key) == remade.get(key):
            continue
        if key in NUMERIC_ONLY:
            log.warning(
                "%s: recorded %s %r, here %r: the features of new videos may differ slightly from the training's",
                where,
                key,
                record.get(key),
                remade.get(key),
            )
            continue
        hint = f" (--weights {weights_dir} holds other I3D weights)" if key == "weights_sha256" else ""
        raise ModelFolderError(
            f"{where}: recorded feature setting '{key}' = {record.get(key)!r}, but detect "
            f"would make {remade.get(key)!r}{hint}"
        )

    resolved = resolve_device(device)
    predictor = load_predictor(model_dir, config, resolved, classes=list(meta["classes"]), inference=inference)
    return Detector(
        model_dir=model_dir,
        weights_dir=weights_dir,
        kind=kind,
        predictor=predictor,
        classes=list(meta["classes"]),
        settings=settings,
        decode=decode,
        flow=flow,
        extract=extract,
        attrs=attrs,
        device=resolved,
    )


# ---------------------------------------------------------------------------------------------
# 2. one video


def detect_video(path: Path, detector: Detector, *, work_dir: Path, name: str | None = None) -> VideoDetections:
    """Detect the actions of one video through the stages' per-video functions, in `work_dir`
    (left to the caller).

    Args:
        path: the video file.
        detector: `load_detector`'s.
        work_dir: an empty (or new) folder for the decoded video, its flow and its features.
        name: the results key (default: the file name without its extension).

    Returns:
        The detections, best first, and the scores they came from.

    Raises:
        VideoError: the video cannot be read, has no video stream or is too short (the reason
            as the decode, flow or extract stage gives it).
    """
    path, work_dir = Path(path), Path(work_dir)
    out = VideoDetections(name=name or path.stem, path=path)
    if not path.is_file():
        raise VideoError(out.name, f"file not found: {path}")
    work_dir.mkdir(parents=True, exist_ok=True)
    decoded, flow, features = work_dir / f"{VIDEO_ID}.mp4", work_dir / f"{VIDEO_ID}.h5", work_dir / "features.h5"

    started = time.perf_counter()
    row = decode_stage.decode_video(path.resolve(), out=decoded, params=detector.decode, video_id=VIDEO_ID)
    out.seconds["decode"] = time.perf_counter() - started
    out.duration = row.duration

    started = time.perf_counter()
    flow_stage.flow_video(decoded, out=flow, params=detector.flow, video_id=VIDEO_ID)
    out.seconds["flow"] = time.perf_counter() - started

    started = time.perf_counter()
    got = extract_stage.extract_video(
        VIDEO_ID,
        decoded=decoded,
        flow=flow,
        num_frames=row.frames_out,
        params=detector.extract,
        weights_dir=detector.weights_dir,
    )
    writer = FeatureStoreWriter(features, attrs=detector.attrs)
    writer.write(
        VIDEO_ID,
        rgb=got.rgb,
        flow=got.flow,
        frames=row.frames_out,
        source_fps=row.source_fps,
        compute_dtype=got.compute_dtype,
    )
    writer.finalize()
    out.seconds["features"] = time.perf_counter() - started

    started = time.perf_counter()
    with FeatureStore(features) as store:
        proposals, _, scores, seconds = detector.predictor(store, [VIDEO_ID], keep_scores=[VIDEO_ID])
    out.q_seconds = seconds[VIDEO_ID]
    out.detections = sorted(proposals[VIDEO_ID], key=lambda p: -float(p["score"]))
    out.q = scores[VIDEO_ID]  # (T or N, C+1)
    out.seconds["model"] = time.perf_counter() - started
    return out


# ---------------------------------------------------------------------------------------------
# 3. many videos, results, pictures


def collect_videos(inputs: Iterable[Path], *, extensions: Sequence[str] = DEFAULT_EXTENSIONS) -> list[Path]:
    """The video files named by `inputs`: files as they are (a missing one is kept, to be
    reported), and each folder's files with one of `extensions` (any case), sorted.

    Raises:
        ValueError: a folder holds no such file, or two inputs would share a results key (the
            file name without its extension).
    """
    endings = {e.lower().lstrip(".") for e in extensions}
    videos: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower().lstrip(".") in endings)
            if not found:
                raise ValueError(f"{item}: no video files (endings {', '.join(sorted(endings))})")
            videos += found
        else:
            videos.append(item)
    seen: dict[str, Path] = {}
    for video in videos:
        if video.stem in seen:
            raise ValueError(
                f"two inputs named '{video.stem}': {seen[video.stem]} and {video} (results are keyed by "
                "the file name without its extension; rename one)"
            )
        seen[video.stem] = video
    return videos


def _describe(result: VideoDetections, classes: Sequence[str], *, best: int = 3) -> str:
    """`N detections; best: class s-e s (score), ...`."""
    shown = ", ".join(
        f"{classes[d['label_index']]} {d['segment'][0]:.1f}-{d['segment'][1]:.1f} s ({d['score']:.2f})"
        for d in result.detections[:best]
    )
    count = len(result.detections)
    return f"{count} detection{'s' * (count != 1)}" + (f"; best: {shown}" if shown else "")


def detect(
    videos: Sequence[Path],
    detector: Detector,
    *,
    threshold: float | None = None,
    say: Callable[[str], None] = print,
    on_video: Callable[[list[VideoDetections]], None] | None = None,
) -> list[VideoDetections]:
    """Detect the actions of every video in turn; a bad video is reported and skipped.

    Args:
        videos: video files (`collect_videos`).
        detector: `load_detector`'s.
        threshold: detections scoring below it are dropped (None: every detection is kept, as
            the evaluate stage keeps them).
        say: where the progress lines go (two per video: started, and its outcome).
        on_video: called with the outcomes so far after each video (the command rewrites its
            results file there, so an interrupted run keeps every finished video).

    Returns:
        One outcome per video, in order; failed ones carry their `reason`.
    """
    results = []
    for i, path in enumerate(videos, 1):
        head = f"[detect] {i}/{len(videos)} {path.name}"
        say(f"{head}: decode, flow, features, model ...")
        work = Path(tempfile.mkdtemp(prefix="lacp-detect-"))
        started = time.perf_counter()
        try:
            result = detect_video(path, detector, work_dir=work)
        except VideoError as err:
            result = VideoDetections(name=path.stem, path=path, reason=err.reason)
            say(f"{head}: FAILED: {err.reason}")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if result.ok:
            if threshold is not None:
                result = replace(result, detections=[d for d in result.detections if d["score"] >= threshold])
            took = time.perf_counter() - started
            phases = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
            say(
                f"{head} ({format_seconds(result.duration)} of video): {_describe(result, detector.classes)} "
                f"[{format_seconds(took)}: {phases}]"
            )
        results.append(result)
        if on_video is not None:
            on_video(results)
    return results


def _model_record(detector: Detector) -> dict[str, Any]:
    """What a results file records of the model that made it: its folder and detection settings."""
    return {"folder": str(detector.model_dir), "kind": detector.kind, "detection": detector.settings}


def earlier_results(path: Path, detector: Detector, *, force: bool = False) -> dict[str, Any] | None:
    """The results file at `path` that this run's videos are merged into, read before any video runs.

    A file `detect` wrote with the same model folder and detection settings keeps every video it
    holds that this run does not process (`results_document`). Anything else at `path` is refused
    without `force`, so that no earlier work is silently replaced.

    Args:
        path: the `--out` file.
        detector: this run's.
        force: replace whatever is at `path` (None is returned: nothing is merged).

    Returns:
        The earlier document, or None when there is none (or `force`).

    Raises:
        ResultsFileError: `path` exists and is not a results file of `detect`, or one made with
            another model folder or other detection settings; the message names the file, what
            differs and `--force`.
    """
    path = Path(path)
    if force or not (path.exists() or path.is_symlink()):
        return None
    keep = "choose another --out, or pass --force to replace it"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ResultsFileError(f"{path}: exists and is not a results file written by detect ({err}); {keep}") from None
    if not (
        isinstance(document, dict)
        and isinstance(document.get("model"), dict)
        and all(isinstance(document.get(k), dict) for k in RESULT_SECTIONS)
    ):
        raise ResultsFileError(
            f"{path}: exists and is not a results file written by detect (expected the keys "
            f"{', '.join(RESULT_SECTIONS)} and model); {keep}"
        )
    ours = _model_record(detector)
    for key, name in (("folder", "model folder"), ("detection", "detection settings")):
        theirs = document["model"].get(key)
        same = (
            Path(theirs).resolve() == Path(ours[key]).resolve()
            if key == "folder" and isinstance(theirs, str)
            else theirs == ours[key]
        )
        if not same:
            raise ResultsFileError(
                f"{path}: holds the results of {len(document['results'])} video(s) made with "
                f"{name} {theirs!r}, this run uses {ours[key]!r}: results of two models in one "
                f"file cannot be told apart; {keep}"
            )
    return document


def results_document(
    results: Sequence[VideoDetections], detector: Detector, *, earlier: dict[str, Any] | None = None
) -> dict[str, Any]:
    """ActivityNet results (`version`, `results`, `external_data`: what the official evaluator
    insists on) plus `failed` ({"path", "reason"} of each video that failed), `videos` (path,
    duration, seconds per phase of each detected one) and `model` (folder, detection settings).

    Args:
        results: this run's outcomes.
        detector: this run's.
        earlier: `earlier_results`' document: its entries of every video this run did not
            process are kept; a video processed again has only its new entry.

    Returns:
        The document.
    """
    document = to_results_json({r.name: r.detections for r in results if r.ok}, classes=detector.classes)
    document["failed"] = {r.name: {"path": str(r.path), "reason": r.reason} for r in results if not r.ok}
    document["videos"] = {
        r.name: {
            "path": str(r.path),
            "duration_s": round(r.duration, 3),
            "seconds": {k: round(v, 3) for k, v in r.seconds.items()},
        }
        for r in results
        if r.ok
    }
    document["model"] = _model_record(detector)
    if earlier:
        redone = {r.name for r in results}
        for section in RESULT_SECTIONS:
            document[section] = {**{k: v for k, v in earlier[section].items() if k not in redone}, **document[section]}
    return document


def write_pictures(
    results: Sequence[VideoDetections], detector: Detector, out_dir: Path, *, threshold: float
) -> list[Path]:
    """One timeline per detected video: its detections (best first) over the model's score curves."""
    written = []
    for r in results:
        if not r.ok:
            continue
        view = ModelView(
            name=detector.model_dir.name,
            detections=r.detections,
            q=r.q,
            q_seconds=r.q_seconds,
            curve=CURVE_NAMES[detector.kind][0],
        )
        written.append(
            plot_comparison(
                r.name,
                instances=None,
                views=[view],
                classes=detector.classes,
                threshold=threshold,
                path=Path(out_dir) / f"{r.name}.png",
            )
        )
    return written
