"""lacp.inference on fixed-length models (model.json `num_segments`): videos resampled to N
snippets by the training's uniform rule, detections mapped back to the video's seconds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from detector.config import InferenceConfig
from features.store import FeatureStore, FeatureStoreWriter
from features.timegrid import RELEASED_GRID
from lacp.batching import segment_positions
from lacp.inference import predict, resample_for_inference, resampled_seconds, video_outputs
from lacp.model import LACPNet
from lacp.model_io import load_model, read_model_meta, save_model
from lacp.proposals import DetectionConfig, generate_proposals, predicted_classes, video_scores
from tests.test_lacp_splits import write_tiny_inputs

ATTRS = {"crop": 112, "backbone": "i3d", "weights_sha256": "ab" * 32, "flow_method": "dis", "flow_init": "x"}
N = 50


class ScoresInFeatures(torch.nn.Module):
    """A stand-in network: channel 0 of the features is the action's CAS, channel 1 the background."""

    num_classes = 1

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        scores = x[..., :2]  # (1, T, C+1)
        return {"p": scores, "q": scores}


def _write_store(path: Path, videos: dict[str, np.ndarray]) -> Path:
    writer = FeatureStoreWriter(path, attrs={**ATTRS, **RELEASED_GRID.as_attrs()})
    for vid, feats in videos.items():  # (T, 2048): rgb | flow
        writer.write(vid, rgb=feats[:, :1024], flow=feats[:, 1024:], frames=16 * len(feats), source_fps=25.0)
    return writer.finalize()


def _cas_video(length: int, run: tuple[int, int]) -> np.ndarray:
    """Features whose CAS is 1 on snippets run[0] .. run[1] - 1 (background 0 there), 0 elsewhere (background 1)."""
    feats = np.zeros((length, 2048), dtype=np.float32)
    feats[:, 1] = 1.0
    feats[run[0] : run[1], 0], feats[run[0] : run[1], 1] = 1.0, 0.0
    return feats


# the run covers the same 10 of the 50 bins (20..29) in each video: its first snippet floor(20 T / 50)
# and its end floor(30 T / 50) (T = 30: fewer snippets than bins, some repeated)
VIDEOS = {"t100": (100, (40, 60)), "t75": (75, (30, 45)), "t30": (30, (12, 18))}


def test_segments_are_scaled_by_t_over_n(tmp_path: Path) -> None:
    """Video of T snippets at N = 50: the network sees the 50-position CAS (run at positions 20..29),
    and the detection is the one of that CAS in position units, times T / N snippets of 16 / 25 s."""
    store_path = _write_store(tmp_path / "f.h5", {vid: _cas_video(t, run) for vid, (t, run) in VIDEOS.items()})
    q_n = np.zeros((N, 2))
    q_n[:, 1] = 1.0
    q_n[20:30, 0], q_n[20:30, 1] = 1.0, 0.0
    [in_positions] = generate_proposals(q_n, config=DetectionConfig(), snippet_seconds=1.0)
    assert np.array(in_positions["segment"]) * 24 == pytest.approx([462, 715])  # upsampled positions 19.25 .. 29.79
    ss = RELEASED_GRID.seconds_per_snippet  # 0.64 s
    with FeatureStore(store_path) as store:
        proposals, classes, scores = predict(
            ScoresInFeatures(),
            store,
            list(VIDEOS),
            DetectionConfig(),
            torch.device("cpu"),
            keep_scores=list(VIDEOS),
            num_segments=N,
        )
        full, _, _ = predict(ScoresInFeatures(), store, list(VIDEOS), DetectionConfig(), torch.device("cpu"))
    for vid, (length, run) in VIDEOS.items():
        assert classes[vid] == {0}
        np.testing.assert_array_equal(scores[vid], q_n)  # the CAS at the 50 uniformly sampled snippets
        [got] = proposals[vid]
        scale = length / N
        assert got["score"] == pytest.approx(in_positions["score"])
        assert got["segment"] == pytest.approx([462 / 24 * scale * ss, 715 / 24 * scale * ss], rel=1e-12)
        assert got["segment"][1] == pytest.approx((run[1] - 5 / 24 * scale) * ss)  # the run ends at run[1] snippets
        assert resampled_seconds(ss, length, N) == ss * length / N
        [on_full_grid] = full[vid]  # N = 0: the same run found on every snippet, at the video's seconds
        assert on_full_grid["segment"][1] == pytest.approx((run[1] - 5 / 24) * ss)


def test_resampling_is_the_trainings_uniform_rule() -> None:
    feats = np.arange(75 * 3, dtype=np.float32).reshape(75, 3)
    picked, seconds = resample_for_inference(feats, N, 0.64)
    np.testing.assert_array_equal(picked, feats[segment_positions(75, N)])  # rng None: each bin's first snippet
    np.testing.assert_array_equal(picked[:4, 0] / 3, [0, 1, 3, 4])  # floor(i 75 / 50)
    assert seconds == 0.64 * 75 / N
    same, seconds = resample_for_inference(feats, 0, 0.64)
    assert same is feats and seconds == 0.64


def _previous_predict(model, store, videos, config, device, *, keep_scores=()):
    """lacp.inference.predict as it was before `num_segments` (every snippet, the grid's seconds)."""
    proposals, class_sets, scores = {}, {}, {}
    c = model.num_classes
    snippet_seconds = store.time_grid.seconds_per_snippet
    for vid in videos:
        p, q = video_outputs(model, store[vid], device)
        vscore = video_scores(p[:, :c], r_act=config.r_act)
        proposals[vid] = generate_proposals(q, config=config, snippet_seconds=snippet_seconds, video_score=vscore)
        class_sets[vid] = {int(i) for i in predicted_classes(vscore, threshold=config.class_threshold)}
        if vid in keep_scores:
            scores[vid] = q
    return proposals, class_sets, scores


