"""Readers of the artifacts one stage hands to the next: one reader per artifact, validated.

Stages import these instead of each other, so no stage depends on another stage's module:

    artifact                      written by   reader here
    <dataset>/annotations.json    prepare      `read_annotations` (its instances: `ground_truth_instances`)
    <dataset>/videos.json         prepare      `read_video_paths`
    <decoded>/manifest.json       decode       `DecodeManifest` (its writer too)
    <flow>/manifest.json          flow         `FlowManifest` (its writer too)
    <weights>/weights.json        weights      `read_weights_info`
    features.h5 (its attrs)       extract      `excluded_videos`, `available_videos`
    <points>/points.csv           points       `lacp.points.formats.read_points_csv`
    <train_log>/plots/metrics     train        `read_training_log`
    pseudo_labels.h5              train        `lacp.search_record.read_search_record`
    <pseudo>/pseudo_gt.json       pseudo       `read_pseudo_instances`
    <model>/model.json's kind     train, selftrain  `model_kind`
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

from core.files import read_json, write_json
from sources import annotations as annotations_file

if TYPE_CHECKING:  # a type only: readers of earlier artifacts need not load h5py
    from features.store import FeatureStore

log = logging.getLogger(__name__)

LOSS_COLUMNS = ["total", "vid", "point", "bkg_point", "score", "feat"]  # the train log's `loss/<term>` names
PSEUDO_GT_FILE = "pseudo_gt.json"  # the pseudo stage's instances, in the pseudo folder
SOURCE_MISSING = "source file not found"  # how decode's reason for a video whose source it cannot see starts

__all__ = [
    "LOSS_COLUMNS",
    "PSEUDO_GT_FILE",
    "SOURCE_MISSING",
    "DecodeManifest",
    "FlowManifest",
    "available_videos",
    "excluded_videos",
    "ground_truth_instances",
    "model_kind",
    "read_annotations",
    "read_pseudo_instances",
    "read_training_log",
    "read_video_paths",
    "read_weights_info",
]


@dataclass(frozen=True)
class LacpRun:
    """Where a trained LACP run's artifacts are, as the stages after train (analyze, pseudo) read them.

    Attributes:
        dataset_dir: prepare's output (annotations.json).
        features: the HDF5 feature store.
        model_dir: train's model folder (the model and its split).
        points_dir: the points stage's output (points.csv).
        pseudo_labels: train's search record (`lacp.search_record`: the first and the last search's labels).
    """

    dataset_dir: Path
    features: Path
    model_dir: Path
    points_dir: Path
    pseudo_labels: Path


def read_annotations(dataset_dir: Path) -> dict[str, Any]:
    """The prepared dataset's `annotations.json`, validated (`sources.annotations`).

    Raises:
        FileNotFoundError: prepare has not run.
        sources.annotations.AnnotationError: naming the file, the video and the key.
    """
    path = Path(dataset_dir) / "annotations.json"
    if not path.is_file():
        raise FileNotFoundError(f"dataset annotations not found: {path} (run the prepare stage first)")
    return annotations_file.read_annotations(path)


def ground_truth_instances(annotations: dict[str, Any], videos: list[str]) -> dict[str, list[tuple[int, float, float]]]:
    """The annotated instances of `videos`, each as (class index, start s, end s).

    Args:
        annotations: `read_annotations`' dict.
        videos: ids of its database.

    Returns:
        {video id: its instances, in the file's order} (an empty list for a video without any).
    """
    classes = annotations["classes"]
    return {
        vid: [
            (classes.index(a["label"]), float(a["segment"][0]), float(a["segment"][1]))
            for a in annotations["database"][vid]["annotations"]
        ]
        for vid in videos
    }


def read_video_paths(dataset_dir: Path) -> dict[str, str]:
    """`videos.json` of the prepared dataset, relative paths resolved against its folder."""
    dataset_dir = Path(dataset_dir)
    videos = read_json(dataset_dir / "videos.json", what="dataset video list")
    for vid in videos:  # ids become output file names: no path separators or '..'
        annotations_file.check_video_id(vid, where=str(dataset_dir / "videos.json"))
    return {vid: str((dataset_dir / p) if not Path(p).is_absolute() else Path(p)) for vid, p in videos.items()}


@dataclass(frozen=True)
class StageManifest:
    """The `manifest.json` of a per-video stage (decode, flow), written by the stage's `finish`
    and read by the stages after it: its keys are this dataclass's fields, written and read here
    only (sorted keys, so its bytes, which DVC hashes, do not depend on the field order).

    Attributes:
        videos: the videos that succeeded: id -> the stage's row for it.
        failed: the videos that failed: id -> reason.
    """

    stage: ClassVar[str]  # the stage that writes it, named in the errors of its reader
    videos: dict[str, dict[str, Any]]
    failed: dict[str, str]

    def write(self, folder: Path) -> None:
        """Write the manifest into the stage's output folder.

        Args:
            folder: the stage's output folder.
        """
        write_json(Path(folder) / annotations_file.STAGE_MANIFEST, dataclasses.asdict(self))

    @classmethod
    def read(cls, folder: Path) -> Self:
        """The manifest in the stage's output folder.

        Args:
            folder: the stage's output folder.

        Returns:
            The manifest.

        Raises:
            FileNotFoundError: the stage has not run.
            ValueError: a manifest without one of the fields' keys (written by an older version:
                rerun the stage), or not JSON.
        """
        path = Path(folder) / annotations_file.STAGE_MANIFEST
        manifest = read_json(path, what=f"{cls.stage} manifest")
        keys = [f.name for f in dataclasses.fields(cls)]
        missing = [k for k in keys if k not in manifest]
        if missing:
            raise ValueError(f"{path}: {cls.stage} manifest without key(s) {missing} (rerun the {cls.stage} stage)")
        return cls(**{k: manifest[k] for k in keys})


@dataclass(frozen=True)
class DecodeManifest(StageManifest):
    """`<decoded>/manifest.json`; a row is `features.video.DecodedVideo`'s fields.

    Attributes:
        fps: the decoded frame rate.
        params: the decode section.
    """

    stage: ClassVar[str] = "decode"
    fps: int
    params: dict[str, Any]


@dataclass(frozen=True)
class FlowManifest(StageManifest):
    """`<flow>/manifest.json`; a row is `{"frames", "bytes"}`.

    Attributes:
        method: the flow method (dis, tvl1, tvl1_torch).
        bound: the quantisation bound.
        params: the flow section but its device (`stages.flow.recorded_params`).
    """

    stage: ClassVar[str] = "flow"
    method: str
    bound: float
    params: dict[str, Any]


def read_weights_info(weights_dir: Path) -> dict[str, Any]:
    """`weights.json`: where the I3D weights came from and their SHA-256."""
    return read_json(Path(weights_dir) / "weights.json", what="weights info")


def excluded_videos(store_attrs: dict[str, Any]) -> dict[str, str]:
    """Videos that failed upstream (decode or flow), recorded in the store's attributes."""
    return json.loads(store_attrs.get("excluded_videos", "{}"))


