"""Training loop: a step lowers the loss, CPU determinism, bit-identical resume, switches;
batching: point frames to snippets, padding."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lacp.batching import VideoItem, VideoSample, collate, load_sample, point_matrix, snippet_index
from lacp.losses import lacp_loss
from lacp.model import LACPNet
from lacp.trainer import CHECKPOINT_NAME, TrainConfig, batch_indices, train

SHARED = Path(__file__).parents[2] / "shared"
D, C = 8, 3


def _dataset(num_videos: int = 6, seed: int = 0) -> tuple[list[VideoItem], dict]:
    rng = np.random.default_rng(seed)
    videos, features = [], {}
    for i in range(num_videos):
        length = int(rng.integers(6, 20))
        vid = f"video_{i}"
        classes = rng.integers(0, C, size=3)
        frames = rng.integers(0, length * 16, size=3).astype(float)  # 25 fps: frame/16
        labels = np.zeros(C, np.float32)
        labels[classes] = 1
        features[vid] = rng.standard_normal((length, D)).astype(np.float32)
        features[vid][:, classes[0]] += 2.0  # something to learn
        videos.append(VideoItem(vid, labels, frames, classes, 25.0))
    return videos, features


def _seed_search(items):
    """Test stand-in for lacp.search: pseudo labels = the action seeds."""
    return [act.astype(np.uint8) for _, act, _ in items]


def _config(**overrides) -> TrainConfig:
    base = dict(steps=6, batch=3, feature_dim=D, embed_dim=16, search_every=2, checkpoint_every=0, device="cpu", seed=3)
    return TrainConfig(**{**base, **overrides})


def _run(tmp_path=None, **overrides):
    videos, features = _dataset()
    return train(
        videos=videos,
        get_features=features,
        num_classes=C,
        config=_config(**overrides),
        checkpoint_dir=tmp_path,
        search_fn=_seed_search,
    )


def _losses(result) -> list[list[float]]:
    return [[v for k, v in row.items() if k.startswith("loss_")] for row in result.log]


def _assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_one_step_lowers_the_loss_on_a_fixed_batch():
    videos, features = _dataset()
    batch = collate([load_sample(v, get_features=features.__getitem__, num_classes=C, feature_dim=D) for v in videos])
    torch.manual_seed(0)
    net = LACPNet(num_classes=C, feature_dim=D, embed_dim=16, dropout=0.0)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    seeds = torch.zeros(batch.mask.shape, dtype=torch.bool)
    seeds[:, 0] = True
    pseudo = [np.asarray(p, np.uint8) for p in (batch.points[b, : int(n)].numpy() for b, n in enumerate(batch.lengths))]

    def loss() -> torch.Tensor:
        return lacp_loss(net(batch.features, batch.mask), batch, seeds, pseudo, rng=np.random.default_rng(0)).total

    before = loss()
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    assert loss().item() < before.item()


def test_training_is_deterministic_on_cpu():
    first, second = _run(), _run()
    assert _losses(first) == _losses(second)
    _assert_same_state(first.state_dict, second.state_dict)
    assert first.pseudo_labels.keys() == second.pseudo_labels.keys()
    assert first.selection == "final step" and first.steps == 6
    other_seed = _run(seed=4)
    assert _losses(other_seed) != _losses(first)


def test_resume_is_bit_identical(tmp_path):
    whole = _run(tmp_path / "whole")
    # stop after step 3 (its checkpoint holds the search of step 2), then go on to 6
    part = _run(tmp_path / "part", steps=3)
    assert (tmp_path / "part" / CHECKPOINT_NAME).exists()
    assert part.steps == 3
    resumed = _run(tmp_path / "part", steps=6)
    assert _losses(resumed) == _losses(whole)
    _assert_same_state(resumed.state_dict, whole.state_dict)
    for vid, labels in whole.pseudo_labels.items():
        np.testing.assert_array_equal(resumed.pseudo_labels[vid], labels)
    # a finished run resumes to the same result without training
    again = _run(tmp_path / "part", steps=6)
    _assert_same_state(again.state_dict, whole.state_dict)
    assert not list((tmp_path / "part").glob("*.tmp"))


def test_search_log_leaves_training_bit_identical_and_logs_every_search(tmp_path):
    videos, features = _dataset()
    seen: list[dict[str, np.ndarray]] = []

    def search_log(labels):  # reads the labels, as the stage's pseudo-label quality log does
        seen.append({k: v.copy() for k, v in labels.items()})
        return {"pseudo_share": float(np.mean([v.mean() for v in labels.values()]))}

    plain = _run()
    logged = train(
        videos=videos,
        get_features=features,
        num_classes=C,
        config=_config(),
        search_fn=_seed_search,
        search_log=search_log,
    )
    _assert_same_state(plain.state_dict, logged.state_dict)
    assert _losses(plain) == _losses(logged)
    # searches at steps 2, 4, 6 (search_every 2): one logged value each, none elsewhere
    assert [int(r["step"]) for r in logged.log if "pseudo_share" in r] == [2, 4, 6]
    assert len(seen) == 3
    assert logged.log[1]["pseudo_share"] == pytest.approx(np.mean([v.mean() for v in seen[0].values()]))
    # the first search's labels are kept apart from the last one's, and survive a resume
    assert logged.first_search_step == 2
    for vid, labels in seen[0].items():
        np.testing.assert_array_equal(logged.first_pseudo_labels[vid], labels)
        np.testing.assert_array_equal(logged.pseudo_labels[vid], seen[-1][vid])
    _run(tmp_path, steps=3)
    resumed = _run(tmp_path, steps=6)
    assert resumed.first_search_step == 2
    for vid, labels in seen[0].items():
        np.testing.assert_array_equal(resumed.first_pseudo_labels[vid], labels)


def test_checkpoint_of_other_settings_is_refused(tmp_path):
    _run(tmp_path, steps=2)
    with pytest.raises(ValueError, match="lr"):
        _run(tmp_path, steps=4, lr=1e-3)


def test_search_schedule_and_completeness_terms():
    calls = []

    def search(items):
        calls.append(len(items))
        return _seed_search(items)

    videos, features = _dataset()
    result = train(videos=videos, get_features=features, num_classes=C, config=_config(steps=5), search_fn=search)
    assert calls == [6, 6]  # after steps 2 and 4, over all six videos
    assert [row["search_seconds"] > 0 for row in result.log] == [False, True, False, True, False]
    assert [row["loss_score"] > 0 for row in result.log] == [False, False, True, True, True]
    assert set(result.pseudo_labels) == {v.video_id for v in videos}
    for video in videos:
        assert result.pseudo_labels[video.video_id].shape == (len(features[video.video_id]), C)


@pytest.mark.parametrize("sampling", ["random", "uniform"])
def test_num_segments_resamples_each_step_and_indexes_the_full_grid_labels(monkeypatch, sampling):
    """train.num_segments: every step trains on N snippets per video (the ones the step's rng picks,
    points moved to their bins); the search runs on every snippet and a step reads its labels at
    the picked snippets."""
    import lacp.trainer as trainer
    from lacp.batching import resample_sample, segment_bins, segment_positions

    videos, features = _dataset()
    num_segments, seen, searched = 8, [], []
    real_loss = trainer.lacp_loss

    def recording_loss(out, batch, bg_seeds, pseudo, **kwargs):
        seen.append(
            (
                batch.video_ids,
                batch.features.numpy().copy(),
                batch.points.numpy().copy(),
                batch.lengths.tolist(),
                None if pseudo is None else [p.copy() for p in pseudo],
            )
        )
        return real_loss(out, batch, bg_seeds, pseudo, **kwargs)

    def search(items):
        labels = _seed_search(items)
        searched.append(labels)
        return labels

    monkeypatch.setattr(trainer, "lacp_loss", recording_loss)
    config = _config(steps=5, num_segments=num_segments, segment_sampling=sampling)
    result = train(videos=videos, get_features=features, num_classes=C, config=config, search_fn=search)
    by_id = {v.video_id: v for v in videos}
    for video in videos:  # the search and its labels stay on the full grid
        assert result.pseudo_labels[video.video_id].shape == (len(features[video.video_id]), C)
    assert [len(labels) for labels in searched] == [6, 6]
    for step, (ids, feats, points, lengths, pseudo) in enumerate(seen, start=1):
        assert feats.shape == (3, num_segments, D) and lengths == [num_segments] * 3
        rng = np.random.default_rng([config.seed, 2, step]) if sampling == "random" else None
        for b, vid in enumerate(ids):
            full = load_sample(by_id[vid], get_features=features.__getitem__, num_classes=C, feature_dim=D)
            at = segment_positions(len(features[vid]), num_segments, rng=rng)
            np.testing.assert_array_equal(feats[b], features[vid][at])  # the picked snippets
            np.testing.assert_array_equal(points[b], resample_sample(full, at).points)  # points in their bins
            start, stop = segment_bins(len(features[vid]), num_segments)
            snippets = np.minimum(snippet_index(by_id[vid].point_frames, fps=25.0), len(features[vid]) - 1)
            for t, c in zip(snippets.tolist(), by_id[vid].point_classes.tolist()):  # no point lost
                assert points[b][(start <= t) & (t < stop), c].all()
            if step > 2:  # labels of the search after step 2 (or 4), at the step's snippets
                latest = searched[0] if step <= 4 else searched[1]
                np.testing.assert_array_equal(pseudo[b], latest[[v.video_id for v in videos].index(vid)][at])
            else:
                assert pseudo is None


def test_num_segments_run_resumes_bit_identically(tmp_path):
    """The snippets a step picks depend on (seed, step) only, so a resumed run trains on the same ones."""
    whole = _run(tmp_path / "whole", num_segments=8)
    _run(tmp_path / "part", steps=3, num_segments=8)
    resumed = _run(tmp_path / "part", steps=6, num_segments=8)
    assert _losses(resumed) == _losses(whole)
    _assert_same_state(resumed.state_dict, whole.state_dict)
    assert _losses(_run(num_segments=8, seed=3)) == _losses(whole)
    assert _losses(_run(num_segments=0)) != _losses(whole)


def test_num_segments_config_is_checked():
    with pytest.raises(ValueError, match=r"num_segments\n +Input should be greater than or equal to 0"):
        _config(num_segments=-1)
    with pytest.raises(ValueError, match=r"segment_sampling\n +Input should be 'random' or 'uniform'"):
        _config(segment_sampling="linear")


def test_released_label_delay_waits_for_the_loader_rebuild():
    # 12 videos, batch 3: the released loader is rebuilt every 4 steps (steps 1, 5, 9); searches
    # after steps 2, 4, 6 and 8. Without delay the labels are used from step 3; with it from
    # step 5 (the search of step 4) and then from step 9 (the search of step 8).
    videos, features = _dataset(num_videos=12)
    used = {}
    for delay in ("none", "released"):
        result = train(
            videos=videos,
            get_features=features,
            num_classes=C,
            config=_config(steps=10, label_delay=delay),
            search_fn=_seed_search,
        )
        used[delay] = [row["loss_score"] > 0 for row in result.log]
    assert used["none"] == [False, False] + [True] * 8
    assert used["released"] == [False] * 4 + [True] * 6
    with pytest.raises(ValueError, match="label_delay"):
        _config(label_delay="late")


def test_point_only_baseline_never_searches():
    def search(items):
        raise AssertionError("the baseline must not search")

    videos, features = _dataset()
    result = train(
        videos=videos, get_features=features, num_classes=C, config=_config(completeness=False), search_fn=search
    )
    assert all(row["loss_score"] == 0 and row["loss_feat"] == 0 for row in result.log)
    assert result.pseudo_labels == {}


def test_score_only_and_feature_only_switches():
    score_only = _run(feature_contrast=False)
    assert all(row["loss_feat"] == 0 for row in score_only.log)
    assert any(row["loss_score"] > 0 for row in score_only.log)
    feature_only = _run(score_contrast=False)
    assert all(row["loss_score"] == 0 for row in feature_only.log)


def test_features_are_streamed_and_progress_reported():
    videos, features = _dataset()
    reads, progress = [], []

    def get_features(vid):
        reads.append(vid)
        return features[vid]

    train(
        videos=videos,
        get_features=get_features,
        num_classes=C,
        config=_config(steps=3),
        on_progress=lambda step, total, row: progress.append((step, total, row["step"])),
        search_fn=_seed_search,
    )
    assert len(reads) == 3 * 3 + 6  # batch of 3 per step + every video for the search
    assert progress == [(1, 3, 1), (2, 3, 2), (3, 3, 3)]


def test_select_best_on_test_returns_the_best_evaluated_weights():
    metrics = {2: 0.5, 4: 0.9, 6: 0.1}
    videos, features = _dataset()
    best = train(
        videos=videos,
        get_features=features,
        num_classes=C,
        config=_config(eval_every=2, select_best_on_test=True),
        search_fn=_seed_search,
        evaluate_fn=lambda model, step: metrics[step],
    )
    assert best.selection.startswith("best on test (step 4")
    assert [row.get("eval_metric") for row in best.log] == [None, 0.5, None, 0.9, None, 0.1]
    _assert_same_state(best.state_dict, _run(steps=4).state_dict)
    with pytest.raises(ValueError, match="eval_every"):
        _config(select_best_on_test=True)


def test_bad_search_result_names_the_video():
    videos, features = _dataset()
    with pytest.raises(ValueError, match="video_0"):
        train(
            videos=videos,
            get_features=features,
            num_classes=C,
            config=_config(steps=2),
            search_fn=lambda items: [np.zeros((1, C), np.uint8) for _ in items],
        )


def test_bad_features_name_the_video():
    videos, features = _dataset()
    features["video_2"] = np.zeros((5, D + 1), np.float32)
    with pytest.raises(ValueError, match="video_2"):
        train(videos=videos, get_features=features, num_classes=C, config=_config(steps=3, batch=6, completeness=False))


def test_batch_indices_cover_each_epoch_once():
    steps = [batch_indices(s, num_videos=10, batch=3, seed=0) for s in range(1, 7)]
    first_epoch, second_epoch = np.concatenate(steps[:3]), np.concatenate(steps[3:])
    assert len(set(first_epoch.tolist())) == 9 and len(set(second_epoch.tolist())) == 9
    assert first_epoch.tolist() != second_epoch.tolist()
    assert batch_indices(1, num_videos=2, batch=3, seed=0).size == 2


def test_point_matrix_by_hand():
    # 30 fps: snippet = floor(f * 25 / 480); f=0 -> 0, 19 -> 0 (0.99), 20 -> 1, 96 -> 5
    got = point_matrix(
        frames=np.array([0, 19, 20, 96, 10_000]),
        classes=np.array([0, 1, 1, 2, 0]),
        fps=30.0,
        num_snippets=6,
        num_classes=3,
    )
    expected = np.zeros((6, 3), bool)
    expected[[0, 0, 1, 5, 5], [0, 1, 1, 2, 0]] = True  # 10000 clipped to T-1 = 5
    np.testing.assert_array_equal(got, expected)
    with pytest.raises(ValueError, match="clip_7"):
        point_matrix(
            frames=np.array([1]), classes=np.array([3]), fps=30.0, num_snippets=4, num_classes=3, video_id="clip_7"
        )
    with pytest.raises(ValueError, match="fps"):
        point_matrix(frames=np.array([1]), classes=np.array([0]), fps=0.0, num_snippets=4, num_classes=3)


def test_collate_pads_with_zeros():
    samples = [
        VideoSample("a", np.ones((2, 2), np.float32), np.eye(2, dtype=bool), np.array([1, 1], np.float32)),
        VideoSample("b", np.full((3, 2), 2.0, np.float32), np.zeros((3, 2), bool), np.array([0, 1], np.float32)),
    ]
    batch = collate(samples)
    assert batch.video_ids == ["a", "b"]
    assert batch.lengths.tolist() == [2, 3]
    assert batch.mask.tolist() == [[True, True, False], [True, True, True]]
    assert batch.features[0].tolist() == [[1, 1], [1, 1], [0, 0]]
    assert batch.points[0].tolist() == [[True, False], [False, True], [False, False]]


@pytest.mark.skipif(not SHARED.exists(), reason="needs /work/shared (THUMOS'14 point labels)")
def test_snippet_index_matches_the_released_thumos_points():
    root = SHARED / "datasets" / "thumos14"
    fps = json.loads((root / "fps_dict.json").read_text())
    with open(root / "point_labels_gaussian.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        released = int(int(row["point"]) * (25 / (fps[row["video_id"]] * 16)))
        ours = snippet_index(np.array([int(row["point"])]), fps=fps[row["video_id"]])[0]
        assert ours == released, row


def test_default_search_is_lacp_search():
    pytest.importorskip("lacp.search")
    videos, features = _dataset()
    result = train(videos=videos, get_features=features, num_classes=C, config=_config(steps=3, search_method="exact"))
    assert result.log[2]["loss_score"] > 0
    for video in videos:
        labels = result.pseudo_labels[video.video_id]
        assert labels.dtype == np.uint8
        # classes without points stay all zero; every point snippet is labelled action
        points = point_matrix(
            frames=video.point_frames,
            classes=video.point_classes,
            fps=video.fps,
            num_snippets=len(labels),
            num_classes=C,
        )
        assert not labels[:, ~points.any(axis=0)].any()
        assert labels[points].all()


@pytest.mark.cuda
def test_training_on_cuda_follows_the_cpu():
    """Without dropout (whose random stream differs between devices) a CUDA run gives the CPU's
    losses and weights, up to TF32 convolutions; the weights come back as CPU tensors."""
    cpu = _run(dropout=0.0)
    cuda = _run(dropout=0.0, device="cuda")
    np.testing.assert_allclose(_losses(cuda), _losses(cpu), rtol=1e-2, atol=1e-4)
    for key, value in cpu.state_dict.items():
        torch.testing.assert_close(cuda.state_dict[key].cpu(), value, rtol=1e-2, atol=1e-3)
