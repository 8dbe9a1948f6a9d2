"""The extract stage streams a video in windows and gives the features of the in-memory path;
an interrupted extraction resumes from the parts that are still valid."""

from __future__ import annotations

import dataclasses
import functools
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from core.files import atomic_path, sha256_file, write_json
from features.flow import FlowSettings, compute_flow, read_flow, write_flow
from features.i3d import I3D
from features.snippets import iter_snippet_batches, preprocess_flow, preprocess_rgb
from features.store import FILE_ATTR_KEYS, FeatureStore, FeatureStoreWriter
from features.video import DecodeSettings, decode_to_mp4, read_decoded_frames
from features.weights import save_state_dict
from stages import extract
from stages.common import VideoError, VideoResult, run_plan
from stages.decode import DecodeParams
from stages.extract import ExtractParams, extract_one, load_stream, stream_features
from stages.flow import FlowParams, recorded_params
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
    decode_to_mp4(root / "src.mp4", decoded / f"{VID}.mp4", settings=DecodeSettings(short_side=64, min_frames=1))
    gray = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in read_decoded_frames(decoded / f"{VID}.mp4")])
    write_flow(flow / f"{VID}.h5", compute_flow(gray, FlowSettings(method="dis")), method="dis", bound=20.0)
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
    rgb = stream_features(
        rgb_model,
        iter_snippet_batches(frames, transform=functools.partial(preprocess_rgb, short_side=None, crop=64), **cut),
    )
    flow_u8, _ = read_flow(inputs["flow"] / f"{VID}.h5")
    flow = stream_features(
        flow_model, iter_snippet_batches(flow_u8, transform=functools.partial(preprocess_flow, crop=64), **cut)
    )
    assert got.shape == (6, 2048) and np.abs(got).max() > 0
    np.testing.assert_array_equal(got[:, :1024], rgb)
    np.testing.assert_array_equal(got[:, 1024:], flow)


def test_a_decoded_video_shorter_than_its_manifest_is_a_video_error(inputs, tmp_path):
    _write_flow_of_length(inputs, tmp_path, 96)
    with pytest.raises(
        VideoError, match=r"video 'clip': .*clip.mp4: ends after 90 frames, expected 96.*rerun the decode stage"
    ):
        _extract({**inputs, "flow": tmp_path}, tmp_path / "f.h5", frames_out=96)


def _write_flow_of_length(inputs: dict[str, Path], flow_dir: Path, n: int) -> None:
    """A flow file of n zero frames, so that the flow-length check passes and decoding is reached."""
    h, w = read_decoded_frames(inputs["decoded"] / f"{VID}.mp4").shape[1:3]
    write_flow(flow_dir / f"{VID}.h5", np.full((n, h, w, 2), 128, np.uint8), method="dis", bound=20.0)


# ---------------------------------------------------------------------------------------------
# the stage's plan: resuming an interrupted extraction

PARAMS = ExtractParams(crop=32, batch=1, precision="fp32", device="cpu", frame_step=2)
SHORT = 16  # frames of the short clip: one snippet, so that each extraction is quick


@pytest.fixture(scope="module")
def short(inputs, tmp_path_factory) -> dict[str, Path]:
    """A decoded one-snippet clip, its DIS flow file, and the module's weights."""
    root = tmp_path_factory.mktemp("short")
    decoded, flow = root / "decoded", root / "flow"
    for d in (decoded, flow):
        d.mkdir()
    write_texture_video(root / "src.mp4", SHORT, size=(48, 32), seed=1)
    decode_to_mp4(root / "src.mp4", decoded / f"{VID}.mp4", settings=DecodeSettings(short_side=32, min_frames=1))
    gray = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in read_decoded_frames(decoded / f"{VID}.mp4")])
    assert len(gray) == SHORT
    write_flow(flow / f"{VID}.h5", compute_flow(gray, FlowSettings(method="dis")), method="dis", bound=20.0)
    return {"decoded": decoded, "flow": flow, "weights": inputs["weights"]}


