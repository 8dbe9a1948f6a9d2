"""Bad input at the stage level: every case ends in a message that names the file, key or video
and what was expected, and everything else the stage had to do finishes intact.

Per-video stages (decode, flow, extract) report a bad video by id and reason and finish the
others; a bad whole-file input (gt.json, points csv, params, videos.json, feature store)
stops its stage before it writes anything. The unit-level checks of the same readers live in
test_features_video.py, test_stages_decode.py, test_sources_annotations.py,
test_lacp_point_formats.py, test_features_store.py and test_pipeline_params.py.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import h5py
import numpy as np
import pytest
import torch

from core.files import sha256_file, write_json
from detector.config import InferenceConfig
from features.flow import FlowReader
from features.i3d import I3D
from features.store import FeatureStoreError, FeatureStoreWriter
from features.video import read_decoded_frames
from features.weights import flow_from_rgb, save_state_dict
from lacp.model import LACPNet
from lacp.model_io import save_model
from lacp.points.formats import PointFileError
from lacp.proposals import DetectionConfig
from sources.annotations import AnnotationError, write_annotations
from sources.directory import DatasetError
from stages import decode, evaluate, extract, points, prepare, train
from stages import flow as flow_stage
from stages.common import run_plan
from tests.conftest import REPO
from tests.videos import expected_hold_indices, frame_levels, write_audio_only, write_indexed_video

# ---------------------------------------------------------------- videos of every kind


def write_noise_video(path: Path, frames: int, *, faststart: bool = False) -> None:
    """64x48 seeded noise at 25 fps (a realistic, incompressible bitstream)."""
    rng = np.random.default_rng(0)
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), mode="w", format="mp4", options=options) as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"crf": "23", "preset": "ultrafast"}
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def write_uhd_video(path: Path, frames: int) -> None:
    """3840x2160 at 25 fps; frame i has flat planes (cheap to encode, same decoder memory as real content)."""
    with av.open(str(path), mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 3840, 2160, "yuv420p"
        stream.options = {"crf": "30", "preset": "ultrafast"}
        for i in range(frames):
            frame = av.VideoFrame(3840, 2160, "yuv420p")
            for k, plane in enumerate(frame.planes):
                plane.update(bytes([(8 * i + 60 * k) % 256]) * plane.buffer_size)
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def cut(path: Path, keep: Callable[[bytes], int]) -> None:
    """Truncate a file to its first keep(data) bytes."""
    data = path.read_bytes()
    path.write_bytes(data[: keep(data)])


VFR_PTS = [0, 1, 2, 5, 6, 12, 13, 14, 20, 21, 22, 27, 28, 30, 31]  # irregular gaps, in 1/30 s


def make_truncated_in_index(path: Path) -> None:
    """A recording cut inside its trailing index (moov): the container opens with a data stream only."""
    write_indexed_video(path, list(range(30)), time_base=Fraction(1, 25), lossless=False)
    cut(path, lambda data: data.rfind(b"moov") + 171)


# video id -> (how to make its file, expected failure reason or None for a good video)
DECODE_CASES: dict[str, tuple[Callable[[Path], None] | None, str | None]] = {
    "good": (lambda p: write_indexed_video(p, list(range(30)), time_base=Fraction(1, 30)), None),
    "variable_rate": (lambda p: write_indexed_video(p, VFR_PTS, time_base=Fraction(1, 30)), None),
    "uhd_4k": (lambda p: write_uhd_video(p, 32), None),
    "zero_bytes": (lambda p: p.write_bytes(b""), "empty file (0 bytes)"),
    "text_named_mp4": (lambda p: p.write_text("this is not a video\n" * 20), "not a readable video container"),
    "audio_only": (write_audio_only, "no video stream (the file holds only audio streams)"),
    "truncated": (
        lambda p: (write_noise_video(p, 40, faststart=True), cut(p, lambda d: len(d) // 2)),
        "corrupt or truncated after",  # N frames (N depends on the decoder's thread count)
    ),
    "truncated_no_index": (
        lambda p: (write_noise_video(p, 40), cut(p, lambda d: len(d) // 2)),
        "not a readable video container",
    ),
    "truncated_in_index": (
        make_truncated_in_index,
        "no video stream (streams found: data; a truncated file, or not a video?)",
    ),
    "shorter_than_a_snippet": (
        lambda p: write_indexed_video(p, list(range(5)), time_base=Fraction(1, 25)),
        "too short: 5 frames at 25 fps, expected at least 16 (one snippet)",
    ),
    "missing_file": (None, "source file not found"),
}
GOOD = sorted(v for v, (_, reason) in DECODE_CASES.items() if reason is None)


class _Collect(logging.Handler):
    """Keeps the formatted messages of the records it receives."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def captured(logger: str) -> Iterator[list[str]]:
    """The messages logged to `logger` inside the block (module-scoped fixtures cannot use caplog)."""
    handler = _Collect()
    log = logging.getLogger(logger)
    log.addHandler(handler)
    try:
        yield handler.messages
    finally:
        log.removeHandler(handler)


