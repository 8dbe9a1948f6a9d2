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


def thumos_annotations() -> dict[str, Any]:
    """THUMOS'14 gt.json + fps_dict.json as project annotations (validation -> train).

    gt.json holds no durations; each video's duration is taken as the end of its last
    segment (a lower bound, enough for sampling points inside instances).
    """
    database = json.loads((THUMOS / "gt.json").read_text())["database"]
    ends = {vid: max((float(a["segment"][1]) for a in e["annotations"]), default=0.0) for vid, e in database.items()}
    return read_gt_json(THUMOS / "gt.json", fps=read_fps_dict(THUMOS / "fps_dict.json"),
                        subsets={"validation": "train"}, durations=ends)
