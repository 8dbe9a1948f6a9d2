"""How the self-trained folder's boundary voting was chosen: `detection.detector.voting_tiou` swept.

Reads a finished `python -m bench.selftrain --work W` folder and runs the evaluate_selftrain stage
again on each seed's trained detectors (`search` and `ground_truth`, where trained), alone and
merged with LACP's proposals, once per voting threshold (`--values`; 0 = no voting), each from a
copy of the folder that records the setting (`bench.selftrain.evaluate_detector`). Nothing is
trained: the rows differ only in the last Soft-NMS's boundaries.

Prints one JSON object: `work`, `params`, `values`, `runs` (`<row>@voting<v>` -> seed -> the
evaluate stage's metrics: test `mAP@...` and validation `val_mAP@...`) and `summary` (row -> key
-> [mean, std over seeds]). Choose on the `val_` keys; the test keys are what a choice reports.

Run by hand, after `bench.selftrain` with the same params file:
    python -m bench.selftrain_voting --work /tmp/selftrain-bench [--params params.yaml]
        [--values 0,0.3,0.4,0.5,0.6,0.7,0.8,0.9] [--threads N] [--out bench/results/selftrain-voting.json]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from bench.machine import print_report
from bench.selftrain import evaluate_detector, results

SOURCES = {"search": "selftrain_search", "ground_truth": "ground_truth"}  # pseudo source -> bench.selftrain's row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="bench.selftrain's --work folder")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="the params file it ran with")
    parser.add_argument("--values", default="0,0.3,0.4,0.5,0.6,0.7,0.8,0.9", help="voting_tiou values")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    values = [float(v) for v in args.values.split(",")]
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
                    inference = {"lacp_proposals": merged, "voting_tiou": value}
                    metrics, _ = evaluate_detector(args.params, folder, seed=seed, source=source, inference=inference)
                    runs.setdefault(f"{row}{'+lacp' if merged else ''}@voting{value:g}", {})[seed] = metrics
            print(f"seed {seed} {source} done", flush=True)
    print_report({"work": str(args.work), "params": str(args.params), "values": values, **results(runs)}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