def test_zero_segments_predicts_exactly_as_before(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    store_path = _write_store(
        tmp_path / "f.h5", {f"v{i}": rng.random((t, 2048), dtype=np.float32) for i, t in enumerate((9, 23, 64))}
    )
    torch.manual_seed(0)
    model = LACPNet(num_classes=3).eval()
    config, device = DetectionConfig(), torch.device("cpu")
    with FeatureStore(store_path) as store:
        videos = store.videos
        before = _previous_predict(model, store, videos, config, device, keep_scores=videos[:2])
        after = predict(model, store, videos, config, device, keep_scores=videos[:2], num_segments=0)
        default = predict(model, store, videos, config, device, keep_scores=videos[:2])
        at_8 = predict(model, store, videos, config, device, num_segments=8)
    assert sum(len(p) for p in before[0].values()) > 0
    for got in (after, default):
        assert json.dumps(got[0]) == json.dumps(before[0])  # same proposals, same floats, same order
        assert got[1] == before[1]
        assert list(got[2]) == list(before[2]) and all(got[2][v].tobytes() == before[2][v].tobytes() for v in before[2])
    assert json.dumps(at_8[0]) != json.dumps(before[0])


def test_model_folder_records_num_segments(tmp_path: Path) -> None:
    state = LACPNet(num_classes=2).state_dict()
    save_model(
        tmp_path / "m", state, classes=["jump", "run"], feature_dim=2048, embed_dim=2048, dropout=0.7, num_segments=50
    )
    assert json.loads((tmp_path / "m" / "model.json").read_text())["num_segments"] == 50
    assert read_model_meta(tmp_path / "m")["num_segments"] == 50
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    del meta["num_segments"]  # a folder written before the key existed: every snippet
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta))
    assert read_model_meta(tmp_path / "m")["num_segments"] == 0
    (tmp_path / "m" / "model.json").write_text(json.dumps({**meta, "num_segments": -2}))
    with pytest.raises(ValueError, match=r"model.json key 'num_segments': expected a whole number of snippets >= 0"):
        read_model_meta(tmp_path / "m")
    with pytest.raises(ValueError, match="num_segments"):
        save_model(
            tmp_path / "m2", state, classes=["a", "b"], feature_dim=2048, embed_dim=2048, dropout=0.7, num_segments=2.5
        )  # type: ignore[arg-type]


def test_train_records_num_segments_and_evaluate_and_eval_every_use_it(tmp_path: Path, monkeypatch) -> None:
    """train.num_segments = 4 on 12-snippet videos: model.json says 4; the periodic test evaluation
    and the evaluate stage (which reads only its own params and the model folder) predict at 4."""
    import lacp.inference
    from stages import evaluate, train

    tiny_inputs = write_tiny_inputs(tmp_path)
    seen: list[int] = []
    real_predict = lacp.inference.predict

    def recording_predict(*args, num_segments: int = 0, **kwargs):
        seen.append(num_segments)
        return real_predict(*args, num_segments=num_segments, **kwargs)

    monkeypatch.setattr(lacp.inference, "predict", recording_predict)
    params = train.TrainParams(
        steps=2, batch=2, search_every=2, checkpoint_every=0, device="cpu", num_segments=4, eval_every=1
    )
    model_dir = tmp_path / "model"
    train.run(
        params,
        detection=DetectionConfig(),
        **tiny_inputs,
        model_dir=model_dir,
        log_dir=tmp_path / "log",
        pseudo_labels_path=tmp_path / "pseudo_labels.h5",
    )
    assert seen == [4, 4]  # eval_every = 1: two steps evaluated, at the training's length
    assert read_model_meta(model_dir)["num_segments"] == 4
    monkeypatch.setattr(lacp.inference, "predict", real_predict)

    evaluate.run(
        evaluate.EvaluateParams(timelines=1, device="cpu"),
        detection=DetectionConfig(),
        inference=InferenceConfig(),
        dataset_dir=tiny_inputs["dataset_dir"],
        features=tiny_inputs["features"],
        model_dir=model_dir,
        out_dir=tmp_path / "eval",
    )
    written = json.loads((tmp_path / "eval" / "predictions.json").read_text())["results"]
    model = load_model(model_dir)
    with FeatureStore(tiny_inputs["features"]) as store:
        at_4, _, _ = real_predict(model, store, ["e1", "e2"], DetectionConfig(), torch.device("cpu"), num_segments=4)
        at_all, _, _ = real_predict(model, store, ["e1", "e2"], DetectionConfig(), torch.device("cpu"))
    classes = ["jump", "run"]
    as_results = {
        vid: [{"label": classes[p["label_index"]], "score": p["score"], "segment": p["segment"]} for p in ps]
        for vid, ps in at_4.items()
    }
    assert written == json.loads(json.dumps(as_results))
    assert written != json.loads(
        json.dumps(
            {
                vid: [{"label": classes[p["label_index"]], "score": p["score"], "segment": p["segment"]} for p in ps]
                for vid, ps in at_all.items()
            }
        )
    )
    assert (tmp_path / "eval" / "timelines" / "e1.png").is_file()
