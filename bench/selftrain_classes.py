"""What video classification costs each row of `bench.selftrain`: localisation against classification.

Reads a finished `python -m bench.selftrain --work W` folder and scores each row's test
detections (its evaluate stage's predictions.json) twice with the project's evaluator:
- `mAP@...`: as they are (what `bench.selftrain` reports);
- `known_classes_mAP@...`: with the detections of classes absent from their video removed, as if
  every video's class labels were known (they are, on training videos: the points name them).
The difference is what the rows lose to telling the video's classes apart; the second number is
how well each row localises the classes that are there.

Prints one JSON object: `work`, `runs` (row -> seed -> both averages) and `summary` (row -> key ->
[mean, std over seeds]).

Run by hand, after `bench.selftrain` with the same params file:
    python -m bench.selftrain_classes --work /tmp/selftrain-bench [--params params.yaml]
        [--out bench/results/selftrain-classes.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from bench.machine import print_report
from bench.selftrain import results
from lacp.metrics import evaluate_detection, load_ground_truth
from pipeline.params import load_params
from stages.artifacts import read_annotations

# row -> its test predictions under a seed's folder, as bench.selftrain writes them
PREDICTIONS = {
    "baseline": "baseline/eval",
    "lacp": "lacp/eval",
    "selftrain_search": "search/eval_selftrain-lacp_proposals-false",
    "selftrain_search+lacp": "search/eval_selftrain-lacp_proposals-true",
    "selftrain_proposals": "proposals/eval_selftrain-lacp_proposals-false",
    "selftrain_proposals+lacp": "proposals/eval_selftrain-lacp_proposals-true",
    "ground_truth": "ground_truth/eval_selftrain-lacp_proposals-false",
    "ground_truth+lacp": "ground_truth/eval_selftrain-lacp_proposals-true",
}


def averages(ap: np.ndarray, tiou: np.ndarray, prefix: str) -> dict[str, float]:
    """mAP at 0.1, 0.5, 0.7 and the average over 0.1:0.7 of a (C, K) AP table."""
    mean = ap.mean(axis=0)  # (K,)
    out = {f"{prefix}mAP@{t:.1f}": float(mean[np.isclose(tiou, t)][0]) for t in (0.1, 0.5, 0.7)}
    out[f"{prefix}mAP@0.1-0.7"] = float(mean.mean())
    return out


def score_row(results: dict[str, Any], annotations: dict[str, Any]) -> dict[str, float]:
    """Both scores of one predictions document on the test subset."""
    gt = load_ground_truth(annotations, subset="test")
    present = {vid: {a["label"] for a in entry["annotations"]} for vid, entry in annotations["database"].items()}
    known = {
        **results,
        "results": {
            vid: [d for d in found if d["label"] in present.get(vid, ())] for vid, found in results["results"].items()
        },
    }
    as_is, filtered = evaluate_detection(gt, results), evaluate_detection(gt, known)
    return {**averages(as_is.ap, as_is.tiou, ""), **averages(filtered.ap, filtered.tiou, "known_classes_")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="bench.selftrain's --work folder")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="the params file it ran with")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    annotations = read_annotations(load_params(args.params).paths.dataset)
    runs: dict[str, dict[int, dict[str, float]]] = {}
    seeds = sorted(args.work.glob("seed*"), key=lambda p: int(p.name[4:]))
    if not seeds:
        parser.error(f"--work {args.work}: no seed<k> folders (run python -m bench.selftrain --work {args.work} first)")
    for folder in seeds:
        for row, where in PREDICTIONS.items():
            path = folder / where / "predictions.json"
            if path.is_file():
                runs.setdefault(row, {})[int(folder.name[4:])] = score_row(json.loads(path.read_text()), annotations)
    print_report({"work": str(args.work), "params": str(args.params), **results(runs)}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
