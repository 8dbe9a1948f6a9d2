"""Benchmark of memory and speed against video length: decode, flow, extract and evaluate.

Renders 320x240, 30 fps synthetic videos (`sources.synthetic`, three action instances per
minute) of each length in `--minutes` (default 1 and 20), plus one 1-minute training video.
Each length gets its own work folder, a `directory` dataset of two videos (the training video
and the long test video) over the project's params.yaml, and runs every stage of the DAG there,
each in a fresh child process through the pipeline's own stage table (`pipeline.stage_table.STAGES`, run serially by
`stages.common.run_plan`, without Prefect). A child reports its own peak resident
memory (VmHWM, `bench.machine.peak_mib`) and the stage's seconds. The stages read the project's
defaults (params.yaml's values: decode short side 128, DIS flow, crop 112, frame_step 2, fp32 or
bf16 per CPU) except what `-S section.key=value` changes, e.g. `-S flow.method=tvl1_torch`.

Reported per stage and length (`<stage>_..._<M>min`):
- `peak_mib`: the child's peak RSS; the per-video stages' peak is the larger of the two videos'.
- `growth_mib`: peak minus the RSS after imports (what the stage's data took).
- `seconds` and `s_per_video_minute` (seconds over the minutes of video the stage processed:
  M + 1 for decode, flow and extract, which also process the training video; M for evaluate).
and `<stage>_ratio_<long>_to_<short>`: peak at the longest length over peak at the shortest.
Target: <= `bench.machine.FLAT_RATIO` (1.3) for decode, flow, extract and evaluate (memory flat in video length).
prepare, weights, points and train are run too (they feed evaluate) and reported the same way.

Run by hand:  python -m bench.long_video [--minutes 1,20] [--threads 2] [-S key=value ...]
              [--work-dir D] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import yaml

from bench.machine import REPO, add_memory, add_peak_ratio, child_env, cpu_name, measure, run_child, work_folder
from stages import STAGE_NAMES as STAGES

MEASURED = ("decode", "flow", "extract", "evaluate")  # the stages whose memory must be flat (`FLAT_RATIO`)
TRAIN_VIDEO = "train_1min"
INSTANCES_PER_MINUTE = 3
SIZE = (320, 240)
FPS = 30.0


def render(minutes: int, subset: str, path: Path) -> dict:
    """Render one synthetic video of `minutes` minutes; returns its gt.json entry."""
    from sources.synthetic.plan import dataset_annotations, plan_dataset
    from sources.synthetic.render import render_video
    from sources.synthetic.spec import SyntheticSpec

    count = INSTANCES_PER_MINUTE * minutes
    spec = SyntheticSpec(
        num_train=1,
        num_test=1,
        width=SIZE[0],
        height=SIZE[1],
        fps=FPS,
        duration_s=(60.0 * minutes, 60.0 * minutes),
        instances_per_video=(count, count),
    )
    video = next(v for v in plan_dataset(spec) if v.subset == subset)
    render_video(video, path, spec=spec)
    entry = dataset_annotations([video], spec)["database"][video.video_id]
    return {
        "subset": subset,
        "duration": entry["duration"],
        "annotations": [{"segment": a["segment"], "label": a["label"]} for a in entry["annotations"]],
    }


def overrides(sets: list[str]) -> dict:
    """`section.key=value` strings (values parsed as YAML) as a nested dict."""
    nested: dict = {}
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"-S {item!r}: expected section.key=value")
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return nested


def write_work_dir(work: Path, *, train_video: Path, test_video: Path, test_id: str, gt: dict, sets: dict) -> None:
    """A work folder: videos/ (links), gt.json and overrides.json (params.yaml's changes: the
    directory source, a short training run, then `-S` values)."""
    videos = work / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    for vid, src in ((TRAIN_VIDEO, train_video), (test_id, test_video)):
        link = videos / f"{vid}.mp4"
        if not link.exists():
            link.symlink_to(src)
    (work / "gt.json").write_text(json.dumps({"database": gt}))
    params = {
        "dataset": {
            "source": "directory",
            "directory": {
                "video_dir": str(videos),
                "gt_json": str(work / "gt.json"),
                "subsets": {"train": "train", "test": "test"},
            },
        },
        "train": {"steps": 20, "validation_share": 0.0, "checkpoint_every": 0},
    }
    for section, values in sets.items():
        params.setdefault(section, {})
        params[section] = {**params[section], **values} if isinstance(values, dict) else values
    (work / "overrides.json").write_text(json.dumps(params, indent=1))


def child(stage: str) -> dict:
    """Run one stage in this (fresh) process, in the current folder; returns its report."""
    from pipeline.params import load_params
    from pipeline.stage_table import STAGES as STAGE_TABLE
    from stages.common import VideoPlan, run_plan

    params = load_params(REPO / "params.yaml", overrides=json.loads(Path("overrides.json").read_text()))

    def work() -> None:
        out = STAGE_TABLE[stage](params, lambda *_: None)
        summary = run_plan(out) if isinstance(out, VideoPlan) else out
        if isinstance(out, VideoPlan) and summary.get("failed"):
            raise RuntimeError(f"{stage}: {summary['failed']} videos failed: {summary}")

    return measure(work)


def stage_child(stage: str, work: Path, *, threads: int) -> dict:
    """`child` in a fresh process in `work` (`bench.machine.run_child`)."""
    argv = [sys.executable, "-m", "bench.long_video", "--child", stage]
    return run_child(argv, cwd=work, env=child_env(OMP_NUM_THREADS=str(threads)), what=f"{stage} in {work}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", default="1,20", help="comma-separated video lengths in minutes")
    parser.add_argument(
        "--threads", type=int, default=len(os.sched_getaffinity(0)), help="OMP_NUM_THREADS of the stages"
    )
    parser.add_argument("-S", dest="sets", action="append", default=[], help="param override section.key=value")
    parser.add_argument("--work-dir", type=Path, help="where videos and outputs go (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--child", choices=STAGES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return

    lengths = sorted({int(m) for m in args.minutes.split(",")})
    sets = overrides(args.sets)
    report: dict = {
        "cpu": cpu_name(),
        "minutes": lengths,
        "size": f"{SIZE[0]}x{SIZE[1]}",
        "threads": args.threads,
        "overrides": args.sets,
    }
    with work_folder(args.work_dir, keep=args.keep, prefix="lacp-long-video-") as root:
        # 1. render the training video and one test video per length
        started = time.perf_counter()
        train_video = root / f"{TRAIN_VIDEO}.mp4"
        train_entry = render(1, "train", train_video)
        tests = {m: (root / f"test_{m}min.mp4", render(m, "test", root / f"test_{m}min.mp4")) for m in lengths}
        report["render_seconds"] = round(time.perf_counter() - started, 1)

        # 2. every stage, in a fresh process, for each length
        for m in lengths:
            work, (test_video, test_entry) = root / f"{m}min", tests[m]
            test_id = f"test_{m}min"
            write_work_dir(
                work,
                train_video=train_video,
                test_video=test_video,
                test_id=test_id,
                gt={TRAIN_VIDEO: train_entry, test_id: test_entry},
                sets=sets,
            )
            for stage in STAGES:
                got = stage_child(stage, work, threads=args.threads)
                minutes = m if stage == "evaluate" else m + 1
                key = f"{stage}_{{}}_{m}min"
                add_memory(report, got, key=key)
                report[key.format("seconds")] = round(got["seconds"], 1)
                report[key.format("s_per_video_minute")] = round(got["seconds"] / minutes, 2)
            with open(work / "metrics" / "eval" / "metrics.json") as fh:
                report[f"evaluate_avg_map_{m}min"] = json.load(fh).get("mAP@0.1-0.7")

        # 3. flatness: peak at the longest over the shortest length
        flat = {
            stage: add_peak_ratio(report, peak=f"{stage}_peak_mib_{{}}min", ratio=f"{stage}_ratio", sizes=lengths)
            for stage in STAGES
        }
        report["flat"] = all(flat[stage] for stage in MEASURED)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
