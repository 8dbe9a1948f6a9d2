"""Detector training and inference: the batch stream and schedule, overfitting three tiny videos
to mAP 1.0 with the project's evaluator, CPU determinism, bit-identical resume, CUDA vs CPU."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from detector.config import DetectorConfig, InferenceConfig
from detector.inference import predict_detector
from detector.losses import LOSS_TERMS
from detector.trainer import CHECKPOINT_NAME, batch_videos, learning_rate, train_detector
from features.timegrid import RELEASED_GRID
from lacp.metrics import evaluate_detection, load_ground_truth
from lacp.proposals import to_results_json

D, C = 16, 3
SECONDS = RELEASED_GRID.seconds_per_snippet  # 0.64 s per snippet
# video -> (T, instances as (first snippet, end snippet exclusive, class))
VIDEOS = {
    "a": (40, [(5, 9, 0), (20, 32, 1)]),
    "b": (33, [(2, 4, 2), (12, 25, 0)]),
    "c": (57, [(30, 33, 1), (40, 52, 2), (6, 8, 0)]),
}
CLASSES = ["class_a", "class_b", "class_c"]


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: the detector's many small ops stall on thread hand-offs when the test
    machine's cores are shared (60 steps: 5 s with one thread, over a minute with two under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _dataset(seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, list[tuple[float, float, int]]], dict]:
    """Gaussian features with a class-specific mean shift (+3 on channel c) inside each instance."""
    rng = np.random.default_rng(seed)
    features, instances, database = {}, {}, {}
    for vid, (length, spans) in VIDEOS.items():
        x = rng.standard_normal((length, D)).astype(np.float32)
        for start, end, label in spans:
            x[start:end, label] += 3.0
        features[vid] = x
        instances[vid] = [(start * SECONDS, end * SECONDS, label) for start, end, label in spans]
        database[vid] = {
            "subset": "train",
            "annotations": [
                {"segment": [start * SECONDS, end * SECONDS], "label": CLASSES[label]} for start, end, label in spans
            ],
        }
    return features, instances, {"database": database}


def _config(**overrides) -> DetectorConfig:
    base = dict(
        feature_dim=D,
        embed_dim=32,
        num_levels=4,
        steps=60,
        batch=3,
        lr=3e-3,
        warmup_steps=10,
        dropout=0.0,
        ema_decay=0.0,
        checkpoint_every=0,
        device="cpu",
        seed=0,
    )
    return DetectorConfig(**{**base, **overrides})


def _train(config: DetectorConfig, checkpoint_dir=None, on_progress=None):
    features, instances, _ = _dataset()
    return train_detector(
        instances=instances,
        get_features=features,
        num_classes=C,
        grid=RELEASED_GRID,
        config=config,
        checkpoint_dir=checkpoint_dir,
        on_progress=on_progress,
    )


def _assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_batches_stream_through_per_epoch_permutations():
    """5 videos, batch 2: steps 1-2 take the first 4 of epoch 0's permutation, step 3 its last
    and the first of epoch 1's; every video appears once per epoch."""
    epoch0 = np.random.default_rng([7, 0, 0]).permutation(5)
    epoch1 = np.random.default_rng([7, 0, 1]).permutation(5)
    steps = [batch_videos(k, num_videos=5, batch=2, seed=7) for k in (1, 2, 3, 4, 5)]
    np.testing.assert_array_equal(np.concatenate(steps), np.concatenate([epoch0, epoch1]))
    np.testing.assert_array_equal(steps[2], [epoch0[4], epoch1[0]])
    # batch larger than the videos: every video, once, per step
    assert sorted(batch_videos(3, num_videos=2, batch=4, seed=0).tolist()) == [0, 1]


def test_learning_rate_warms_up_then_follows_a_cosine():
    config = _config(steps=12, warmup_steps=4, lr=1.0)
    rates = [learning_rate(k, config) for k in range(1, 13)]
    # warm-up k / 4, then (1 + cos(pi (k - 5) / 8)) / 2 for k = 5..12
    expected = [0.25, 0.5, 0.75, 1.0] + [(1 + math.cos(math.pi * (k - 5) / 8)) / 2 for k in range(5, 13)]
    np.testing.assert_allclose(rates, expected)
    assert rates[-1] > 0