def available_videos(store: FeatureStore, wanted: list[str], *, features: Path, what: str) -> list[str]:
    """The `wanted` videos present in the store.

    A video missing because decode or flow reported it as bad is left out with a warning; one
    whose source decode could not see (`SOURCE_MISSING`: a moved file, an unmounted drive) is
    an error, as is any other missing video: the error names the features file and the videos.
    """
    excluded = excluded_videos(store.attrs)
    missing = [v for v in wanted if v not in store]
    unexplained = [v for v in missing if v not in excluded]
    if unexplained:
        raise ValueError(
            f"{features}: no features for {len(unexplained)} {what} video(s) named in the annotations: "
            f"{', '.join(unexplained[:20])} (rerun the extract stage)"
        )
    unseen = [v for v in missing if excluded[v].startswith(SOURCE_MISSING)]
    if unseen:
        raise ValueError(
            f"{features}: {len(unseen)} {what} video(s) have no features because decode could not find their "
            f"source: {', '.join(unseen[:20])} (first: {excluded[unseen[0]]}); reconnect the videos and rerun "
            "decode, or rerun prepare without them"
        )
    if missing:
        log.warning("%d %s video(s) failed upstream and are left out: %s", len(missing), what, ", ".join(missing))
    return [v for v in wanted if v in store]


def read_training_log(log_dir: Path) -> dict[str, dict[int, float]]:
    """The training log that `stages.train.TrainingLog` wrote: metric name -> {step: value}.

    Names are `loss/<term>` for each of `LOSS_COLUMNS`, `pseudo/<name>` for each of
    `lacp.pseudo_quality.PSEUDO_COLUMNS` when searches ran, and `test_map` when it was logged.
    """
    found: dict[str, dict[int, float]] = {}
    plots = Path(log_dir) / "plots" / "metrics"
    for tsv in sorted(plots.rglob("*.tsv")):
        name = tsv.relative_to(plots).with_suffix("").as_posix()
        with tsv.open(newline="") as fh:
            found[name] = {int(r["step"]): float(r[tsv.stem]) for r in csv.DictReader(fh, delimiter="\t")}
    if not found:
        raise FileNotFoundError(f"{plots}: no training log (run the train stage)")
    return found


def read_pseudo_instances(pseudo_dir: Path) -> dict[str, Any]:
    """The pseudo stage's `pseudo_gt.json` (the annotations.json format, every video `train`),
    validated as annotations are; its `source` says where the instances came from.

    Raises:
        FileNotFoundError: the pseudo stage has not run.
        sources.annotations.AnnotationError: naming the file, the video and the key.
    """
    path = Path(pseudo_dir) / PSEUDO_GT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"pseudo instances not found: {path} (run the pseudo stage first)")
    return annotations_file.read_annotations(path)


def model_kind(model_dir: Path) -> str:
    """Which package a model folder's model.json belongs to: its `kind` ("lacp", or "detector" for
    the selftrain stage's), "lacp" for folders written before kinds were recorded.

    Raises:
        FileNotFoundError: no model.json (names the folder's stage).
    """
    meta = read_json(Path(model_dir) / "model.json", what="model description")
    kind = meta.get("kind", "lacp") if isinstance(meta, dict) else None
    if kind not in ("lacp", "detector"):
        raise ValueError(f"{Path(model_dir) / 'model.json'}: key 'kind' is {kind!r}, expected 'lacp' or 'detector'")
    return kind