def _stage_inputs(inputs: dict[str, Path], root: Path, *, ok: list[str], failed: dict[str, str]) -> dict[str, Path]:
    """Decode and flow folders with manifests in which `ok` succeeded (each a copy of the fixture's
    clip) and `failed` failed upstream, and the fixture's weights with weights.json."""
    dirs = {"decoded_dir": root / "decoded", "flow_dir": root / "flow", "weights_dir": root / "weights"}
    for d in dirs.values():
        d.mkdir(exist_ok=True)
    for vid in ok:
        shutil.copyfile(inputs["decoded"] / f"{VID}.mp4", dirs["decoded_dir"] / f"{vid}.mp4")
        shutil.copyfile(inputs["flow"] / f"{VID}.h5", dirs["flow_dir"] / f"{vid}.h5")
    _write_manifests(dirs, ok=ok, failed=failed)
    for name in ("rgb", "flow"):
        shutil.copyfile(inputs["weights"] / f"{name}.pt", dirs["weights_dir"] / f"{name}.pt")
    write_json(
        dirs["weights_dir"] / "weights.json",
        {
            "flow_init": "test",
            **{f"{name}_sha256": sha256_file(dirs["weights_dir"] / f"{name}.pt") for name in ("rgb", "flow")},
        },
    )
    return {**dirs, "out_path": root / "features.h5"}


def _write_manifests(dirs: dict[str, Path], *, ok: list[str], failed: dict[str, str]) -> None:
    """The decode and flow manifests: `ok` decoded and flowed, `failed` failed in decode."""
    write_json(
        dirs["decoded_dir"] / "manifest.json",
        {
            "fps": 25,
            "params": DecodeParams().model_dump(),
            "failed": failed,
            "videos": {v: {"frames_out": SHORT, "source_fps": 25.0} for v in ok},
        },
    )
    write_json(
        dirs["flow_dir"] / "manifest.json",
        {
            "method": "dis",
            "bound": 20.0,
            "params": recorded_params(FlowParams()),
            "failed": {},
            "videos": {v: {"frames": SHORT} for v in ok},
        },
    )


def _interrupted(plan: extract.VideoPlan, *, after: int) -> extract.VideoPlan:
    """The plan killed (KeyboardInterrupt) once `after` videos are done, at the latest before
    the parts are merged."""
    done: list[str] = []

    def process(vid: str) -> VideoResult:
        if len(done) == after:
            raise KeyboardInterrupt
        done.append(vid)
        return plan.process(vid)

    def finish(results: list[VideoResult]) -> dict:
        raise KeyboardInterrupt

    return dataclasses.replace(plan, process=process, finish=finish)


def _parts(paths: dict[str, Path]) -> list[str]:
    """The videos whose part file is in the parts folder."""
    return sorted(p.stem for p in paths["out_path"].with_name("features.h5.parts").glob("*.h5"))


def test_finished_parts_are_reused_when_videos_fail_or_recover_and_the_dtype_differs(short, tmp_path, monkeypatch):
    # the first run: a, b, c decoded, d failed; another machine computes in bfloat16; killed after 2 videos
    paths = _stage_inputs(short, tmp_path, ok=["a", "b", "c"], failed={"d": "corrupt file"})
    monkeypatch.setattr(extract, "compute_dtype", lambda params: "bfloat16")
    with pytest.raises(KeyboardInterrupt):
        run_plan(_interrupted(extract.plan(PARAMS, **paths), after=2))
    monkeypatch.undo()
    finished_before = ["a", "b"]
    assert not paths["out_path"].exists()

    # d now decodes (fixed), c now fails: excluded_videos and compute_dtype both change
    (paths["decoded_dir"] / "c.mp4").unlink()
    shutil.copyfile(short["decoded"] / f"{VID}.mp4", paths["decoded_dir"] / "d.mp4")
    shutil.copyfile(short["flow"] / f"{VID}.h5", paths["flow_dir"] / "d.h5")
    _write_manifests(paths, ok=["a", "b", "d"], failed={"c": "now unreadable"})
    resumed = extract.plan(PARAMS, **paths)
    assert _parts(paths) == finished_before  # the plan kept them
    summary = run_plan(resumed)

    assert summary["resumed"] == len(finished_before) == 2
    assert (summary["videos"], summary["extracted"], summary["failed"]) == (3, 1, 0)
    with FeatureStore(paths["out_path"]) as store:
        assert store.videos == ["a", "b", "d"]
        assert json.loads(store.attrs["excluded_videos"]) == {"c": "now unreadable"}  # this run's
        assert store.attrs["compute_dtype"] == "float32"  # what every part ran in, not run 1's claim
        assert {store.video_attrs(v)["compute_dtype"] for v in store.videos} == {"float32"}
        np.testing.assert_array_equal(store["a"], store["d"])  # same input: reused = recomputed


