"""lacp/splits.py: the validation split of the training videos; the train stage records it and
the evaluate stage reports `val_` metrics on it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from detector.config import InferenceConfig
from features.store import FeatureStoreWriter
from lacp.metrics import load_ground_truth
from lacp.proposals import DetectionConfig
from lacp.splits import SPLIT_FILE, read_split, validation_split, write_split
from sources.annotations import write_annotations
from stages import evaluate, train

IDS = [f"video_{i:03d}" for i in range(40)]


def test_split_is_disjoint_and_covers_the_input() -> None:
    kept, held = validation_split(IDS, share=0.2, seed=0)
    assert not set(kept) & set(held)
    assert sorted(kept + held) == sorted(IDS)
    assert len(held) == 8 and kept == sorted(kept) and held == sorted(held)


def test_split_is_deterministic_whatever_the_input_order() -> None:
    first = validation_split(IDS, share=0.2, seed=3)
    shuffled = list(np.random.default_rng(9).permutation(IDS))
    assert validation_split(IDS, share=0.2, seed=3) == first
    assert validation_split(shuffled, share=0.2, seed=3) == first


def test_another_seed_holds_out_other_videos() -> None:
    assert validation_split(IDS, share=0.2, seed=0)[1] != validation_split(IDS, share=0.2, seed=1)[1]


def test_share_zero_holds_out_nothing() -> None:
    assert validation_split(IDS, share=0.0, seed=0) == (sorted(IDS), [])


@pytest.mark.parametrize(("n", "share", "held"), [(2, 0.1, 1), (5, 0.99, 4), (1, 0.5, 0), (10, 0.25, 2), (0, 0.2, 0)])
def test_at_least_one_held_out_and_one_trained_on(n: int, share: float, held: int) -> None:
    kept, validation = validation_split(IDS[:n], share=share, seed=0)
    assert len(validation) == held and len(kept) == n - held  # round(0.25 * 10) = 2 (half to even)


def test_stratified_split_keeps_every_class_in_training_where_possible() -> None:
    labels = {vid: {"rare"} if vid == IDS[0] else {"common"} for vid in IDS}
    for seed in range(20):
        kept, held = validation_split(IDS, share=0.5, seed=seed, labels=labels)
        assert IDS[0] in kept and len(held) == 20
    # impossible (one video per class): the size wins
    one_each = {vid: {vid} for vid in IDS[:4]}
    assert len(validation_split(IDS[:4], share=0.5, seed=0, labels=one_each)[1]) == 2


@pytest.mark.parametrize("share", [1.0, -0.1, 1.5])
def test_bad_share_is_a_value_error_naming_the_key(share: float) -> None:
    with pytest.raises(ValueError, match="train.validation_share"):
        validation_split(IDS, share=share, seed=0)
    with pytest.raises(ValidationError, match="validation_share"):  # a ValueError too
        train.TrainParams(validation_share=share)


def test_bad_ids_and_labels_are_value_errors() -> None:
    with pytest.raises(ValueError, match="repeated: video_000"):
        validation_split([IDS[0], IDS[0], IDS[1]], share=0.2, seed=0)
    with pytest.raises(ValueError, match="labels lack 1 video"):
        validation_split(IDS[:3], share=0.2, seed=0, labels={IDS[0]: set(), IDS[1]: set()})


def test_split_file_round_trips_and_bad_files_name_file_and_key(tmp_path: Path) -> None:
    path = write_split(tmp_path, train=["b", "a"], validation=["c"], share=0.2, seed=4)
    assert json.loads(path.read_text()) == {"train": ["a", "b"], "validation": ["c"], "share": 0.2, "seed": 4}
    assert read_split(tmp_path).validation == ("c",)
    path.write_text(json.dumps({"train": [], "validation": "c", "share": 0.2, "seed": 4}))
    with pytest.raises(ValueError, match=f"{path}: key 'validation' must be a list"):
        read_split(tmp_path)
    with pytest.raises(FileNotFoundError, match=SPLIT_FILE):
        read_split(tmp_path / "nowhere")


ANNOTATIONS = {
    "database": {
        **{
            vid: {
                "subset": "train",
                "duration": 3.0,
                "fps": 25.0,
                "annotations": [{"segment": [0.5, 1.5], "label": label}],
            }
            for vid, label in [("t1", "jump"), ("t2", "run"), ("t3", "run"), ("t4", "jump"), ("t5", "run")]
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


def test_ground_truth_of_chosen_videos() -> None:
    gt = load_ground_truth(ANNOTATIONS, subset="train", videos=["t2", "t4"])
    assert gt.video_ids == ("t2", "t4") and gt.classes == ("jump", "run") and len(gt.segments) == 2
    with pytest.raises(ValueError, match="1 requested video\\(s\\) are not 'train' videos: e1"):
        load_ground_truth(ANNOTATIONS, subset="train", videos=["t2", "e1"])


def write_tiny_inputs(tmp_path: Path) -> dict[str, Path]:
    """annotations.json, a seeded feature store (12 snippets per video) and points.csv under tmp_path."""
    write_annotations(tmp_path / "dataset" / "annotations.json", ANNOTATIONS)
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
        "excluded_videos": "{}",
    }
    writer = FeatureStoreWriter(tmp_path / "features.h5", attrs=attrs)
    for vid in ANNOTATIONS["database"]:
        feats = rng.random((12, 2048), dtype=np.float32)  # (T, 2048): rgb | flow
        writer.write(vid, rgb=feats[:, :1024], flow=feats[:, 1024:], frames=190, source_fps=25.0)
    writer.finalize()
    rows = [
        f"{e['annotations'][0]['label']},{ANNOTATIONS['classes'].index(e['annotations'][0]['label'])},12,37,{vid},25"
        for vid, e in ANNOTATIONS["database"].items()
        if e["subset"] == "train"
    ]
    (tmp_path / "points").mkdir()
    (tmp_path / "points" / "points.csv").write_text(
        "class,class_index,start_frame,stop_frame,video_id,point\n" + "\n".join(rows) + "\n"
    )
    return {
        "dataset_dir": tmp_path / "dataset",
        "features": tmp_path / "features.h5",
        "points_dir": tmp_path / "points",
    }


@pytest.fixture
def tiny_inputs(tmp_path: Path) -> dict[str, Path]:
    return write_tiny_inputs(tmp_path)


def test_train_holds_out_the_split_and_evaluate_reports_val_keys(tiny_inputs: dict[str, Path], tmp_path: Path) -> None:
    params = train.TrainParams(steps=2, batch=2, search_every=2, checkpoint_every=0, device="cpu", validation_share=0.4)
    model_dir = tmp_path / "model"
    summary = train.run(
        params,
        detection=DetectionConfig(),
        **tiny_inputs,
        model_dir=model_dir,
        log_dir=tmp_path / "log",
        pseudo_labels_path=tmp_path / "pseudo_labels.h5",
    )
    split = json.loads((model_dir / SPLIT_FILE).read_text())
    assert split["share"] == 0.4 and split["seed"] == 0 and len(split["validation"]) == 2
    assert sorted(split["train"] + split["validation"]) == ["t1", "t2", "t3", "t4", "t5"]
    assert {ANNOTATIONS["database"][v]["annotations"][0]["label"] for v in split["train"]} == {"jump", "run"}
    assert summary["videos"] == 3 and summary["validation_videos"] == 2

    def evaluated() -> dict:
        evaluate.run(
            evaluate.EvaluateParams(timelines=0, device="cpu"),
            detection=DetectionConfig(),
            inference=InferenceConfig(),
            dataset_dir=tiny_inputs["dataset_dir"],
            features=tiny_inputs["features"],
            model_dir=model_dir,
            out_dir=tmp_path / "eval",
        )
        return json.loads((tmp_path / "eval" / "metrics.json").read_text())

    metrics = evaluated()
    test_keys = {
        *(f"mAP@0.{i}" for i in range(1, 8)),
        "mAP@0.1-0.5",
        "mAP@0.3-0.7",
        "mAP@0.1-0.7",
        "accuracy",
        "videos",
    }
    assert test_keys | {"selection"} | {f"val_{k}" for k in test_keys} == set(metrics)
    assert metrics["videos"] == 2 and metrics["val_videos"] == 2
    assert 0 <= metrics["val_mAP@0.1-0.7"] <= 1 and 0 <= metrics["val_accuracy"] <= 1
    assert not any(":" in key for key in metrics)
    assert "Validation" in (tmp_path / "eval" / "report.md").read_text()

    write_split(model_dir, train=["t1", "t2", "t3", "t4", "t5"], validation=[], share=0.0, seed=0)
    assert set(evaluated()) == test_keys | {"selection"}  # share 0: no val_ keys
    (model_dir / SPLIT_FILE).unlink()
    assert set(evaluated()) == test_keys | {"selection"}  # a model folder without a split
