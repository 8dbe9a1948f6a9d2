"""Tests of lacp.points.sampling: point sampling under each distribution, robustness options, report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from scipy import stats

from lacp.points.formats import Point, PointFileError, read_points_csv, write_points_csv
from lacp.points.instances import InstanceError
from lacp.points.report import point_report, point_stats, relative_positions
from lacp.points.sampling import DISTRIBUTIONS, PointSet, Sampling, sample_points
from tests.shared_data import THUMOS, needs_thumos, thumos_annotations


def _sample(annotations: dict, **settings) -> PointSet:
    """`sample_points` with the `Sampling` of these settings (file paths as strings, as params.yaml gives them)."""
    return sample_points(annotations, Sampling(**settings))


def _synthetic(
    n_videos: int, per_video: int, *, seed: int = 7, min_len: float = 16.0, max_len: float = 40.0, fps: float = 25.0
) -> dict:
    """Train videos with `per_video` long, non-overlapping instances (400..1000 frames at 25 fps)."""
    rng = np.random.default_rng(seed)
    database = {}
    for v in range(n_videos):
        t, anns = 1.0, []
        for _ in range(per_video):
            length = float(rng.uniform(min_len, max_len))
            anns.append(
                {
                    "segment": [t, t + length],
                    "label": ["A", "B"][int(rng.integers(2))],
                    "salient": t + length * float(rng.uniform(0.3, 0.7)),
                }
            )
            t += length + 2.0
        database[f"v{v:03d}"] = {"subset": "train", "duration": t, "fps": fps, "annotations": anns}
    database["test0"] = {
        "subset": "test",
        "duration": 10.0,
        "fps": fps,
        "annotations": [{"segment": [1.0, 5.0], "label": "A", "salient": 3.0}],
    }
    return {"database": database, "classes": ["A", "B"]}


def _small() -> dict:
    return {
        "database": {
            "vb": {
                "subset": "train",
                "duration": 10.0,
                "fps": 30.0,
                "annotations": [
                    {"segment": [4.0, 5.0], "label": "Run", "salient": 4.5},
                    {"segment": [0.2, 0.5], "label": "Run", "salient": 0.3},
                ],
            },
            "va": {
                "subset": "train",
                "duration": 10.0,
                "fps": 25.0,
                "annotations": [
                    {"segment": [1.0, 2.0], "label": "Jump", "salient": 1.2},
                    {"segment": [1.0, 2.0], "label": "Run", "salient": 1.8},
                ],
            },
            "vt": {
                "subset": "test",
                "duration": 10.0,
                "fps": 25.0,
                "annotations": [{"segment": [1.0, 2.0], "label": "Jump", "salient": 1.5}],
            },
        },
        "classes": ["Jump", "Run"],
    }


def test_center_hand_computed_and_ordered():
    result = _sample(_small(), distribution="center", seed=0)
    # va: 25..50 at 25 fps, L=25 -> 25 + floor(12.5 + 0.5) = 38; vb: 6..15 at 30 fps -> 11; 120..150 -> 135
    assert list(result) == [
        Point("va", "Jump", 0, 25, 50, 38, 38 / 25),
        Point("va", "Run", 1, 25, 50, 38, 38 / 25),
        Point("vb", "Run", 1, 6, 15, 11, 11 / 30),
        Point("vb", "Run", 1, 120, 150, 135, 4.5),
    ]
    assert result.summary.instances == 4 and result.summary.points == 4
    assert result.summary.outside == 0 and result.summary.dropped == 0


def test_uniform_relative_positions_pass_kolmogorov_smirnov():
    ann = _synthetic(100, 30)
    rel = relative_positions(_sample(ann, distribution="uniform", seed=3).points)
    assert len(rel) == 3000
    assert stats.kstest(rel, "uniform").pvalue > 0.01
    # the test has power: centred points are rejected
    rel_beta = relative_positions(_sample(ann, distribution="beta", beta_a=2, beta_b=2, seed=3).points)
    assert stats.kstest(rel_beta, "uniform").pvalue < 1e-6


def test_uniform_reaches_both_ends_of_short_instances():
    ann = {
        "database": {
            "v": {
                "subset": "train",
                "duration": 60.0,
                "fps": 10.0,
                "annotations": [{"segment": [1.0 + 2 * i, 1.2 + 2 * i], "label": "A"} for i in range(25)],
            }
        },
        "classes": ["A"],
    }
    frames = [p.point - p.start_frame for s in range(8) for p in _sample(ann, distribution="uniform", seed=s)]
    assert set(frames) == {0, 1, 2}  # frames 10..12 of a 0.2 s instance at 10 fps, inclusive


@pytest.mark.parametrize("sigma", [0.05, 0.1])
def test_gaussian_std_matches_sigma(sigma):
    rel = relative_positions(_sample(_synthetic(100, 30), distribution="gaussian", sigma=sigma, seed=1).points)
    assert abs(rel.mean() - 0.5) < 0.01
    assert rel.std() == pytest.approx(sigma, rel=0.05)


def test_gaussian_is_truncated_by_resampling_not_clipping():
    sigma = 0.4
    rel = relative_positions(_sample(_synthetic(100, 30), distribution="gaussian", sigma=sigma, seed=2).points)
    expected = stats.truncnorm(-0.5 / sigma, 0.5 / sigma, loc=0.5, scale=sigma)
    assert rel.min() >= 0 and rel.max() <= 1
    assert rel.std() == pytest.approx(expected.std(), rel=0.05)
    # clipping would pile ~21 % of the points on the two ends; resampling leaves about 1/L there
    assert np.mean((rel == 0) | (rel == 1)) < 0.01
    assert stats.kstest(rel, expected.cdf).pvalue > 0.01


def test_beta_mean_near_a_over_a_plus_b():
    rel = relative_positions(_sample(_synthetic(100, 30), distribution="beta", beta_a=2, beta_b=5, seed=4).points)
    assert rel.mean() == pytest.approx(2 / 7, abs=0.01)
    assert stats.kstest(rel, stats.beta(2, 5).cdf).pvalue > 0.01


def test_same_seed_identical_file_bytes_other_seed_differs(tmp_path):
    ann = _synthetic(5, 4)
    write_points_csv(_sample(ann, distribution="gaussian", sigma=0.1, seed=11), tmp_path / "a.csv")
    write_points_csv(_sample(ann, distribution="gaussian", sigma=0.1, seed=11), tmp_path / "b.csv")
    write_points_csv(_sample(ann, distribution="gaussian", sigma=0.1, seed=12), tmp_path / "c.csv")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert (tmp_path / "a.csv").read_bytes() != (tmp_path / "c.csv").read_bytes()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32), distribution=st.sampled_from(["center", "gaussian", "uniform", "beta", "manual"]))
def test_annotation_distributions_stay_inside_and_skip_test_videos(seed, distribution):
    ann = _synthetic(3, 3, min_len=0.5, max_len=3.0)
    result = _sample(ann, distribution=distribution, seed=seed, sigma=0.3)
    assert len(result) == 9 and {p.video_id for p in result} == {"v000", "v001", "v002"}
    assert all(p.start_frame <= p.point <= p.stop_frame for p in result)
    keys = [(p.video_id, p.start_frame) for p in result]
    assert keys == sorted(keys)


def test_drop_rate_removes_a_nested_share_and_keeps_other_points():
    ann = _synthetic(10, 10)
    full = set(_sample(ann, distribution="uniform", seed=5))
    quarter = _sample(ann, distribution="uniform", seed=5, drop_rate=0.25)
    half = _sample(ann, distribution="uniform", seed=5, drop_rate=0.5)
    assert (len(quarter), quarter.summary.dropped) == (75, 25)
    assert (len(half), half.summary.dropped) == (50, 50)
    assert set(half) <= set(quarter) <= full


def test_offset_noise_moves_points_outside_and_clips_to_video():
    ann = {
        "database": {
            "v": {
                "subset": "train",
                "duration": 4.0,
                "fps": 25.0,
                "annotations": [{"segment": [0.0, 0.4], "label": "A"}, {"segment": [3.6, 4.0], "label": "A"}] * 20,
            }
        },
        "classes": ["A"],
    }
    base = _sample(ann, distribution="center", seed=0)
    moved = _sample(ann, distribution="center", seed=0, offset_std=2.0)
    assert moved.summary.outside > 10 and base.summary.outside == 0
    frames = np.array([p.point for p in moved])
    assert frames.min() == 0 and frames.max() == 99  # 4 s at 25 fps: frames 0..99, both ends hit
    assert all(p.time == p.point / 25.0 for p in moved)


def test_offset_noise_needs_a_duration():
    ann = _small()
    del ann["database"]["vb"]["duration"]
    with pytest.raises(InstanceError, match="video 'vb': 'duration' is needed"):
        _sample(ann, distribution="center", seed=0, offset_std=0.5)


def test_min_instance_frames_skips_and_reports():
    result = _sample(_small(), distribution="center", seed=0, min_instance_frames=10)
    # vb's [0.2, 0.5] s at 30 fps spans 9 frames: skipped
    assert [(p.video_id, p.start_frame) for p in result] == [("va", 25), ("va", 25), ("vb", 120)]
    assert result.summary.skipped_short == 1
    assert result.summary.examples["skipped_short"] == ["vb/Run [0.2, 0.5] s"]


def test_instance_shorter_than_one_frame_is_an_error_unless_skipped():
    ann = _small()
    ann["database"]["va"]["annotations"].append({"segment": [3.0, 3.01], "label": "Jump"})
    with pytest.raises(
        InstanceError,
        match=r"video 'va' class 'Jump': instance \[3, 3.01\] s is shorter than one "
        r"frame at 25 fps; set min_instance_frames >= 1",
    ):
        _sample(ann, distribution="uniform", seed=0, min_instance_frames=0)
    assert _sample(ann, distribution="uniform", seed=0, min_instance_frames=1).summary.skipped_short == 1


def test_overlapping_instances_get_one_point_each_and_are_reported():
    ann = _small()
    ann["database"]["vb"]["annotations"].append({"segment": [4.5, 6.0], "label": "Run"})
    result = _sample(ann, distribution="center", seed=0)
    assert len(result) == 5
    assert result.summary.overlapping == 1
    assert result.summary.examples["overlapping"] == ["vb/Run [4.5, 6] s"]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (
            {"distribution": "normal"},
            "distribution\n  Input should be 'center', 'gaussian', 'uniform', 'beta', 'manual' or 'file'",
        ),
        ({"seed": -1}, "seed\n  Input should be greater than or equal to 0"),
        ({"seed": 1.5}, "seed\n  Input should be a valid integer"),
        ({"sigma": 1.5}, "sigma\n  Input should be less than or equal to 1"),
        ({"sigma": math.nan}, "sigma\n  Input should be a finite number"),
        ({"beta_b": 0}, "beta_b\n  Input should be greater than 0"),
        ({"drop_rate": 1.0}, "drop_rate\n  Input should be less than 1"),
        ({"offset_std": -0.1}, "offset_std\n  Input should be greater than or equal to 0"),
        ({"min_instance_frames": 2.5}, "min_instance_frames\n  Input should be a valid integer"),
        ({"manual_jitter_s": -1}, "manual_jitter_s\n  Input should be greater than or equal to 0"),
        ({"annotator": "first"}, "annotator.literal['random']\n  Input should be 'random'"),
        ({"annotator": 2, "manual_files": ["a", "b"]}, "annotator 2 must be 'random' or an index in 0..1"),
        ({"distribution": "file"}, "distribution 'file' needs file"),
    ],
)
def test_bad_settings_name_the_key_and_the_allowed_values(kwargs, expected):
    with pytest.raises(ValidationError) as err:
        Sampling(**kwargs)
    assert err.value.error_count() == 1 or kwargs == {"annotator": "first"}  # a union names each branch
    assert expected in str(err.value)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda a: a["database"]["va"]["annotations"].append({"segment": [1, 2], "label": "Swim"}),
            "video 'va' class 'Swim': label not in 'classes'",
        ),
        (
            lambda a: a["database"]["va"]["annotations"].append({"segment": [2, 1], "label": "Jump"}),
            r"video 'va' class 'Jump': segment must satisfy 0 <= start < end, got \[2.0, 1.0\]",
        ),
        (lambda a: a["database"]["va"].update(fps=0), "video 'va': 'fps' .* must be a number > 0"),
        (lambda a: a["database"]["va"].update(subset="validation"), "video 'va': subset must be 'train' or 'test'"),
        (
            lambda a: a["database"]["va"]["annotations"][0].pop("salient"),
            "video 'va' class 'Jump': instance .* has no 'salient' time",
        ),
    ],
)
def test_bad_annotations_name_video_and_class(edit, expected):
    ann = _small()
    edit(ann)
    with pytest.raises(InstanceError, match=expected):
        _sample(ann, distribution="manual", seed=0)


def test_manual_emulation_jitters_around_salient_inside_the_instance():
    ann = _synthetic(50, 20)
    result = _sample(ann, distribution="manual", seed=6, manual_jitter_s=0.5)
    salient = {
        (vid, round(a["segment"][0] * 25)): a["salient"]
        for vid, e in ann["database"].items()
        if e["subset"] == "train"
        for a in e["annotations"]
    }
    err = np.array([p.time - salient[(p.video_id, p.start_frame)] for p in result])
    assert len(err) == 1000 and abs(err.mean()) < 0.05
    # normal jitter 0.5 s plus frame rounding (uniform, 1/25 s wide): std sqrt(0.25 + 0.04**2 / 12)
    assert err.std() == pytest.approx(math.sqrt(0.25 + 0.04**2 / 12), rel=0.06)
    assert result.summary.manual.source == "salient" and result.summary.manual.jitter_s == 0.5


def _click_files(tmp_path: Path) -> list[str]:
    one = tmp_path / "ann1.txt"
    one.write_bytes(
        b"va,1.5,Jump\r\n\r\n"  # inside va/Jump
        b"va,2.4,Run\r\n\r\n"  # 0.4 s after va/Run
        b"vb,3.0,Run\r\n\r\n"  # 1.0 s before [4, 5], 2.5 s after [0.2, 0.5]: nearest is [4, 5]
        b"vb,4.2,Run\r\n\r\n"  # inside [4, 5]: replaces the 1.0 s click (duplicate)
        b"vb,6.0,Jump\r\n\r\n"  # vb has no Jump instance
        b"vx,1.0,Run\r\n\r\n"  # unknown video
        b"vt,1.0,Jump\r\n"  # test video
    )
    two = tmp_path / "ann2.txt"
    two.write_bytes(b"va,1.1,Jump\nvb,0.3,Run\n")
    return [str(one), str(two)]


def test_manual_clicks_map_to_nearest_instance_of_their_class(tmp_path):
    result = _sample(_small(), distribution="manual", manual_files=_click_files(tmp_path), annotator=0, seed=0)
    assert list(result) == [
        Point("va", "Jump", 0, 25, 50, 38, 1.52),  # 1.5 s * 25 fps
        Point("va", "Run", 1, 25, 50, 60, 2.4),  # outside its instance, kept where clicked
        Point("vb", "Run", 1, 120, 150, 126, 4.2),
    ]
    m = result.summary.manual
    assert (m.clicks, m.assigned, m.inside, m.outside) == (5, 4, 2, 2)
    assert m.inside_share == 0.5
    assert m.outside_mean_s == pytest.approx(0.7) and m.outside_max_s == pytest.approx(1.0)
    assert (m.duplicate_clicks, m.absent_class_clicks, m.unknown_video_clicks, m.test_video_clicks) == (1, 1, 1, 1)
    assert (m.unclicked_instances, result.summary.unlabelled, result.summary.outside) == (1, 1, 1)
    assert m.videos_per_file == [2, 0]
    assert result.summary.examples["unclicked_instances"] == ["vb/Run [0.2, 0.5] s"]
    assert result.summary.examples["absent_class_clicks"] == ["ann1.txt:9 vb/Jump"]
    assert result.summary.examples["unknown_video_clicks"] == ["ann1.txt:11 vx"]
    assert json.loads(json.dumps(result.summary.to_dict()))["manual"]["annotator"] == 0


def test_manual_annotator_choice_is_fixed_or_seeded(tmp_path):
    files = _click_files(tmp_path)
    second = _sample(_small(), distribution="manual", manual_files=files, annotator=1, seed=0)
    assert [(p.video_id, p.class_name, p.point) for p in second] == [("va", "Jump", 28), ("vb", "Run", 9)]
    draws = {
        tuple(_sample(_small(), distribution="manual", manual_files=files, seed=s).summary.manual.videos_per_file)
        for s in range(12)
    }
    assert draws == {(2, 0), (1, 1), (0, 2)}
    a = _sample(_small(), distribution="manual", manual_files=files, seed=3)
    assert a == _sample(_small(), distribution="manual", manual_files=files, seed=3)


def test_manual_click_with_unknown_class_is_an_error(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("va,1.5,Jump\n\nva,1.5,Jumping\n")
    with pytest.raises(PointFileError, match=r"bad\.txt:3: class 'Jumping' \(video 'va'\) is not one of"):
        _sample(_small(), distribution="manual", manual_files=[str(path)])


def test_file_distribution_reads_points_back(tmp_path):
    original = _sample(_small(), distribution="uniform", seed=9)
    write_points_csv(original, tmp_path / "p.csv")
    again = _sample(_small(), distribution="file", file=str(tmp_path / "p.csv"), seed=1)
    assert [p[:6] for p in again] == [p[:6] for p in original]
    assert [p.time for p in again] == pytest.approx([p.time for p in original])
    assert len(_sample(_small(), distribution="file", file=str(tmp_path / "p.csv"), drop_rate=0.5)) == 2


def test_point_report_writes_histogram_and_hand_computed_stats(tmp_path):
    points = [
        Point("va", "Jump", 0, 0, 10, 5, 0.2),
        Point("va", "Run", 1, 0, 10, 10, 0.4),
        Point("vb", "Run", 1, 10, 20, 25, 25 / 30),
    ]  # relative 0.5, 1.0, 1.5
    written = point_report(points, _small(), tmp_path / "r" / "h.png", tmp_path / "r" / "s.json")
    saved = json.loads((tmp_path / "r" / "s.json").read_text())
    assert saved == written == point_stats(points, _small())
    assert saved["count"] == 3 and saved["videos"] == 2 and saved["train_instances"] == 4
    assert saved["coverage"] == 0.75
    assert saved["relative_position"]["mean"] == pytest.approx(1.0)
    assert saved["relative_position"]["std"] == pytest.approx(math.sqrt(1 / 6))
    assert saved["inside_share"] == pytest.approx(2 / 3)
    assert (tmp_path / "r" / "h.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["h.png", "s.json"]


def test_point_report_of_a_point_set_includes_the_summary(tmp_path):
    result = _sample(_small(), distribution="center", seed=0, min_instance_frames=10, drop_rate=0.34)
    assert isinstance(result, PointSet)
    report = point_report(result, _small(), tmp_path / "h.png", tmp_path / "s.json")
    assert (report["distribution"], report["skipped_short"], report["dropped"]) == ("center", 1, 1)
    assert report["count"] == 2 and report["inside_share"] == 1.0


def test_every_distribution_is_tested():
    assert DISTRIBUTIONS == ("center", "gaussian", "uniform", "beta", "manual", "file")


@needs_thumos
def test_released_thumos_gaussian_points_spread_and_default_sigma():
    """Measure the released points: relative-position std 0.0347, i.e. a constant ~1 frame of
    jitter about 1.5 frames before the centre; the default sigma reproduces the aggregate std."""
    ann = thumos_annotations()
    released = read_points_csv(THUMOS / "point_labels_gaussian.csv", ann)
    rel = relative_positions(released)
    offset = np.array([p.point - (p.start_frame + p.stop_frame) / 2 for p in released])
    print(
        f"\nreleased: relative mean {rel.mean():.4f} std {rel.std():.4f}; "
        f"offset from centre {offset.mean():.2f} +- {offset.std():.2f} frames"
    )
    assert rel.std() == pytest.approx(0.0347, abs=0.0005)
    assert offset.mean() == pytest.approx(-1.51, abs=0.01) and offset.std() == pytest.approx(1.06, abs=0.01)
    ours = _sample(ann, distribution="gaussian", seed=0)
    ours_rel = relative_positions(ours.points)
    print(f"default gaussian: {len(ours)} points, relative std {ours_rel.std():.4f}")
    assert len(ours) == 3007 and ours.summary.overlapping == 5
    assert ours_rel.std() == pytest.approx(rel.std(), abs=0.002)


@needs_thumos
@pytest.mark.parametrize("annotator", [0, 1, 2, 3])
def test_released_manual_clicks_map_onto_ground_truth(annotator):
    ann = thumos_annotations()
    files = [str(THUMOS / f"manual_THUMOS{i}.txt") for i in range(1, 5)]
    result = _sample(ann, distribution="manual", manual_files=files, annotator=annotator, seed=0)
    m = result.summary.manual
    print(
        f"\nmanual_THUMOS{annotator + 1}: {m.clicks} clicks on training videos, {m.assigned} assigned, "
        f"inside share {m.inside_share:.4f}, outside {m.outside} (mean {m.outside_mean_s:.2f} s, "
        f"max {m.outside_max_s:.2f} s), duplicates {m.duplicate_clicks}, absent class {m.absent_class_clicks}, "
        f"unknown video {m.unknown_video_clicks}, unclicked instances {m.unclicked_instances}, points {len(result)}"
    )
    assert m.inside_share > 0.95
    assert m.unclicked_instances < 0.06 * 3007
    assert len(result) + m.unclicked_instances == 3007
