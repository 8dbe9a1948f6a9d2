"""The feature time grid has one source, the store's attributes: change `decode.fps` or
`extract.stride` and every point and every detection moves to the right seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from features.store import FeatureStore, FeatureStoreWriter
from features.timegrid import RELEASED_GRID, TimeGrid
from lacp.batching import load_sample
from lacp.inference import predict
from lacp.proposals import DetectionConfig
from stages.train import training_videos

ATTRS = {"crop": 112, "backbone": "i3d", "weights_sha256": "ab" * 32, "flow_method": "dis", "flow_init": "x"}
T, ACTION = 40, (10, 20)  # snippets; the action covers snippets 10..19


class ScoresInFeatures(torch.nn.Module):
    """A stand-in network: channel 0 of the features is the action's CAS, channel 1 the background."""

    num_classes = 1

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        scores = x[..., :2]  # (1, T, C+1)
        return {"p": scores, "q": scores}


def _store(tmp_path: Path, grid: TimeGrid) -> Path:
    rgb = np.zeros((T, 1024), dtype=np.float32)
    rgb[:, 1] = 1.0
    rgb[ACTION[0] : ACTION[1], 0], rgb[ACTION[0] : ACTION[1], 1] = 1.0, 0.0
    out = tmp_path / f"features_{grid.fps:g}_{grid.stride}.h5"
    writer = FeatureStoreWriter(out, attrs={**ATTRS, **grid.as_attrs()})
    writer.write("v", rgb=rgb, flow=np.zeros_like(rgb), frames=T * grid.stride, source_fps=30.0)
    return writer.finalize()


def _detections(tmp_path: Path, grid: TimeGrid) -> list[dict]:
    with FeatureStore(_store(tmp_path, grid)) as store:
        assert store.time_grid == grid
        proposals, classes, _ = predict(ScoresInFeatures(), store, ["v"], DetectionConfig(), torch.device("cpu"))
    assert classes == {"v": {0}}
    return proposals["v"]


@pytest.mark.parametrize("grid", [TimeGrid(fps=25, snippet=16, stride=8), TimeGrid(fps=30, snippet=16, stride=16)])
def test_detections_land_at_the_grid_seconds(tmp_path: Path, grid: TimeGrid) -> None:
    """The same scores on another grid give the same detections, at that grid's seconds."""
    released = _detections(tmp_path, RELEASED_GRID)
    moved = _detections(tmp_path, grid)
    ratio = grid.seconds_per_snippet / RELEASED_GRID.seconds_per_snippet
    assert len(moved) == len(released) > 0
    for a, b in zip(released, moved):
        assert b["score"] == pytest.approx(a["score"])
        assert b["segment"] == pytest.approx([x * ratio for x in a["segment"]], abs=1e-9)
    best = max(moved, key=lambda p: p["score"])
    start, end = best["segment"]
    truth = [ACTION[0] * grid.seconds_per_snippet, ACTION[1] * grid.seconds_per_snippet]
    overlap = min(end, truth[1]) - max(start, truth[0])
    assert overlap / (max(end, truth[1]) - min(start, truth[0])) > 0.8  # tIoU with the action at grid seconds


@pytest.mark.parametrize(
    ("grid", "snippet"),
    [(RELEASED_GRID, 6), (TimeGrid(fps=25, snippet=16, stride=8), 12), (TimeGrid(fps=30, snippet=16, stride=16), 7)],
)
def test_points_map_onto_the_grid(tmp_path: Path, grid: TimeGrid, snippet: int) -> None:
    """A point at 4.0 s (frame 120 of a 30 fps source) lies in snippet floor(4.0 / (stride / fps))."""
    points_csv = tmp_path / "points.csv"
    points_csv.write_text("class,class_index,start_frame,stop_frame,video_id,point,time\nRun,0,90,150,v,120,4.0\n")
    annotations = {
        "database": {
            "v": {
                "subset": "train",
                "duration": 40.0,
                "fps": 30.0,
                "annotations": [{"segment": [3.0, 5.0], "label": "Run"}],
            }
        },
        "classes": ["Run"],
    }
    [item] = training_videos(annotations, points_csv, ["v"], grid=grid)
    sample = load_sample(item, get_features=lambda _: np.zeros((T, 8), np.float32), num_classes=1, feature_dim=8)
    assert np.flatnonzero(sample.points[:, 0]).tolist() == [snippet]


def test_store_without_a_grid_is_named(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match=r"features\.h5: the feature store records no time grid attribute\(s\) \['stride'\]"
    ):
        TimeGrid.from_attrs({"fps": 25, "snippet": 16}, where=str(tmp_path / "features.h5"))
    with pytest.raises(ValueError, match="stride must be a positive integer"):
        TimeGrid(fps=25, snippet=16, stride=0)
