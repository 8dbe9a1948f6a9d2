"""pipeline.detect: a trained model folder applied to new videos through the stages' own code.

The model is the tiny end-to-end run's (tests/test_reliability_determinism.py `tiny_run`, shared
with the reliability tests in one pytest process).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from features.video import DecodeSettings, decode_to_mp4
from lacp.model_io import read_model_meta
from pipeline.cli import main as cli_main
from pipeline.detect import (
    RECORD_LIMITS,
    ModelFolderError,
    ResultsFileError,
    collect_videos,
    detect,
    detect_video,
    earlier_results,
    load_detector,
    results_document,
)
from stages.artifacts import read_video_paths
from tests.conftest import REPO
from tests.test_reliability_determinism import tiny_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return tiny_run(tmp_path_factory, "a")


@pytest.fixture(scope="module")
def detector(run):
    return load_detector(run.paths.model, weights_dir=run.paths.weights, device="cpu")


def _ranked(detections):
    return sorted(detections, key=lambda d: (-d["score"], d["segment"][0]))


def _evaluated(run) -> dict[str, list[dict]]:
    return json.loads((run.paths.evaluation / "predictions.json").read_text())["results"]


def test_detect_gives_the_evaluate_stage_detections(run, detector, tmp_path):
    """A test video from its source file: the evaluate stage's detections, segment and score to 1e-5."""
    sources = read_video_paths(run.paths.dataset)
    evaluated = _evaluated(run)
    assert sum(map(len, evaluated.values())) > 0
    for vid, want in sorted(evaluated.items()):
        got = detect_video(Path(sources[vid]), detector, work_dir=tmp_path / vid)
        assert got.name == vid and got.ok
        assert len(got.detections) == len(want), vid
        for g, w in zip(_ranked(got.detections), _ranked(want)):
            assert detector.classes[g["label_index"]] == w["label"]
            assert g["score"] == pytest.approx(w["score"], abs=1e-5)
            assert g["segment"] == pytest.approx(w["segment"], abs=1e-5)
        assert set(got.seconds) == {"decode", "flow", "features", "model"}
        assert got.q.shape[1] == len(detector.classes) + 1


def test_detect_applies_the_self_trained_detector_as_evaluate_selftrain_does(run, tmp_path):
    """The selftrain stage's folder (kind "detector"): a test video's detections from its source
    file equal the evaluate_selftrain stage's, segment and score to 1e-5; its settings are the
    folder's records (its post-processing and its LACP copy's), each overridable by a flag."""
    selftrained = load_detector(run.paths.selftrain_model, weights_dir=run.paths.weights, device="cpu")
    assert selftrained.kind == "detector"
    assert selftrained.settings == {
        **run.detection.lacp().model_dump(),
        "detector": run.detection.detector.model_dump(),
    }
    sources = read_video_paths(run.paths.dataset)
    evaluated = json.loads((run.paths.selftrain_evaluation / "predictions.json").read_text())["results"]
    assert sum(map(len, evaluated.values())) > 0
    for vid, want in sorted(evaluated.items()):
        got = detect_video(Path(sources[vid]), selftrained, work_dir=tmp_path / vid)
        assert len(got.detections) == len(want), vid
        for g, w in zip(_ranked(got.detections), _ranked(want)):
            assert selftrained.classes[g["label_index"]] == w["label"]
            assert g["score"] == pytest.approx(w["score"], abs=1e-5)
            assert g["segment"] == pytest.approx(w["segment"], abs=1e-5)
    overridden = load_detector(
        run.paths.selftrain_model,
        weights_dir=run.paths.weights,
        device="cpu",
        overrides={"r_act": 4, "detector": {"max_segments": 1}},
    )
    assert overridden.predictor.inference.max_segments == 1 and overridden.predictor.scorer.config.r_act == 4
    assert overridden.settings["detector"]["max_segments"] == 1 and overridden.settings["r_act"] == 4
    with pytest.raises(ModelFolderError, match="--max-segments set the self-trained detector's post-processing"):
        load_detector(
            run.paths.model, weights_dir=run.paths.weights, device="cpu", overrides={"detector": {"max_segments": 1}}
        )