def test_the_detector_overfits_three_tiny_videos():
    """Trained and evaluated on the same three videos: every instance found at tIoU 0.1 ... 0.7."""
    features, _, ground_truth = _dataset()
    config = _config()
    result = _train(config)
    assert [k for k in result.log[0] if k.startswith("loss_")] == [f"loss_{t}" for t in LOSS_TERMS]
    assert result.log[-1]["loss_total"] < 0.1 * result.log[0]["loss_total"]
    assert result.weights == "final step" and result.steps == 60
    detections = predict_detector(
        state_dict=result.state_dict,
        video_ids=list(VIDEOS),
        get_features=features,
        num_classes=C,
        grid=RELEASED_GRID,
        config=config,
        inference=InferenceConfig(),
    )
    gt = load_ground_truth(ground_truth, subset="train")
    scores = evaluate_detection(gt, to_results_json(detections, classes=CLASSES))
    np.testing.assert_array_equal(scores.tiou, np.round(np.arange(1, 8) * 0.1, 10))
    np.testing.assert_array_equal(scores.map, np.ones(7))
    # segments are in seconds, inside each video
    for vid, found in detections.items():
        assert found and all(0 <= d["segment"][0] < d["segment"][1] <= VIDEOS[vid][0] * SECONDS for d in found)


def test_training_is_deterministic_on_cpu():
    config = _config(steps=4, dropout=0.1, ema_decay=0.9)
    first, second = _train(config), _train(config)
    assert first.log and [r["loss_total"] for r in first.log] == [r["loss_total"] for r in second.log]
    _assert_same_state(first.state_dict, second.state_dict)
    assert first.weights == "ema (decay 0.9)"
    other = _train(_config(steps=4, dropout=0.1, ema_decay=0.9, seed=1))
    assert not torch.equal(other.state_dict["proj1.weight"], first.state_dict["proj1.weight"])


class _Interrupted(Exception):
    """Raised from the progress callback to stop a run as a kill would."""


def test_resume_is_bit_identical(tmp_path):
    """A run killed after step 4 (checkpoint at step 3) resumes to the uninterrupted run's weights,
    EMA, normaliser and log, with dropout drawing from the restored RNG."""
    config = _config(steps=6, checkpoint_every=3, dropout=0.1, ema_decay=0.9)
    whole = _train(config, tmp_path / "whole")

    def stop_after_4(step: int, steps: int, row: dict) -> None:
        if step == 4:
            raise _Interrupted

    with pytest.raises(_Interrupted):
        _train(config, tmp_path / "part", on_progress=stop_after_4)
    assert (tmp_path / "part" / CHECKPOINT_NAME).exists()
    resumed_steps: list[int] = []
    resumed = _train(config, tmp_path / "part", on_progress=lambda step, steps, row: resumed_steps.append(step))
    assert resumed_steps == [4, 5, 6]
    assert resumed.log == [{**row, "seconds": r["seconds"]} for row, r in zip(whole.log, resumed.log)]
    _assert_same_state(resumed.state_dict, whole.state_dict)
    # other settings: the checkpoint is refused, naming the setting
    with pytest.raises(ValueError, match=r"other detector settings \(lr\)"):
        _train(_config(steps=6, checkpoint_every=3, dropout=0.1, ema_decay=0.9, lr=1e-2), tmp_path / "part")


def test_bad_features_name_the_video():
    features, instances, _ = _dataset()
    features["b"] = features["b"][:, :4]
    with pytest.raises(ValueError, match=r"video 'b': features must have shape \(T >= 1, 16\)"):
        train_detector(
            instances=instances,
            get_features=features,
            num_classes=C,
            grid=RELEASED_GRID,
            config=_config(steps=2, batch=3),
        )


@pytest.mark.cuda
def test_cuda_training_and_predictions_follow_the_cpu():
    """Without dropout a CUDA run gives the CPU's losses, and one set of weights gives the same
    detections on both devices (TF32 off, so both compute in float32)."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        cpu = _train(_config(steps=5))
        cuda = _train(_config(steps=5, device="cuda"))
        np.testing.assert_allclose([r["loss_total"] for r in cuda.log], [r["loss_total"] for r in cpu.log], rtol=1e-4)
        trained = _train(_config())
        features, _, _ = _dataset()
        found = {
            device: predict_detector(
                state_dict=trained.state_dict,
                video_ids=list(VIDEOS),
                get_features=features,
                num_classes=C,
                grid=RELEASED_GRID,
                config=_config(),
                inference=InferenceConfig(),
                device=device,
            )
            for device in ("cpu", "cuda")
        }
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn
    for vid in VIDEOS:
        confident = [[d for d in found[device][vid] if d["score"] > 0.05] for device in ("cpu", "cuda")]
        assert len(confident[0]) == len(confident[1]) > 0
        for on_cpu, on_cuda in zip(*confident):
            assert on_cpu["label_index"] == on_cuda["label_index"]
            assert on_cuda["score"] == pytest.approx(on_cpu["score"], abs=1e-4)
            np.testing.assert_allclose(on_cuda["segment"], on_cpu["segment"], atol=1e-3)
