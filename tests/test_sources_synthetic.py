"""Tests of sources.synthetic: determinism, timing statistics, decodability, class motion."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import av
import numpy as np
import pytest

from sources.annotations import validate_annotations
from sources.synthetic import (
    CLASS_LIBRARY,
    SyntheticInstance,
    SyntheticSpec,
    SyntheticVideo,
    dataset_annotations,
    envelope,
    plan_dataset,
    render_frames,
    render_videos,
)

TINY = dict(
    num_train=2,
    num_test=1,
    num_classes=3,
    width=64,
    height=48,
    duration_s=(3.0, 4.0),
    instance_duration_s=(0.6, 1.2),
    instances_per_video=(1, 2),
    min_gap_s=0.3,
    max_coverage=0.6,
)


def _mp4s(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.mp4"))}


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    spec = SyntheticSpec(seed=3, **TINY)
    ann1, videos1 = render_videos(tmp_path / "a", spec=spec)
    ann2, _ = render_videos(tmp_path / "b", spec=spec, workers=2)  # processes give the same result
    assert json.dumps(ann1) == json.dumps(ann2)
    first, second = _mp4s(tmp_path / "a"), _mp4s(tmp_path / "b")
    assert sorted(first) == ["synth_test_0000.mp4", "synth_train_0000.mp4", "synth_train_0001.mp4"]
    assert first == second  # bit-identical videos
    assert videos1["synth_train_0001"] == (tmp_path / "a" / "synth_train_0001.mp4").as_posix()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(first)  # no temp files left

    ann3, _ = render_videos(tmp_path / "c", spec=SyntheticSpec(seed=4, **TINY))
    assert json.dumps(ann3) != json.dumps(ann1)
    assert _mp4s(tmp_path / "c")["synth_train_0000.mp4"] != first["synth_train_0000.mp4"]


def test_render_videos_reports_progress_and_the_spec_refuses_unknown_keys(tmp_path: Path) -> None:
    done: list[str] = []
    spec = SyntheticSpec(**{**TINY, "seed": 3, "num_train": 1, "fps": 25})
    ann, videos = render_videos(tmp_path, spec=spec, progress=done.append)
    assert done == ["synth_train_0000", "synth_test_0000"] and sorted(videos) == sorted(done)
    validate_annotations(ann)
    assert ann["database"]["synth_test_0000"]["fps"] == 25.0
    with pytest.raises(ValueError, match=r"colour\n +Extra inputs are not permitted"):
        SyntheticSpec(colour="red")


def test_rendered_video_decodes_to_expected_frames(tmp_path: Path) -> None:
    spec = SyntheticSpec(seed=1, **{**TINY, "num_train": 1})
    video = plan_dataset(spec)[0]
    ann, videos = render_videos(tmp_path, spec=spec)
    with av.open(videos[video.video_id]) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == 30 and stream.codec_context.name == "h264"
        decoded = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
    assert decoded.shape == (video.num_frames, 48, 64, 3)
    assert ann["database"][video.video_id]["duration"] == pytest.approx(video.num_frames / 30, abs=1e-6)
    rendered = np.concatenate(list(render_frames(video, spec))).astype(np.float32)
    # crf 18: brightness within a few grey levels (colour is subsampled 2x by yuv420p)
    assert np.abs(decoded.mean(axis=-1) - rendered.mean(axis=-1)).mean() < 2.0


def test_default_plan_statistics() -> None:
    spec = SyntheticSpec()  # the default dataset, planned only (no rendering)
    plan = plan_dataset(spec)
    assert [v.video_id for v in plan[:2]] == ["synth_train_0000", "synth_train_0001"]
    assert plan[-1].video_id == "synth_test_0019" and len(plan) == 60
    coverage, labels = [], {"train": set(), "test": set()}
    for video in plan:
        spans = sorted((i.start_frame, i.end_frame) for i in video.instances)
        for (_, end), (start, _) in zip(spans, spans[1:]):
            assert start - end >= spec.min_gap_s * spec.fps  # disjoint, background between
        assert spans[0][0] >= spec.fps * spec.min_gap_s and spans[-1][1] <= video.num_frames
        for inst in video.instances:
            seconds = (inst.end_frame - inst.start_frame) / spec.fps
            assert 0.6 - 1e-9 <= seconds <= 8.0 + 1e-9
            labels[video.subset].add(inst.label)
        covered = sum(e - s for s, e in spans) / video.num_frames
        assert covered <= spec.max_coverage
        coverage.append(covered)
    assert 0.2 < np.mean(coverage) < 0.4  # untrimmed: mostly background
    classes = {c.name for c in CLASS_LIBRARY[:4]}
    assert labels == {"train": classes, "test": classes}
    two_class = sum(len({i.label for i in v.instances}) == 2 for v in plan)
    assert 10 <= two_class <= 30  # about two_class_share = 0.3 of 60


@pytest.mark.parametrize(("law", "median_s", "short_share"), [("thumos14", 2.7, 0.146), ("loguniform", 2.19, 0.293)])
def test_instance_lengths_follow_the_law_unbiased(law: str, median_s: float, short_share: float) -> None:
    # planning only; short_share = P(length <= two 0.64-s snippets) of the truncated law
    spec = SyntheticSpec(num_train=1500, num_test=1, duration_law=law)
    plan = plan_dataset(spec)
    seconds = np.array([(i.end_frame - i.start_frame) / spec.fps for v in plan for i in v.instances])
    assert abs(np.median(seconds) - median_s) < 0.15
    assert abs(np.mean(seconds <= 1.28) - short_share) < 0.025
    for video in plan:  # a video is lengthened, never an instance dropped, to respect the limits
        assert spec.instances_per_video[0] <= len(video.instances) <= spec.instances_per_video[1]
        covered = sum(i.end_frame - i.start_frame for i in video.instances)
        assert covered <= spec.max_coverage * video.num_frames
        assert video.num_frames >= spec.duration_s[0] * spec.fps - 1


def test_annotations_deterministic_and_consistent() -> None:
    spec = SyntheticSpec(seed=7)
    ann = dataset_annotations(plan_dataset(spec), spec)
    assert json.dumps(ann) == json.dumps(dataset_annotations(plan_dataset(SyntheticSpec(seed=7)), spec))
    assert json.dumps(ann) != json.dumps(dataset_annotations(plan_dataset(SyntheticSpec(seed=8)), spec))
    assert ann["classes"] == ["BounceSquare", "OrbitDisk", "PulseRing", "ZigzagTriangle"]
    for video in ann["database"].values():
        assert video["fps"] == 30.0 and video["duration"] >= spec.duration_s[0] - 1 / spec.fps
        for a in video["annotations"]:
            start, end = a["segment"]
            assert start < a["salient"] < end
            # the salient moment sits in the middle part of the instance (peak in 0.35..0.65)
            assert 0.3 < (a["salient"] - start) / (end - start) < 0.7


def test_class_offset_selects_classes_and_keeps_the_default_dataset() -> None:
    assert [c.name for c in SyntheticSpec(num_classes=5, class_offset=5).classes] == [
        "ShakeStripes",
        "EightChecker",
        "SweepBar",
        "WobbleStar",
        "SwingCrescent",
    ]
    spec = SyntheticSpec()
    assert spec.class_offset == 0 and spec.classes == CLASS_LIBRARY[:4]
    plan = plan_dataset(spec)
    # sha256 of the default dataset's annotations as the code before class_offset drew them
    digest = hashlib.sha256(json.dumps(dataset_annotations(plan, spec)).encode()).hexdigest()
    assert digest == "4ca2c7b5c314d2de815969e9486e8b085854558b6b8eadbeca2bef6d995bb6b5"
    # an offset draws the same videos (rng streams do not depend on it) with the classes shifted
    shifted = SyntheticSpec(class_offset=4)
    index = {c.name: i for i, c in enumerate(CLASS_LIBRARY)}
    for video, other in zip(plan, plan_dataset(shifted), strict=True):
        assert [(i.start_frame, i.end_frame, i.cx, i.radius) for i in video.instances] == [
            (i.start_frame, i.end_frame, i.cx, i.radius) for i in other.instances
        ]
        assert [index[i.label] + 4 for i in video.instances] == [index[i.label] for i in other.instances]


def test_envelope_values() -> None:
    u = np.array([0.0, 0.2, 0.4, 0.7, 1.0])
    # peak 0.4: x = u / 0.4 left, (1 - u) / 0.6 right; smoothstep x^2 (3 - 2x)
    expected = [0.0, 0.5, 1.0, 0.5, 0.0]
    np.testing.assert_allclose(envelope(u, 0.4), expected, atol=1e-12)


def _single(cls_name: str, spec: SyntheticSpec) -> SyntheticVideo:
    """A 4 s video with one 3 s instance in the middle of the frame (peak at half way)."""
    inst = SyntheticInstance(
        label=cls_name,
        start_frame=15,
        end_frame=105,
        peak=0.5,
        cx=48.0,
        cy=48.0,
        radius=10.0,
        amplitude=18.0,
        cycles_per_s=1.0,
        rgb=(1.0, 0.9, 0.2),
        angle=0.3,
        direction=1,
    )
    return SyntheticVideo("synth_test_0000", "test", 0, 120, (inst,))


def _object_layer(video: SyntheticVideo, spec: SyntheticSpec) -> np.ndarray:
    """Per-frame mask (N, H, W) of the pixels the action changed."""
    full = np.concatenate(list(render_frames(video, spec))).astype(np.int16)
    empty = np.concatenate(list(render_frames(video, spec, with_instances=False))).astype(np.int16)
    return np.abs(full - empty).max(axis=-1) > 12


def test_actions_only_inside_segments_with_gradual_onset() -> None:
    spec = SyntheticSpec(num_classes=8, width=96, height=96)
    video = _single("OrbitDisk", spec)
    full = np.concatenate(list(render_frames(video, spec))).astype(np.int16)
    empty = np.concatenate(list(render_frames(video, spec, with_instances=False))).astype(np.int16)
    changed = np.abs(full - empty).sum(axis=(1, 2, 3))  # (N,)
    assert (changed[:15] == 0).all() and (changed[105:] == 0).all()  # identical outside the action
    assert (changed[15:105] > 0).all()  # and visible on every action frame
    # gradual onset/offset: the peak changes far more than the first and last frames
    assert changed[60] > 3 * changed[15] and changed[60] > 3 * changed[104]
    # frames differ more inside the action than in the (distractor-only) background
    motion = np.abs(np.diff(full, axis=0)).mean(axis=(1, 2, 3))
    assert motion[45:75].mean() > 1.5 * motion[:14].mean()


def _motion_signature(cls_name: str) -> dict[str, float]:
    spec = SyntheticSpec(num_classes=len(CLASS_LIBRARY), width=96, height=96, distractors=(0, 0), noise_std=0.0)
    mask = _object_layer(_single(cls_name, spec), spec)[45:75]  # around the peak
    ys, xs = np.mgrid[0:96, 0:96]
    area = mask.sum(axis=(1, 2)).astype(float)
    cx = (mask * xs).sum(axis=(1, 2)) / area
    cy = (mask * ys).sum(axis=(1, 2)) / area
    overlap = (mask[:-4] & mask[4:]).sum(axis=(1, 2)) / (mask[:-4] | mask[4:]).sum(axis=(1, 2))
    return {"x": cx.std(), "y": cy.std(), "area_cv": area.std() / area.mean(), "iou": overlap.mean()}


def test_classes_move_differently() -> None:
    orbit = _motion_signature("OrbitDisk")
    assert orbit["x"] > 5 and orbit["y"] > 5  # moves on a circle
    bounce = _motion_signature("BounceSquare")
    assert bounce["y"] > 5 and bounce["x"] < 0.5  # vertical only
    pulse = _motion_signature("PulseRing")
    assert pulse["x"] < 0.5 and pulse["y"] < 0.5 and pulse["area_cv"] > 0.2  # grows and shrinks in place
    spin = _motion_signature("SpinCross")
    assert spin["x"] < 0.5 and spin["area_cv"] < 0.1 and spin["iou"] < 0.8  # turns in place
    sweep = _motion_signature("SweepBar")
    assert sweep["x"] > 3 and sweep["y"] < 0.5  # travels sideways
    wobble = _motion_signature("WobbleStar")
    assert wobble["x"] < 0.5 and wobble["y"] < 0.5 and wobble["area_cv"] < 0.1 and wobble["iou"] < 0.8  # rocks in place
    swing = _motion_signature("SwingCrescent")
    assert swing["x"] > 5 and 0.5 < swing["y"] < swing["x"] / 2  # along a shallow arc


def test_spec_validation() -> None:
    size = len(CLASS_LIBRARY)
    with pytest.raises(ValueError, match=rf"num_classes\n +Input should be less than or equal to {size}"):
        SyntheticSpec(num_classes=size + 1)
    with pytest.raises(ValueError, match=f"class_offset {size - 3} \\+ num_classes 4 exceeds the {size} classes"):
        SyntheticSpec(num_classes=4, class_offset=size - 3)
    with pytest.raises(ValueError, match="width and height must be even"):
        SyntheticSpec(width=127)
    with pytest.raises(ValueError, match=r"duration_s\n.*duration_s must be \[low, high\] with 0 < low <= high"):
        SyntheticSpec(duration_s=[30.0, 20.0])
    assert SyntheticSpec(duration_s=[20, 30]).duration_s == (20.0, 30.0)  # lists from params.yaml