def test_another_frame_rate_agrees_to_one_snippet(run, detector, tmp_path):
    """The same test video re-encoded at 24 fps (the source is 30): decode resamples it to 25 fps,
    and each of the evaluate stage's detections is found again within one snippet (0.64 s)."""
    sources = read_video_paths(run.paths.dataset)
    snippet_s = 16 / 25
    for vid, want in sorted(_evaluated(run).items()):
        other = tmp_path / f"{vid}_24fps.mp4"
        decode_to_mp4(Path(sources[vid]), other, settings=DecodeSettings(fps=24, short_side=64, crf=12, min_frames=1))
        got = detect_video(other, detector, work_dir=tmp_path / vid)
        for w in want:
            same_class = [g["segment"] for g in got.detections if detector.classes[g["label_index"]] == w["label"]]
            assert same_class, f"{vid}: no {w['label']} detection at 24 fps"
            nearest = min(same_class, key=lambda s: abs(s[0] - w["segment"][0]) + abs(s[1] - w["segment"][1]))
            assert abs(nearest[0] - w["segment"][0]) <= snippet_s and abs(nearest[1] - w["segment"][1]) <= snippet_s


def _bad_folder(run, root: Path) -> Path:
    folder = root / "videos"
    folder.mkdir()
    good = Path(sorted(read_video_paths(run.paths.dataset).values())[0])
    (folder / good.name).write_bytes(good.read_bytes())
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "notes.mp4").write_text("meeting notes, not a video\n")
    (folder / "readme.txt").write_text("not a video ending: ignored\n")
    return folder


def test_bad_files_are_named_with_their_reason_and_the_good_one_is_detected(run, tmp_path):
    """The command on a folder: the good video's detections; the zero-byte and the text file
    named with their reasons; status 0, or 1 with --strict."""
    folder = _bad_folder(run, tmp_path)
    good = next(p.stem for p in folder.iterdir() if p.stem not in ("empty", "notes", "readme"))
    env = {**os.environ, "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    argv = [
        sys.executable,
        "-m",
        "pipeline",
        "--params",
        str(run.paths.model.parent.parent / "params.yaml"),
        "detect",
        str(folder),
        "--device",
        "cpu",
    ]
    for strict, status in ((False, 0), (True, 1)):
        out = tmp_path / f"detections_{strict}.json"
        done = subprocess.run(
            argv + ["--out", str(out)] + ["--strict"] * strict, cwd=REPO, env=env, capture_output=True, text=True
        )
        assert done.returncode == status, done.stderr[-3000:]
        document = json.loads(out.read_text())
        assert {"version", "results", "external_data"} <= set(document)  # what the ActivityNet evaluator requires
        assert list(document["results"]) == [good] and document["results"][good]
        assert sorted(document["failed"]) == ["empty", "notes"]
        assert "empty file" in document["failed"]["empty"]["reason"]
        assert "not a readable video" in document["failed"]["notes"]["reason"]
        for name in ("empty.mp4", "notes.mp4"):
            assert f"{name}: FAILED" in done.stderr
        assert "2 failed: empty, notes" in done.stderr


def test_results_document_is_activitynet_results(run, detector, tmp_path):
    results = detect(
        [Path(sorted(read_video_paths(run.paths.dataset).values())[0])], detector, threshold=0.0, say=lambda line: None
    )
    document = results_document(results, detector)
    assert document["version"] == "VERSION 1.3"
    assert set(document["external_data"]) == {"used", "details"}
    for entries in document["results"].values():
        for entry in entries:
            assert set(entry) == {"label", "score", "segment"} and entry["label"] in detector.classes


