"""Benchmark of `python -m pipeline detect` against video length: speed and peak memory.

Renders one 320x240, 30 fps synthetic test video of each length in `--minutes` (default 1 and
10; `bench.long_video.render`: three action instances per minute, of the default dataset's
classes), then runs the detect command on each, in a fresh child process, with a trained model
folder (default: params.yaml's `paths.model` and `paths.weights`, i.e. what `make run` trained).
The child reports its own peak resident memory (VmHWM, `bench.machine.peak_mib`).

Reported per length M (`..._<M>min`):
- `seconds`: the whole command (model loading included); `s_per_video_minute`: that over M;
- `<phase>_seconds` for decode, flow, features and model (detections.json's `videos`);
- `peak_mib`: the child's peak RSS, and `growth_mib`: that minus its RSS after imports;
- `detections` and `avg_map` (mAP at tIoU 0.1:0.7 against the rendered instances);
and `peak_ratio_<long>_to_<short>`: peak at the longest length over the shortest.
Target: <= `bench.machine.FLAT_RATIO` (1.3: memory flat in video length).

Run by hand (after `make run`):  python -m bench.detect [--minutes 1,10] [--model D] [--weights D]
                                 [--work-dir D] [--keep]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bench.long_video import render
from bench.machine import REPO, add_memory, add_peak_ratio, child_env, cpu_name, measure, run_child, work_folder
from lacp.model_io import read_model_meta

PHASES = ("decode", "flow", "features", "model")


def child(video: Path, *, model: str, weights: str, out: Path) -> dict:
    """The detect command in this (fresh) process; its seconds and peak memory."""
    from pipeline.cli import main as cli_main

    def work() -> None:
        status = cli_main(["detect", str(video), "--model", model, "--weights", weights, "--out", str(out), "--strict"])
        if status != 0:
            raise RuntimeError(f"detect on {video} exited with status {status}")

    return measure(work)


def detect_child(video: Path, *, model: str, weights: str, out: Path) -> dict:
    """`child` in a fresh process (`bench.machine.run_child`)."""
    argv = [
        sys.executable,
        "-m",
        "bench.detect",
        "--child",
        str(video),
        "--model",
        model,
        "--weights",
        weights,
        "--out",
        str(out),
    ]
    return run_child(argv, cwd=REPO, env=child_env(), what=f"on {video}")


def average_map(detections: Path, video_id: str, entry: dict, *, classes: list[str]) -> float:
    """mAP at tIoU 0.1:0.7 of the detections against the rendered instances (`classes`: the
    model's, all known labels; the rendered video's are the evaluated ones)."""
    from lacp.metrics import evaluate_detection, load_ground_truth

    truth = {"database": {video_id: {**entry, "subset": "test"}}, "classes": classes}
    return float(
        evaluate_detection(load_ground_truth(truth, subset="test"), json.loads(detections.read_text())).map.mean()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", default="1,10", help="comma-separated video lengths in minutes")
    parser.add_argument("--model", default="", help="model folder (default: params.yaml's paths.model)")
    parser.add_argument("--weights", default="", help="I3D weights folder (default: params.yaml's paths.weights)")
    parser.add_argument(
        "--work-dir", type=Path, help="where the videos and detections go (default: a temporary folder)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, model=args.model, weights=args.weights, out=args.out)))
        return
    if not (args.model and args.weights):
        from pipeline.params import load_params

        paths = load_params(REPO / "params.yaml").paths
        args.model = args.model or str(REPO / paths.model)
        args.weights = args.weights or str(REPO / paths.weights)
    if not (Path(args.model) / "model.json").is_file():
        raise SystemExit(f"{args.model}: no trained model folder (run `make run` first, or pass --model)")

    lengths = sorted({int(m) for m in args.minutes.split(",")})
    report: dict = {"cpu": cpu_name(), "minutes": lengths, "size": "320x240", "model": args.model}
    with work_folder(args.work_dir, keep=args.keep, prefix="lacp-bench-detect-") as root:
        # 1. one rendered test video per length
        started = time.perf_counter()
        videos = {m: root / f"test_{m}min.mp4" for m in lengths}
        entries = {m: render(m, "test", videos[m]) for m in lengths}
        report["render_seconds"] = round(time.perf_counter() - started, 1)

        # 2. the detect command on each, in a fresh process
        classes = read_model_meta(Path(args.model))["classes"]
        for m in lengths:
            out = root / f"detections_{m}min.json"
            got = detect_child(videos[m], model=args.model, weights=args.weights, out=out)
            document = json.loads(out.read_text())
            phases = document["videos"][videos[m].stem]["seconds"]
            report[f"seconds_{m}min"] = round(got["seconds"], 1)
            report[f"s_per_video_minute_{m}min"] = round(got["seconds"] / m, 2)
            for phase in PHASES:
                report[f"{phase}_seconds_{m}min"] = round(phases[phase], 1)
            add_memory(report, got, key=f"{{}}_{m}min")
            report[f"detections_{m}min"] = len(document["results"][videos[m].stem])
            report[f"avg_map_{m}min"] = round(average_map(out, videos[m].stem, entries[m], classes=classes), 4)

        # 3. flatness: peak at the longest over the shortest length
        report["flat"] = add_peak_ratio(report, peak="peak_mib_{}min", ratio="peak_ratio", sizes=lengths)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
