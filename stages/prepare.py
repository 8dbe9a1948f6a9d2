"""prepare stage: a dataset source -> `annotations.json` + `videos.json` (+ rendered videos).

Sources: `synthetic` renders the embedded dataset here (seeded); `directory` references a
folder of user videos with an ActivityNet-style gt.json (THUMOS'14 format), without copying.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import model_validator

from core.files import quick_fingerprint, write_json
from sources.annotations import write_annotations
from sources.directory import prepare_directory
from sources.synthetic import SyntheticSettings, SyntheticSpec, render_videos
from stages.common import StageParams


class SyntheticParams(StageParams, SyntheticSettings):
    """The `dataset.synthetic` section: the renderer's settings (`sources.synthetic.SyntheticSettings`:
    every key's type, default and check)."""


class DirectoryParams(StageParams):
    video_dir: str = ""
    gt_json: str = ""
    fps_json: str = ""
    # gt subset -> train | test | skip (skip: its videos are left out, e.g. ActivityNet's "testing")
    subsets: dict[str, Literal["train", "test", "skip"]] = {"train": "train", "test": "test", "validation": "train"}
    extensions: list[str] = ["mp4", "avi", "mkv", "webm", "mov"]
    allow_missing: bool = False


class DatasetParams(StageParams):
    source: Literal["synthetic", "directory"] = "synthetic"
    synthetic: SyntheticParams = SyntheticParams()
    directory: DirectoryParams = DirectoryParams()

    @model_validator(mode="after")
    def _directory_complete(self) -> DatasetParams:
        if self.source == "directory" and not (self.directory.video_dir and self.directory.gt_json):
            raise ValueError("source 'directory' needs directory.video_dir and directory.gt_json")
        return self


def run(params: DatasetParams, *, out_dir: Path, workers: int = 1) -> dict[str, Any]:
    """Build the dataset folder.

    Args:
        params: the `dataset` params section.
        out_dir: prepare's output folder.
        workers: processes rendering synthetic videos at once (same videos for any number).

    Returns:
        Summary: videos per subset, instances, classes.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if params.source == "synthetic":
        spec = SyntheticSpec(**params.synthetic.model_dump())
        annotations, videos = render_videos(out_dir / "videos", spec=spec, workers=workers)
        videos = {vid: str(Path(p).resolve().relative_to(out_dir.resolve())) for vid, p in videos.items()}
    else:
        d = params.directory
        annotations, videos = prepare_directory(
            Path(d.video_dir),
            Path(d.gt_json),
            fps_json=Path(d.fps_json) if d.fps_json else None,
            subsets=dict(d.subsets),
            extensions=list(d.extensions),
            allow_missing=d.allow_missing,
        )
        videos = {vid: str(Path(p).resolve()) for vid, p in videos.items()}
    write_annotations(out_dir / "annotations.json", annotations)
    write_json(out_dir / "videos.json", videos)
    if params.source == "directory":
        # The user's videos live outside the dataset folder; their fingerprints inside it make
        # DVC rerun decode when one changes (decode then redoes only that video).
        write_json(out_dir / "source_fingerprints.json", {vid: quick_fingerprint(p) for vid, p in videos.items()})
    db = annotations["database"]
    return {
        "source": params.source,
        "train_videos": sum(v["subset"] == "train" for v in db.values()),
        "test_videos": sum(v["subset"] == "test" for v in db.values()),
        "instances": sum(len(v["annotations"]) for v in db.values()),
        "classes": len(annotations["classes"]),
    }