def test_collect_videos_refuses_two_inputs_with_one_name(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    (tmp_path / "a" / "clip.mp4").write_bytes(b"x")
    (tmp_path / "b" / "clip.mkv").write_bytes(b"x")
    with pytest.raises(ValueError, match="two inputs named 'clip'"):
        collect_videos([tmp_path / "a", tmp_path / "b"])
    with pytest.raises(ValueError, match="no video files"):
        collect_videos([tmp_path])


def _edited_model(run, tmp_path: Path, edit) -> Path:
    """A copy of the run's model folder with model.json's record edited by `edit(meta)`."""
    folder = tmp_path / "model"
    folder.mkdir()
    for f in run.paths.model.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    meta = read_model_meta(run.paths.model)
    edit(meta)
    (folder / "model.json").write_text(json.dumps(meta))
    return folder


def _recorded(section: str, **changes):
    """An edit for `_edited_model`: the recorded `<section>_params` JSON with `changes`."""

    def edit(meta):
        key = f"{section}_params"
        meta["features"][key] = json.dumps({**json.loads(meta["features"][key]), **changes})

    return edit


def test_refuses_a_flow_method_it_cannot_compute(run, tmp_path):
    with pytest.raises(ModelFolderError, match=r"'flow_params.method' = 'raft'"):
        load_detector(
            _edited_model(run, tmp_path, _recorded("flow", method="raft")), weights_dir=run.paths.weights, device="cpu"
        )


def test_refuses_other_i3d_weights(run, tmp_path):
    def other_weights(meta):
        meta["features"]["weights_sha256"] = "rgb:0000 flow:0000"

    with pytest.raises(ModelFolderError, match="'weights_sha256' = 'rgb:0000 flow:0000'.*other I3D weights"):
        load_detector(_edited_model(run, tmp_path, other_weights), weights_dir=run.paths.weights, device="cpu")


def test_refuses_a_model_folder_without_feature_record(run, tmp_path):
    with pytest.raises(ModelFolderError, match="no feature record"):
        load_detector(
            _edited_model(run, tmp_path, lambda meta: meta.pop("features")), weights_dir=run.paths.weights, device="cpu"
        )


def test_refuses_features_not_made_by_the_stages(run, tmp_path):
    """A model trained on imported .npy features: no decode or flow settings to remake them with."""

    def imported(meta):
        for key in ("decode_params", "flow_params"):
            meta["features"].pop(key)

    with pytest.raises(ModelFolderError, match=r"lacks \['decode_params', 'flow_params'\].*imported \.npy"):
        load_detector(_edited_model(run, tmp_path, imported), weights_dir=run.paths.weights, device="cpu")


def test_detect_takes_its_settings_from_the_record(run, tmp_path):
    """Whatever params.yaml says, the decode, flow and extract settings are the record's."""

    def crop(meta):
        meta["features"]["crop"] = 48
        _recorded("decode", short_side=80)(meta)

    detector = load_detector(_edited_model(run, tmp_path, crop), weights_dir=run.paths.weights, device="cpu")
    assert detector.extract.crop == 48 and detector.decode.short_side == 80


def test_refuses_a_record_that_contradicts_itself(run, tmp_path):
    """flow_params says tvl1 where flow_method says dis: the remade attrs differ, named."""
    with pytest.raises(ModelFolderError, match=r"'flow_method' = 'dis \(bound 20.0\)', but detect would make 'tvl1"):
        load_detector(
            _edited_model(run, tmp_path, _recorded("flow", method="tvl1")), weights_dir=run.paths.weights, device="cpu"
        )


def test_detect_twice_into_one_out_keeps_both_runs_videos(run, tmp_path):
    """`detect A --out F`, then `detect B --out F`: F holds A's and B's results; a third run on a
    misspelt file adds its failure and keeps both; running A again replaces A's entry only."""
    sources = sorted(read_video_paths(run.paths.dataset).values())[:2]
    out = tmp_path / "detections.json"
    argv = [
        "detect",
        "--model",
        str(run.paths.model),
        "--weights",
        str(run.paths.weights),
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    assert cli_main([*argv, sources[0]]) == 0
    first = json.loads(out.read_text())
    assert cli_main([*argv, sources[1]]) == 0
    both = json.loads(out.read_text())
    names = sorted(Path(p).stem for p in sources)
    assert sorted(both["results"]) == sorted(both["videos"]) == names and both["failed"] == {}
    a = Path(sources[0]).stem
    assert both["results"][a] == first["results"][a] and both["videos"][a] == first["videos"][a]

    assert cli_main([*argv, str(tmp_path / "typo.mp4")]) == 0  # a failed run: its failure, nothing erased
    after_typo = json.loads(out.read_text())
    assert {k: after_typo[k] for k in ("results", "videos")} == {k: both[k] for k in ("results", "videos")}
    assert list(after_typo["failed"]) == ["typo"] and "file not found" in after_typo["failed"]["typo"]["reason"]

    assert cli_main([*argv, sources[0]]) == 0  # run again: its entry replaced, the others kept
    again = json.loads(out.read_text())
    assert sorted(again["results"]) == names and list(again["failed"]) == ["typo"]
    assert [d["label"] for d in again["results"][a]] == [d["label"] for d in first["results"][a]]
    assert again["results"][Path(sources[1]).stem] == both["results"][Path(sources[1]).stem]


def test_an_out_file_of_another_model_or_not_of_detect_is_refused_without_force(run, detector, tmp_path):
    """Nothing is overwritten without --force: a results file of another model folder or other
    detection settings, or a file detect did not write, is refused before any video runs,
    byte for byte as it was; --force replaces it."""
    document = {
        "version": "VERSION 1.3",
        "external_data": {},
        "failed": {},
        "results": {"old": []},
        "videos": {"old": {}},
        "model": {"folder": str(detector.model_dir), "detection": detector.settings},
    }
    out = tmp_path / "detections.json"
    out.write_text(json.dumps(document))
    assert earlier_results(out, detector) == document
    other_folder = dataclasses.replace(detector, model_dir=tmp_path / "other-model")
    with pytest.raises(
        ResultsFileError,
        match=rf"{out}: holds the results of 1 video\(s\) made with model folder "
        rf".*this run uses .*other-model.*--force",
    ):
        earlier_results(out, other_folder)
    other_settings = dataclasses.replace(detector, settings={**detector.settings, "nms_tiou": 0.3})
    with pytest.raises(ResultsFileError, match="made with detection settings"):
        earlier_results(out, other_settings)
    assert earlier_results(out, other_folder, force=True) is None
    predictions = run.paths.evaluation / "predictions.json"  # ActivityNet results, but not detect's
    with pytest.raises(ResultsFileError, match=rf"{predictions}: exists and is not a results file written by detect"):
        earlier_results(predictions, detector)

    before = out.read_bytes()
    argv = [
        "detect",
        str(tmp_path / "none.mp4"),
        "--model",
        str(run.paths.model),
        "--weights",
        str(run.paths.weights),
        "--device",
        "cpu",
        "--out",
        str(out),
        "--nms-tiou",
        "0.3",
    ]
    assert cli_main(argv) == 2 and out.read_bytes() == before
    assert cli_main([*argv, "--force"]) == 0
    assert list(json.loads(out.read_text())["failed"]) == ["none"] and json.loads(out.read_text())["results"] == {}


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("decode", "fps", 100_000),
        (None, "crop", 100_000),
        (None, "snippet", 2**20),
        ("flow", "tvl1_torch_batch", 10**6),
    ],
)
def test_recorded_sizes_above_their_limit_are_refused_before_decoding(run, tmp_path, section, key, value):
    """fps 100000 would decode a 10-minute video into 60 M frames: the model folder is refused when
    it loads, naming the setting and the limit, before any video is touched."""
    name = f"{section}_params.{key}" if section else key
    edit = _recorded(section, **{key: value}) if section else (lambda meta: meta["features"].update({key: value}))
    with pytest.raises(ModelFolderError, match=rf"'{name}' = {value} is above {RECORD_LIMITS[name]}, the most detect"):
        load_detector(_edited_model(run, tmp_path, edit), weights_dir=run.paths.weights, device="cpu")