@pytest.fixture(scope="module")
def decoded(tmp_path_factory) -> dict[str, Any]:
    """The decode stage run once on a dataset folder holding every case of DECODE_CASES."""
    root = tmp_path_factory.mktemp("bad-input")
    dataset, videos = root / "dataset", root / "dataset" / "videos"
    videos.mkdir(parents=True)
    for vid, (make, _) in DECODE_CASES.items():
        if make is not None:
            make(videos / f"{vid}.mp4")
    write_json(dataset / "videos.json", {vid: f"videos/{vid}.mp4" for vid in DECODE_CASES})
    out = root / "decoded"
    with captured("stages.common") as messages:
        summary = run_plan(
            decode.plan(decode.DecodeParams(short_side=48, preset="ultrafast"), dataset_dir=dataset, out_dir=out)
        )
    return {
        "root": root,
        "dataset": dataset,
        "out": out,
        "summary": summary,
        "messages": messages,
        "manifest": json.loads((out / "manifest.json").read_text()),
    }


@pytest.mark.parametrize("vid", sorted(DECODE_CASES))
def test_decode_reports_each_bad_video_by_id(decoded, vid: str):
    reason = DECODE_CASES[vid][1]
    manifest, out = decoded["manifest"], decoded["out"]
    if reason is None:
        assert vid in manifest["videos"] and vid not in manifest["failed"]
        assert (out / f"{vid}.mp4").is_file() and (out / f"{vid}.json").is_file()
        return
    assert vid not in manifest["videos"]
    assert reason in manifest["failed"][vid]
    assert f"{vid}.mp4" in manifest["failed"][vid]  # names the file
    assert any(m.startswith(f"video '{vid}': ") and reason in m for m in decoded["messages"])  # and the video
    assert not (out / f"{vid}.mp4").exists() and not (out / f"{vid}.json").exists()


def test_decode_finishes_the_good_videos(decoded):
    out, manifest, summary = decoded["out"], decoded["manifest"], decoded["summary"]
    assert summary["decoded"] == len(GOOD) and summary["failed"] == len(DECODE_CASES) - len(GOOD)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["manifest.json"] + [f"{v}{s}" for v in GOOD for s in (".mp4", ".json")]
    )
    assert manifest["videos"]["good"]["frames_out"] == 25  # 30 frames at 30 fps = 1 s
    # 4K: decoded and resized to short side 48, aspect kept, every frame
    row = manifest["videos"]["uhd_4k"]
    assert (row["width"], row["height"], row["frames_in"], row["frames_out"]) == (86, 48, 32, 32)
    assert read_decoded_frames(out / "uhd_4k.mp4").shape == (32, 48, 86, 3)
    # variable frame rate: output frame k shows the last source frame at or before k / 25 s
    times = [Fraction(p, 30) for p in VFR_PTS]
    expected = expected_hold_indices(times, times[-1] + Fraction(1, 30), 25)
    assert frame_levels(read_decoded_frames(out / "variable_rate.mp4")).tolist() == expected
    assert manifest["videos"]["variable_rate"]["frames_out"] == len(expected) == 27