def test_a_part_made_from_another_input_is_computed_again(short, tmp_path):
    paths = _stage_inputs(short, tmp_path, ok=["a", "b"], failed={})
    with pytest.raises(KeyboardInterrupt):
        run_plan(_interrupted(extract.plan(PARAMS, **paths), after=2))
    assert _parts(paths) == ["a", "b"]
    _write_flow_of_length(short, paths["flow_dir"], SHORT)  # clip.h5: then b's flow is redone as still flow
    (paths["flow_dir"] / f"{VID}.h5").replace(paths["flow_dir"] / "b.h5")

    summary = run_plan(extract.plan(PARAMS, **paths))
    assert (summary["resumed"], summary["extracted"]) == (1, 1)
    with FeatureStore(paths["out_path"]) as store:
        rgb, flow = np.split(store["a"] - store["b"], 2, axis=1)
        assert not rgb.any() and flow.any()  # b's features follow its new flow


def test_extract_sweeps_its_own_temporaries_and_no_other_stages(tmp_path):
    out = tmp_path / "features.h5"
    attrs = {**dict.fromkeys(FILE_ATTR_KEYS, 1), "excluded_videos": "{}"}
    FeatureStoreWriter(out, attrs=attrs).write(
        "a", rgb=np.ones((2, 1024)), flow=np.ones((2, 1024)), frames=32, source_fps=25.0
    )
    names = {}
    for target in ("features.h5", "pseudo_labels.h5"):  # a killed write of each: its temporary's real name
        with atomic_path(tmp_path / target) as tmp:
            names[target] = tmp.name
        (tmp_path / names[target]).write_bytes(b"in flight")

    extract.finish([VideoResult("a", ok=True)], out_path=out, attrs=attrs)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["features.h5", "pseudo_labels.h5", names["pseudo_labels.h5"]]
    )


# ---------------------------------------------------------------------------------------------
# rerunning after a finished extraction: the finished store's videos are reused


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with FeatureStore(path) as store:
        return {v: store[v] for v in store.videos}  # (T, 2048) each


def test_a_video_fixed_after_a_finished_extraction_is_the_only_one_computed(short, tmp_path):
    paths = _stage_inputs(short, tmp_path, ok=["a", "b"], failed={"c": "corrupt file"})
    first = run_plan(extract.plan(PARAMS, **paths))
    assert (first["extracted"], first["resumed"]) == (2, 0)
    before = _arrays(paths["out_path"])

    # c now decodes: a and b are reused from the finished store, c alone is computed
    shutil.copyfile(short["decoded"] / f"{VID}.mp4", paths["decoded_dir"] / "c.mp4")
    shutil.copyfile(short["flow"] / f"{VID}.h5", paths["flow_dir"] / "c.h5")
    _write_manifests(paths, ok=["a", "b", "c"], failed={})
    summary = run_plan(extract.plan(PARAMS, **paths))
    assert (summary["videos"], summary["resumed"], summary["extracted"], summary["failed"]) == (3, 2, 1, 0)
    after = _arrays(paths["out_path"])
    for vid in ("a", "b"):
        np.testing.assert_array_equal(after[vid], before[vid])

    # the same as a fresh extraction of the same inputs, byte for byte (h5py writes no timestamps)
    (tmp_path / "fresh").mkdir()
    fresh = _stage_inputs(short, tmp_path / "fresh", ok=["a", "b", "c"], failed={})
    assert run_plan(extract.plan(PARAMS, **fresh))["extracted"] == 3
    assert paths["out_path"].read_bytes() == fresh["out_path"].read_bytes()

    # another frame step changes every video's numbers: all are computed again
    stepped = run_plan(extract.plan(PARAMS.model_copy(update={"frame_step": 1}), **paths))
    assert (stepped["resumed"], stepped["extracted"]) == (0, 3)
    with FeatureStore(paths["out_path"]) as store:
        assert store.attrs["frame_step"] == 1 and store.videos == ["a", "b", "c"]
        assert not np.array_equal(store["a"], after["a"])


def test_a_changed_input_after_a_finished_extraction_is_computed_again(short, tmp_path):
    paths = _stage_inputs(short, tmp_path, ok=["a", "b"], failed={})
    assert run_plan(extract.plan(PARAMS, **paths))["extracted"] == 2
    before = _arrays(paths["out_path"])
    _write_flow_of_length(short, paths["flow_dir"], SHORT)  # clip.h5: then b's flow is redone as still flow
    (paths["flow_dir"] / f"{VID}.h5").replace(paths["flow_dir"] / "b.h5")

    summary = run_plan(extract.plan(PARAMS, **paths))
    assert (summary["resumed"], summary["extracted"]) == (1, 1)
    after = _arrays(paths["out_path"])
    np.testing.assert_array_equal(after["a"], before["a"])
    rgb, flow = np.split(after["b"] - before["b"], 2, axis=1)
    assert not rgb.any() and flow.any()  # b's features follow its new flow