def test_unknown_detection_key_is_named(run, tmp_path):
    def typo(meta):
        meta["detection"]["nms_iou"] = 0.5

    with pytest.raises(ValueError, match=r"key 'detection': unknown setting\(s\) \['nms_iou'\]"):
        load_detector(_edited_model(run, tmp_path, typo), weights_dir=run.paths.weights, device="cpu")


def test_model_folder_records_features_detection_and_version(run):
    meta = read_model_meta(run.paths.model)
    for key in (
        "fps",
        "snippet",
        "stride",
        "frame_step",
        "crop",
        "precision",
        "compute_dtype",
        "weights_sha256",
        "flow_method",
        "decode_params",
        "flow_params",
    ):
        assert key in meta["features"], key
    assert json.loads(meta["features"]["decode_params"])["fps"] == run.decode.fps
    assert json.loads(meta["features"]["flow_params"])["method"] == run.flow.method
    assert meta["detection"] == run.detection.lacp().model_dump()  # the params' section, as train ran with it
    assert meta["project"]["name"] == "lacp-pipeline" and meta["project"]["version"]


@pytest.mark.cuda
def test_detect_on_cuda_finds_the_cpu_detections(run, tmp_path):
    """`--device cuda` (I3D and the model on the GPU; DIS flow stays on the CPU): the evaluate
    stage's detections again, within one snippet and 0.05 in score (bf16 on either device, but
    not the same kernels). Needs the project's full install, so bench/gpu_check.sh's lean
    environment does not run it; `pytest -m cuda` on a GPU machine does."""
    detector = load_detector(run.paths.model, weights_dir=run.paths.weights, device="cuda")
    sources = read_video_paths(run.paths.dataset)
    for vid, want in sorted(_evaluated(run).items()):
        got = detect_video(Path(sources[vid]), detector, work_dir=tmp_path / vid)
        best = _ranked(got.detections)[0]
        top = _ranked(want)[0]
        assert detector.classes[best["label_index"]] == top["label"]
        assert best["score"] == pytest.approx(top["score"], abs=0.05)
        assert best["segment"] == pytest.approx(top["segment"], abs=16 / 25)