UHD_MEMORY = textwrap.dedent(
    """
    import json, sys
    from features.video import DecodeSettings, decode_to_mp4

    def peak_mib():
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024

    short, long, out = sys.argv[1:4]
    decode_to_mp4(short, out, settings=DecodeSettings(short_side=48, min_frames=1))  # warms the decoder up
    warm = peak_mib()
    decode_to_mp4(long, out, settings=DecodeSettings(short_side=48, min_frames=1))
    print(json.dumps({"growth_mib": peak_mib() - warm}))
    """
)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak memory read from /proc (Linux)")
def test_4k_decode_runs_in_bounded_memory(decoded, tmp_path: Path):
    """Decoding 16 more 4K frames must not keep them (16 RGB frames are 380 MiB). The warm-up
    video fills the decoder's frame-thread pipeline (at most 16 frames deep) first."""
    short = tmp_path / "uhd_16.mp4"
    write_uhd_video(short, 16)
    long = decoded["dataset"] / "videos" / "uhd_4k.mp4"  # 32 frames
    done = subprocess.run(
        [sys.executable, "-c", UHD_MEMORY, str(short), str(long), str(tmp_path / "out.mp4")],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    growth = json.loads(done.stdout.strip().splitlines()[-1])["growth_mib"]
    assert growth < 150, f"peak memory grew by {growth:.0f} MiB decoding 16 more 4K frames"


def random_i3d_weights(folder: Path) -> None:
    """rgb.pt / flow.pt / weights.json as the weights stage writes them, from a seeded random I3D."""
    torch.manual_seed(0)
    rgb = I3D(in_channels=3).state_dict()
    save_state_dict(rgb, folder / "rgb.pt")
    save_state_dict(flow_from_rgb(rgb), folder / "flow.pt")
    write_json(
        folder / "weights.json",
        {
            "rgb_source": "random (test)",
            "flow_init": "cross_modality",
            "rgb_sha256": sha256_file(folder / "rgb.pt"),
            "flow_sha256": sha256_file(folder / "flow.pt"),
        },
    )


@pytest.mark.slow
def test_unreadable_flow_file_fails_its_video_in_extract(decoded, tmp_path: Path):
    """Flow for every decoded video, one flow file truncated afterwards: extract reports that
    video (naming the file) and writes the features of the others."""
    flow_dir = tmp_path / "flow"
    summary = run_plan(flow_stage.plan(flow_stage.FlowParams(), decoded_dir=decoded["out"], out_dir=flow_dir))
    assert summary["computed"] == len(GOOD)
    with FlowReader(flow_dir / "good.h5") as flow:
        assert len(flow) == 25
    cut(flow_dir / "variable_rate.h5", lambda data: len(data) // 2)
    random_i3d_weights(tmp_path / "weights")

    store = tmp_path / "features.h5"
    with captured("stages.common") as messages:
        summary = run_plan(
            extract.plan(
                extract.ExtractParams(crop=32, batch=4, device="cpu"),
                decoded_dir=decoded["out"],
                flow_dir=flow_dir,
                weights_dir=tmp_path / "weights",
                out_path=store,
            )
        )
    assert summary["extracted"] == len(GOOD) - 1 and summary["failed"] == 1
    [message] = [m for m in messages if m.startswith("video 'variable_rate': ")]
    assert f"{flow_dir / 'variable_rate.h5'}" in message and "truncated or not an HDF5 file" in message
    assert "delete it and rerun the flow stage" in message
    with h5py.File(store, "r") as h5:
        assert sorted(h5["rgb"]) == ["good", "uhd_4k"]
        assert h5["rgb"]["uhd_4k"].shape == (2, 1024)  # 32 frames = 2 snippets
        failed_upstream = json.loads(h5.attrs["excluded_videos"])
    assert set(failed_upstream) == set(DECODE_CASES) - set(GOOD)  # decode's failures, recorded
    assert not list(tmp_path.glob(".tmp-*")) and not (tmp_path / "features.h5.parts").exists()


def test_unsafe_video_ids_in_videos_json_are_rejected(tmp_path: Path):
    """videos.json ids become output file names: '/' or '..' must not reach the decode stage."""
    for bad in ("../escape", "sub/dir"):
        dataset = tmp_path / "dataset"
        write_json(dataset / "videos.json", {"fine": "videos/fine.mp4", bad: "videos/x.mp4"})
        with pytest.raises(AnnotationError, match=r"videos\.json: video id .* contains") as err:
            decode.plan(decode.DecodeParams(), dataset_dir=dataset, out_dir=tmp_path / "out" / "decoded")
        assert repr(bad) in str(err.value)
    assert not list((tmp_path / "out").rglob("*.mp4"))


# ---------------------------------------------------------------- gt.json (prepare, directory source)

BASE_GT = {
    "database": {
        "a": {"subset": "train", "annotations": [{"segment": [0.1, 0.5], "label": "jump"}]},
        "b": {"subset": "test", "annotations": [{"segment": [0.2, 0.6], "label": "run"}]},
    }
}


def _gt(change: Callable[[dict], None]) -> str:
    gt = json.loads(json.dumps(BASE_GT))
    change(gt)
    return json.dumps(gt)


# case -> (gt.json text, expected error type, expected message parts)
GT_CASES: dict[str, tuple[str, type[Exception], list[str]]] = {
    "missing_subset": (
        _gt(lambda g: g["database"]["b"].pop("subset")),
        AnnotationError,
        ["video 'b'", "missing key 'subset'"],
    ),
    "missing_annotations": (
        _gt(lambda g: g["database"]["a"].pop("annotations")),
        AnnotationError,
        ["video 'a'", "missing key 'annotations'"],
    ),
    "missing_label": (
        _gt(lambda g: g["database"]["a"]["annotations"][0].pop("label")),
        AnnotationError,
        ["video 'a' annotation 0", "missing key 'label'"],
    ),
    "end_before_start": (
        _gt(lambda g: g["database"]["a"]["annotations"][0].update(segment=[0.5, 0.1])),
        AnnotationError,
        ["video 'a' annotation 0", "end 0.1 is before start 0.5"],
    ),
    "unknown_subset": (
        _gt(lambda g: g["database"]["b"].update(subset="val")),
        AnnotationError,
        ["video 'b'", "unknown subset 'val'"],
    ),
    "duplicate_video_id": (
        '{"database": {"a": {"subset": "train", "annotations": []}, "a": {"subset": "test", "annotations": []}}}',
        AnnotationError,
        ["key 'database'", "duplicate video id(s) 'a'"],
    ),
    "id_with_separator": (
        _gt(lambda g: g["database"].update({"sub/a": g["database"].pop("a")})),
        AnnotationError,
        ["video id 'sub/a'", "contains '/'"],
    ),
    "id_with_dotdot": (
        _gt(lambda g: g["database"].update({"..a": g["database"].pop("a")})),
        AnnotationError,
        ["video id '..a'", "contains '..'"],
    ),
    "video_not_on_disk": (
        _gt(lambda g: g["database"].update(c={"subset": "train", "annotations": []})),
        DatasetError,
        ["1 of 3 annotated videos not found", ": c"],
    ),
}


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("user-videos")
    for vid in ("a", "b"):
        write_indexed_video(folder / f"{vid}.mp4", list(range(30)), time_base=Fraction(1, 25))  # 1.2 s
    return folder


def _directory_params(video_dir: Path, gt: Path) -> prepare.DatasetParams:
    return prepare.DatasetParams(
        source="directory", directory=prepare.DirectoryParams(video_dir=str(video_dir), gt_json=str(gt))
    )


@pytest.mark.parametrize("case", sorted(GT_CASES))
def test_bad_gt_json_stops_prepare_naming_file_video_and_key(video_folder: Path, tmp_path: Path, case: str):
    text, error, parts = GT_CASES[case]
    gt = tmp_path / "gt.json"
    gt.write_text(text)
    with pytest.raises(error) as err:
        prepare.run(_directory_params(video_folder, gt), out_dir=tmp_path / "dataset")
    message = str(err.value)
    assert str(gt if error is AnnotationError else video_folder) in message
    for part in parts:
        assert part in message
    assert (
        not (tmp_path / "dataset" / "annotations.json").exists() and not (tmp_path / "dataset" / "videos.json").exists()
    )


def test_segments_beyond_the_video_are_clipped_with_a_warning(video_folder: Path, tmp_path: Path, caplog):
    gt = tmp_path / "gt.json"
    gt.write_text(
        _gt(
            lambda g: g["database"]["a"]["annotations"].extend(
                [{"segment": [0.5, 9.0], "label": "jump"}, {"segment": [5.0, 6.0], "label": "jump"}]
            )
        )
    )
    with caplog.at_level(logging.WARNING):
        summary = prepare.run(_directory_params(video_folder, gt), out_dir=tmp_path / "dataset")
    assert "2 segment(s) extend past the end of their video: 1 clipped, 1 dropped" in caplog.text
    video = json.loads((tmp_path / "dataset" / "annotations.json").read_text())["database"]["a"]
    assert video["duration"] == pytest.approx(1.2)
    assert [a["segment"] for a in video["annotations"]] == [[0.1, 0.5], [0.5, video["duration"]]]
    assert summary["instances"] == 3  # 2 of a (one dropped) + 1 of b


# ---------------------------------------------------------------- points csv (points stage, distribution file)

ANNOTATIONS = {
    "database": {
        "t1": {
            "subset": "train",
            "duration": 3.0,
            "fps": 25.0,
            "annotations": [{"segment": [0.5, 1.5], "label": "jump"}],
        },
        "t2": {
            "subset": "train",
            "duration": 3.0,
            "fps": 25.0,
            "annotations": [{"segment": [1.0, 2.0], "label": "run"}],
        },
        "t3": {
            "subset": "train",
            "duration": 3.0,
            "fps": 25.0,
            "annotations": [{"segment": [0.2, 1.0], "label": "run"}],
        },
        "e1": {
            "subset": "test",
            "duration": 3.0,
            "fps": 25.0,
            "annotations": [{"segment": [0.5, 2.0], "label": "jump"}],
        },
        "e2": {
            "subset": "test",
            "duration": 3.0,
            "fps": 25.0,
            "annotations": [{"segment": [1.0, 2.5], "label": "run"}],
        },
    },
    "classes": ["jump", "run"],
}
POINTS_HEADER = "class,class_index,start_frame,stop_frame,video_id,point\n"
GOOD_POINTS = "jump,0,12,37,t1,25\nrun,1,25,50,t2,30\nrun,1,5,25,t3,10\n"

POINT_CASES = {
    "point_for_unknown_video": ("jump,0,12,37,ghost,25\n", "video 'ghost' is not in the annotations"),
    "unknown_class": (
        "dance,0,12,37,t1,25\n",
        "class 'dance' (video 't1') is not one of the annotation classes ['jump', 'run']",
    ),
    "point_on_a_test_video": (
        "jump,0,12,37,e1,25\n",
        "video 'e1' is a 'test' video; points may only label training videos",
    ),
}


@pytest.fixture
def dataset_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "dataset"
    write_annotations(folder / "annotations.json", ANNOTATIONS)
    return folder


@pytest.mark.parametrize("case", sorted(POINT_CASES))
def test_bad_points_file_stops_the_points_stage_naming_file_and_line(dataset_dir: Path, tmp_path: Path, case: str):
    row, expected = POINT_CASES[case]
    csv_file = tmp_path / "given.csv"
    csv_file.write_text(POINTS_HEADER + GOOD_POINTS + row)
    with pytest.raises(PointFileError) as err:
        points.run(
            points.PointsParams(distribution="file", file=str(csv_file)),
            dataset_dir=dataset_dir,
            out_dir=tmp_path / "points",
            report_dir=tmp_path / "report",
        )
    assert str(err.value) == f"{csv_file}:5: {expected}"  # header is line 1, the bad row line 5
    assert not (tmp_path / "points" / "points.csv").exists()


# ---------------------------------------------------------------- params

PARAM_CASES = {
    "unknown_key": ({"decode": {"sise": 1}}, "decode.sise: unknown key"),
    "unknown_section": ({"decoding": {}}, "decoding: unknown key"),
    "wrong_type": ({"train": {"steps": "many"}}, "train.steps: Input should be a valid integer"),
    "bad_choice": ({"flow": {"method": "farneback"}}, "flow.method: Input should be 'dis', 'tvl1' or 'tvl1_torch'"),
}


@pytest.mark.parametrize("case", sorted(PARAM_CASES))
def test_bad_params_stop_the_cli_before_any_stage_runs(tmp_path: Path, capsys, case: str):
    import yaml

    from pipeline.cli import main
    from pipeline.params import merge

    change, expected = PARAM_CASES[case]
    raw = merge(yaml.safe_load((REPO / "params.yaml").read_text()), change)
    raw["paths"] = {k: str(tmp_path / v) for k, v in raw["paths"].items()}
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(raw))
    assert main(["--params", str(params_file), "run", "decode"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {params_file}: ") and expected in err
    assert not (tmp_path / "data").exists()


# ---------------------------------------------------------------- feature store vs annotations (train, evaluate)


def write_store(path: Path, videos: list[str], *, excluded: dict[str, str]) -> None:
    """A feature store with 12 seeded snippets per video; `excluded` = videos failed upstream."""
    rng = np.random.default_rng(0)
    attrs = {
        "fps": 25,
        "snippet": 16,
        "stride": 16,
        "crop": 32,
        "backbone": "test",
        "weights_sha256": "-",
        "flow_method": "-",
        "flow_init": "-",
        "excluded_videos": json.dumps(excluded),
    }
    writer = FeatureStoreWriter(path, attrs=attrs)
    for vid in videos:
        feats = rng.random((12, 2048), dtype=np.float32)
        writer.write(vid, rgb=feats[:, :1024], flow=feats[:, 1024:], frames=190, source_fps=25.0)
    writer.finalize()


TRAIN = train.TrainParams(steps=2, batch=2, search_every=2, checkpoint_every=0, search_workers=1, device="cpu")


def run_train(dataset_dir: Path, features: Path, tmp_path: Path) -> dict[str, Any]:
    points_dir = tmp_path / "points"
    points_dir.mkdir(exist_ok=True)
    (points_dir / "points.csv").write_text(POINTS_HEADER + GOOD_POINTS)
    return train.run(
        TRAIN,
        detection=DetectionConfig(),
        dataset_dir=dataset_dir,
        features=features,
        points_dir=points_dir,
        model_dir=tmp_path / "model",
        log_dir=tmp_path / "log",
        pseudo_labels_path=tmp_path / "pseudo_labels.h5",
    )


def run_evaluate(dataset_dir: Path, features: Path, tmp_path: Path) -> dict[str, Any]:
    torch.manual_seed(0)
    save_model(
        tmp_path / "model",
        LACPNet(num_classes=2).state_dict(),
        classes=["jump", "run"],
        feature_dim=2048,
        embed_dim=2048,
        dropout=0.7,
    )
    return evaluate.run(
        evaluate.EvaluateParams(timelines=1, device="cpu"),
        detection=DetectionConfig(),
        inference=InferenceConfig(),
        dataset_dir=dataset_dir,
        features=features,
        model_dir=tmp_path / "model",
        out_dir=tmp_path / "eval",
    )


# case -> (stage, stored videos, videos failed upstream, expected error or None)
STORE_CASES: dict[str, tuple[str, list[str], dict[str, str], str | None]] = {
    "train_video_missing": (
        "train",
        ["t1", "t2", "e1", "e2"],
        {},
        "no features for 1 training video(s) named in the annotations: t3 (rerun the extract stage)",
    ),
    "train_video_failed_upstream": ("train", ["t1", "t2", "e1", "e2"], {"t3": "too short"}, None),
    "test_video_missing": (
        "evaluate",
        ["t1", "t2", "t3", "e1"],
        {},
        "no features for 1 test video(s) named in the annotations: e2 (rerun the extract stage)",
    ),
    "test_video_failed_upstream": ("evaluate", ["t1", "t2", "t3", "e1"], {"e2": "corrupt"}, None),
}


@pytest.mark.parametrize("case", sorted(STORE_CASES))
def test_features_missing_a_video_the_annotations_name(dataset_dir: Path, tmp_path: Path, case: str, caplog):
    stage, stored, excluded, expected = STORE_CASES[case]
    features = tmp_path / "features.h5"
    write_store(features, stored, excluded=excluded)
    run = run_train if stage == "train" else run_evaluate
    if expected is not None:
        with pytest.raises(ValueError) as err:
            run(dataset_dir, features, tmp_path)
        assert str(err.value) == f"{features}: {expected}"
        out = tmp_path / ("model" if stage == "train" else "eval")
        assert not (out / ("model.pt" if stage == "train" else "metrics.json")).exists()
        return
    with caplog.at_level(logging.WARNING):
        summary = run(dataset_dir, features, tmp_path)
    [left_out] = excluded
    assert f"failed upstream and are left out: {left_out}" in caplog.text
    if stage == "train":
        assert summary["videos"] == 2 and (tmp_path / "model" / "model.pt").is_file()
    else:  # the missing video's instance still counts (as missed) in the mAP
        metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
        assert metrics["videos"] == 1 and summary["videos"] == 1


@pytest.mark.parametrize("stage", ["train", "evaluate"])
def test_truncated_feature_store_is_a_clear_error(dataset_dir: Path, tmp_path: Path, stage: str):
    features = tmp_path / "features.h5"
    write_store(features, ["t1", "t2", "t3", "e1", "e2"], excluded={})
    cut(features, lambda data: len(data) // 2)
    with pytest.raises(FeatureStoreError, match="cannot open \\(truncated or not an HDF5 file\\)") as err:
        (run_train if stage == "train" else run_evaluate)(dataset_dir, features, tmp_path)
    assert str(features) in str(err.value)
