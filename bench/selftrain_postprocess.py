"""How the self-trained folder's post-processing was chosen: one `detection.detector` key swept.

Reads a finished `python -m bench.selftrain --work W` folder and runs the evaluate_selftrain stage
again on each seed's trained detectors (`search` and `ground_truth`, where trained), alone and
merged with LACP's proposals, once per value of `--key` (`--values`), each from a copy of the
folder that records the setting (`bench.selftrain.evaluate_detector`). Nothing is trained: the
rows differ only in the post-processing. The sweeps on record:
- `voting_tiou` (0 = no voting): `bench/results/selftrain-voting-*.json`;
- `own_class_weight` (1 = the detector's own class probabilities, 0 = LACP classifies):
  `bench/results/selftrain-class-weight-*.json`.

Prints one JSON object: `work`, `params`, `key`, `values`, `runs` (`<row>@<key><value>` -> seed ->
the evaluate stage's metrics: test `mAP@...` and validation `val_mAP@...`) and `summary` (row -> key
-> [mean, std over seeds]). Choose on the `val_` keys; the test keys are what a choice reports.

Run by hand, after `bench.selftrain` with the same params file:
    python -m bench.selftrain_postprocess --work /tmp/selftrain-bench [--params params.yaml]
        [--key voting_tiou] [--values 0,0.3,0.4,0.5,0.6,0.7,0.8,0.9] [--threads N] [--out F.json]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from bench.machine import print_report
from bench.selftrain import evaluate_detector, results
from detector.config import InferenceConfig

SOURCES = {"search": "selftrain_search", "ground_truth": "ground_truth"}  # pseudo source -> bench.selftrain's row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="bench.selftrain's --work folder")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="the params file it ran with")
    parser.add_argument("--key", default="voting_tiou", choices=sorted(InferenceConfig.model_fields))
    parser.add_argument("--values", default="0,0.3,0.4,0.5,0.6,0.7,0.8,0.9", help="the key's values, comma-separated")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    values = [parse_value(args.key, v) for v in args.values.split(",")]
    seeds = sorted(args.work.glob("seed*"), key=lambda p: int(p.name[4:]))
    if not seeds:
        parser.error(f"--work {args.work}: no seed<k> folders (run python -m bench.selftrain --work {args.work} first)")
    runs: dict[str, dict[int, dict[str, Any]]] = {}
    for folder in seeds:
        seed = int(folder.name[4:])
        for source, row in SOURCES.items():
            if not (folder / source / "selftrain" / "model.json").is_file():
                continue
            for merged in (False, True):
                for value in values:
                    inference = {"lacp_proposals": merged, args.key: value}
                    metrics, _ = evaluate_detector(args.params, folder, seed=seed, source=source, inference=inference)
                    runs.setdefault(f"{row}{'+lacp' if merged else ''}@{args.key}{value}", {})[seed] = metrics
            print(f"seed {seed} {source} done", flush=True)
    report = {"work": str(args.work), "params": str(args.params), "key": args.key, "values": values}
    print_report({**report, **results(runs)}, args.out)
    return 0


def parse_value(key: str, text: str) -> Any:
    """One `--values` entry as the `InferenceConfig` field `key` takes it ("true"/"false" for a flag)."""
    value = InferenceConfig.model_validate({key: text.strip()})  # refuses a value the field cannot take
    return getattr(value, key)


if __name__ == "__main__":
    raise SystemExit(main())