def test_evaluate_selftrain_refuses_a_detector_folder_whose_records_differ(run):
    """The detector folder records detection.detector (selftrain) and its LACP copy LACP's keys
    (train): evaluate_selftrain's params must equal both, each difference named with its key."""
    from detector.config import InferenceConfig
    from lacp.proposals import DetectionConfig
    from stages.evaluate import check_recorded_detection

    check_recorded_detection(
        run.paths.selftrain_model, detection=run.detection.lacp(), inference=run.detection.detector
    )
    with pytest.raises(
        ValueError,
        match=r"selftrain/model\.json records .*detection\.detector\.nms_sigma is 0\.5 "
        r"there, 0\.3 in the params\. The selftrain stage",
    ):
        check_recorded_detection(
            run.paths.selftrain_model, detection=run.detection.lacp(), inference=InferenceConfig(nms_sigma=0.3)
        )
    with pytest.raises(
        ValueError,
        match=r"selftrain/lacp/model\.json records .*detection\.r_act is 8 there, 4 in "
        r"the params\. The train stage",
    ):
        check_recorded_detection(
            run.paths.selftrain_model, detection=DetectionConfig(r_act=4), inference=run.detection.detector
        )


def test_lacp_proposals_join_the_detectors_detections_and_need_the_lacp_copy(run, detector, tmp_path):
    """`detection.detector.lacp_proposals` (the default): without voting, each detection of the
    self-trained folder is one of the detector's own (`--no-lacp-proposals`) or one of LACP's
    proposals of the video, never scored above what its source gave it; the default voting
    (`voting_tiou` 0.6) moves boundaries only: the same labels and scores. Without the folder's
    LACP copy (`video_scores: none`) the setting is refused, naming the way out, and so is
    `own_class_weight` below 1."""
    import shutil

    from detector.config import InferenceConfig
    from stages.predictors import DetectorPredictor

    assert run.detection.detector.lacp_proposals and run.detection.detector.voting_tiou == 0.6
    video = sorted(_evaluated(run))[0]
    source = Path(read_video_paths(run.paths.dataset)[video])

    def detections(name: str, **settings) -> list[dict]:
        folder = run.paths.selftrain_model
        found = load_detector(folder, weights_dir=run.paths.weights, device="cpu", overrides={"detector": settings})
        return detect_video(source, found, work_dir=tmp_path / name).detections

    voted = detections("voted")
    merged = detections("merged", voting_tiou=0.0)
    alone = detections("alone", lacp_proposals=False, voting_tiou=0.0)
    lacp = detect_video(source, detector, work_dir=tmp_path / "lacp").detections
    assert merged and alone != merged

    def best_source_score(d, found):
        scores = [
            f["score"]
            for f in found
            if f["label_index"] == d["label_index"] and f["segment"] == pytest.approx(d["segment"], abs=1e-6)
        ]
        return max(scores, default=None)

    for d in merged:
        given = [s for s in (best_source_score(d, alone), best_source_score(d, lacp)) if s]
        assert given and d["score"] <= max(given) + 1e-6, d
    assert [(d["label_index"], d["score"]) for d in voted] == [(d["label_index"], d["score"]) for d in merged]
    assert [d["segment"] for d in voted] != [d["segment"] for d in merged]
    folder = tmp_path / "no-lacp-copy"
    shutil.copytree(run.paths.selftrain_model, folder)
    meta = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps({**meta, "video_scores": "none"}))
    classes = meta["classes"]
    with pytest.raises(
        ValueError,
        match=r"no-lacp-copy: detection\.detector lacp_proposals: true, own_class_weight: 0\.25 need an LACP "
        r"model, .* set lacp_proposals: false and own_class_weight: 1",
    ):
        DetectorPredictor(folder, run.detection.lacp(), "cpu", classes=classes, inference=InferenceConfig())
    alone = InferenceConfig(lacp_proposals=False, own_class_weight=1.0)
    DetectorPredictor(folder, run.detection.lacp(), "cpu", classes=classes, inference=alone)
