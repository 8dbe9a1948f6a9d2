"""prepare stage: a dataset source -> `annotations.json` + `videos.json` (+ rendered videos).

Sources: `synthetic` renders the embedded dataset here (seeded); `directory` references a
folder of user videos with an ActivityNet-style gt.json (THUMOS'14 format), without copying.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from sources.annotations import write_annotations
from sources.directory import prepare_directory
from sources.synthetic import CLASS_LIBRARY, SyntheticSpec, render_dataset
from core.files import quick_fingerprint, write_json
from stages.common import StageParams


class SyntheticParams(StageParams):
    # Defaults are the renderer's own (SyntheticSpec), so the two cannot drift apart.
    seed: int = SyntheticSpec.seed
    num_train: int = Field(SyntheticSpec.num_train, ge=1)
    num_test: int = Field(SyntheticSpec.num_test, ge=1)
    num_classes: int = Field(SyntheticSpec.num_classes, ge=1, le=len(CLASS_LIBRARY))
    class_offset: int = Field(SyntheticSpec.class_offset, ge=0, le=len(CLASS_LIBRARY) - 1)
    width: int = Field(SyntheticSpec.width, ge=32)
    height: int = Field(SyntheticSpec.height, ge=32)
    fps: float = Field(SyntheticSpec.fps, gt=0)
    duration_s: tuple[float, float] = SyntheticSpec.duration_s
    instance_duration_s: tuple[float, float] = SyntheticSpec.instance_duration_s
    duration_law: Literal["thumos14", "loguniform"] = SyntheticSpec.duration_law
    instances_per_video: tuple[int, int] = SyntheticSpec.instances_per_video
    two_class_share: float = Field(SyntheticSpec.two_class_share, ge=0, le=1)
    crf: int = Field(SyntheticSpec.crf, ge=0, le=51)

    @model_validator(mode="after")
    def _ranges_ordered(self) -> "SyntheticParams":
        if self.width % 2 or self.height % 2:
            raise ValueError(f"width and height must be even (H.264 4:2:0), got {self.width}x{self.height}")
        for name in ("duration_s", "instance_duration_s", "instances_per_video"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name} must be [low, high] with 0 < low <= high, got {[lo, hi]}")
        if self.class_offset + self.num_classes > len(CLASS_LIBRARY):
            raise ValueError(
                f"class_offset {self.class_offset} + num_classes {self.num_classes} exceeds the "
                f"{len(CLASS_LIBRARY)} classes of sources.synthetic.CLASS_LIBRARY"
            )
        return self


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
    def _directory_complete(self) -> "DatasetParams":
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
        s = params.synthetic
        annotations, videos = render_dataset(
            out_dir / "videos",
            seed=s.seed,
            num_train=s.num_train,
            num_test=s.num_test,
            num_classes=s.num_classes,
            width=s.width,
            height=s.height,
            fps=s.fps,
            duration_range_s=s.duration_s,
            instance_duration_s=s.instance_duration_s,
            instances_per_video=s.instances_per_video,
            two_class_share=s.two_class_share,
            crf=s.crf,
            duration_law=s.duration_law,
            class_offset=s.class_offset,
            workers=workers,
        )
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
