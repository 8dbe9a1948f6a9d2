"""The real annotation files of ../shared (beside the checkout), for tests that skip without them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sources.annotations import read_fps_dict, read_gt_json

SHARED = Path(__file__).resolve().parents[2] / "shared"
THUMOS = SHARED / "datasets" / "thumos14"
needs_thumos = pytest.mark.skipif(not (THUMOS / "gt.json").is_file(), reason="shared THUMOS'14 files absent")
GTEA = SHARED / "datasets" / "gtea"
BEOID = SHARED / "datasets" / "beoid"
needs_gtea = pytest.mark.skipif(not (GTEA / "gt.json").is_file(), reason="shared GTEA files absent")
needs_beoid = pytest.mark.skipif(not (BEOID / "gt.json").is_file(), reason="shared BEOID files absent")
SFNET_SUBSETS = {"training": "train", "validation": "test"}
"""GTEA/BEOID gt.json subsets as published with SF-Net: validation is the test split."""


def sfnet_annotations(folder: Path) -> dict[str, Any]:
    """GTEA or BEOID gt.json as project annotations (per-video fps and duration from the file)."""
    return read_gt_json(folder / "gt.json", subsets=SFNET_SUBSETS)


def click_files(folder: Path) -> list[Path]:
    """The four annotators' SF-Net click files of a shared dataset folder, in annotator order."""
    return sorted(folder.glob("manual_*[1-4].txt"))


def thumos_annotations() -> dict[str, Any]:
    """THUMOS'14 gt.json + fps_dict.json as project annotations (validation -> train).

    gt.json holds no durations; each video's duration is taken as the end of its last
    segment (a lower bound, enough for sampling points inside instances).
    """
    database = json.loads((THUMOS / "gt.json").read_text())["database"]
    ends = {vid: max((float(a["segment"][1]) for a in e["annotations"]), default=0.0) for vid, e in database.items()}
    return read_gt_json(
        THUMOS / "gt.json", fps=read_fps_dict(THUMOS / "fps_dict.json"), subsets={"validation": "train"}, durations=ends
    )
