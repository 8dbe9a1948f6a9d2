"""bench.selftrain_classes: a row's mAP as it is and with the absent classes' detections removed."""

from __future__ import annotations

import pytest

from bench.selftrain_classes import score_row


def test_known_classes_remove_only_the_detections_of_absent_classes():
    """Test video v1 holds one Jump [0, 10], v2 one Run [0, 10]. Detections: v1 Jump [0, 10] 0.9,
    v1 Run [0, 10] 0.8 (a class v1 does not hold), v2 Run [0, 10] 0.5. As they are: Jump AP 1;
    Run ranks v1's false positive first, then v2's hit at precision 1/2: AP 0.5; mAP 0.75 at every
    tIoU. Known classes: v1's Run goes, Run's AP is 1, mAP 1. A training video is not scored."""
    annotations = {
        "database": {
            "v1": {"subset": "test", "duration": 20.0, "annotations": [{"label": "Jump", "segment": [0.0, 10.0]}]},
            "v2": {"subset": "test", "duration": 20.0, "annotations": [{"label": "Run", "segment": [0.0, 10.0]}]},
            "t1": {"subset": "train", "duration": 20.0, "annotations": [{"label": "Run", "segment": [0.0, 5.0]}]},
        }
    }
    results = {
        "version": "1",
        "external_data": {},
        "results": {
            "v1": [
                {"label": "Jump", "score": 0.9, "segment": [0.0, 10.0]},
                {"label": "Run", "score": 0.8, "segment": [0.0, 10.0]},
            ],
            "v2": [{"label": "Run", "score": 0.5, "segment": [0.0, 10.0]}],
        },
    }
    scores = score_row(results, annotations)
    for key in ("mAP@0.1", "mAP@0.5", "mAP@0.7", "mAP@0.1-0.7"):
        assert scores[key] == pytest.approx(0.75)
        assert scores[f"known_classes_{key}"] == pytest.approx(1.0)
