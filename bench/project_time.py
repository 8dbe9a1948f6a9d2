"""Projected time of the real-data presets on a measured machine: the table in docs/BENCHMARKS.md.

Reads the benchmarks' saved JSON (bench/results/: decode.json, flow.json, i3d.json, train.json,
and gpu_check.json once a GPU run is saved there) and each dataset's hours of video, and prints
a markdown table of the hours each stage would take at the presets' settings (decode to 25 fps
at short side 256, TV-L1 flow at the decoded size, I3D RGB and flow on every 16-frame snippet
at a 224 crop, 2000 training steps). The cost model, one line per stage:

    frames   = video hours x 3600 x 25 (decoded frames; one flow pair each)
    decode   = frames / frames_per_s                               bench.decode (640x272 -> 602x256)
    flow     = frames x s per 224x224 pair x decoded pixels / 224^2   bench.flow (cost linear in pixels)
               tvl1 (OpenCV): one thread per video, `cores` videos at once: cpu_s_per_pair / cores
               tvl1_torch: pairs/s on every thread, one video at a time (batch 8)
    extract  = 2 streams x frames / 16 / snippets_per_s            bench.i3d's extraction path at 224
               (the flow network differs from the RGB one only in its first convolution's 2 input channels)
    train    = 2000 x (step_seconds + search_phase_seconds / 10)   bench.train (THUMOS'14-sized problem)
    evaluate: seconds (bench/results/long_video.json), left out.

The GPU column (tvl1_torch and bf16 extraction on CUDA, CUDA training) needs gpu_check.json from
`bash bench/gpu_check.sh` on a GPU machine; without it the column says "not measured".

Run by hand:  python -m bench.project_time [--results bench/results] [--write-docs]   (prints the table)
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
PAGE = Path(__file__).resolve().parents[1] / "docs" / "BENCHMARKS.md"
MARKERS = ("<!-- project_time: begin -->\n", "\n<!-- project_time: end -->")  # around the table in PAGE
FPS = 25  # decode.fps of every preset
SNIPPET = 16  # frames per I3D snippet (stride 16 at frame_step 1)
SHORT_SIDE = 256  # decode.short_side of every preset
CROP = 224  # the benches' frame size (bench.flow, bench.i3d)
TRAIN_STEPS = 2000  # train.steps of every preset
SEARCH_EVERY = 10  # train.search_every (the default)


@dataclass(frozen=True)
class DatasetSize:
    """Hours of video of one benchmark (training and test subsets; what the preset decodes)."""

    name: str
    preset: str
    videos: int
    hours: float
    aspect: float  # width / height of the source videos: the decoded frame is SHORT_SIDE high
    source: str


DATASETS = (
    # 200 + 210 videos: 11.61 + 12.67 h, the sum of each video's "duration" in the ActivityNet-style
    # thumos14.json that ActionFormer's lineage distributes (gt.json here has no durations); 320x180
    DatasetSize("THUMOS'14", "thumos14", 410, 24.285, 16 / 9, "per-video durations of thumos14.json"),
    # sums of gt.json's "duration" (../shared/datasets; tests/test_bench_project_time.py checks them)
    DatasetSize("GTEA", "gtea", 28, 0.5777, 16 / 9, "gt.json durations (1280x720, 15 fps)"),
    DatasetSize("BEOID", "beoid", 58, 0.9761, 4 / 3, "gt.json durations (640x480, 30 fps)"),
    # no per-video durations here: per 100 hours (ActivityNet 1.3's training + validation videos
    # run to several hundred hours; the videos' aspect ratios vary, 16:9 assumed)
    DatasetSize("ActivityNet 1.3, per 100 h", "activitynet13", 0, 100.0, 16 / 9, "per 100 hours of video"),
)


def load_results(folder: Path) -> dict[str, dict]:
    """The saved bench JSON by name; decode, flow, i3d and train are required."""
    found = {path.stem: json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))}
    missing = [name for name in ("decode", "flow", "i3d", "train") if name not in found]
    if missing:
        raise SystemExit(
            f"project_time: {folder} lacks {', '.join(n + '.json' for n in missing)}; "
            f"save each with `python -m bench.<name> > {folder}/<name>.json`"
        )
    return found


def stage_hours(size: DatasetSize, results: dict[str, dict], *, cores: int) -> dict[str, float]:
    """Hours of each stage for one dataset on the benched CPU (see the module docstring)."""
    frames = size.hours * 3600 * FPS
    pixels_ratio = round(SHORT_SIDE * size.aspect) * SHORT_SIDE / CROP**2
    flow, train = results["flow"], results["train"]
    seconds = {
        "decode": frames / results["decode"]["frames_per_s"],
        "flow_tvl1": frames * pixels_ratio * flow["tvl1_opencv_1thread_cpu_s_per_pair"] / cores,
        "flow_tvl1_torch": frames * pixels_ratio / flow["tvl1_torch_pairs_per_s"],
        "extract": 2 * frames / SNIPPET / results["i3d"]["extraction"]["snippets_per_s"],
        "train": TRAIN_STEPS * (train["step_seconds"] + (train.get("search_phase_seconds") or 0.0) / SEARCH_EVERY),
    }
    return {name: value / 3600 for name, value in seconds.items()}


def gpu_hours(size: DatasetSize, gpu: dict) -> float:
    """Hours of flow (tvl1_torch), extraction (bf16) and training on the GPU of gpu_check.json."""
    frames = size.hours * 3600 * FPS
    pixels_ratio = round(SHORT_SIDE * size.aspect) * SHORT_SIDE / CROP**2
    seconds = (
        frames * pixels_ratio / gpu["tvl1_cuda_pairs_per_s_224"]
        + 2 * frames / SNIPPET / gpu["extract_bf16_snippets_per_s_224"]
        + TRAIN_STEPS * gpu["train_cuda_seconds_per_step"]
    )
    return seconds / 3600


def _hours(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.0f}"


def table(results: dict[str, dict]) -> str:
    """The markdown table (and the line naming the machine) for docs/BENCHMARKS.md."""
    cpu, cores = results["i3d"]["cpu"], int(results["flow"]["cores"])
    gpu = results.get("gpu_check")
    lines = [
        f"Hours per stage on {cpu}, torch {results['i3d']['threads']} threads, "
        f"extraction {results['i3d']['extraction_dtype']}; GPU: {gpu['gpu'] if gpu else 'not measured'}.",
        "",
        "| dataset (preset) | video h | decode | flow tvl1 | flow tvl1_torch | extract | train "
        "| total (tvl1_torch) | GPU: flow + extract + train |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in DATASETS:
        hours = stage_hours(size, results, cores=cores)
        total = hours["decode"] + hours["flow_tvl1_torch"] + hours["extract"] + hours["train"]
        gpu_cell = _hours(gpu_hours(size, gpu)) if gpu else "not measured"
        videos = f", {size.videos} videos" if size.videos else ""
        lines.append(
            f"| {size.name} (`{size.preset}`{videos}) | {size.hours:.2f} | {_hours(hours['decode'])} | "
            f"{_hours(hours['flow_tvl1'])} | {_hours(hours['flow_tvl1_torch'])} | {_hours(hours['extract'])} | "
            f"{_hours(hours['train'])} | {_hours(total)} | {gpu_cell} |"
        )
    flow, i3d, dec = results["flow"], results["i3d"], results["decode"]
    lines += [
        "",
        f"From bench/results/: decode {dec['frames_per_s']} frames/s; OpenCV TV-L1 "
        f"{flow['tvl1_opencv_1thread_cpu_s_per_pair']} CPU-s per 224x224 pair (one thread per video, {cores} at once); "
        f"tvl1_torch {flow['tvl1_torch_pairs_per_s']} pairs/s on {flow['tvl1_torch_threads']} threads; "
        f"I3D {i3d['extraction']['snippets_per_s']} snippets/s per stream; "
        f"training {results['train']['step_seconds']:.2f} s/step plus a search every {SEARCH_EVERY} steps, measured on "
        "a THUMOS'14-sized problem and used for every row (shorter videos, and ActivityNet's 50 resampled snippets, "
        "cost less per step). `python -m bench.project_time` computes this table.",
    ]
    return "\n".join(lines)


def page_block(page: Path = PAGE) -> str:
    """The text between MARKERS in the page ("" when they hold nothing)."""
    begin, end = MARKERS
    text = page.read_text()
    if begin not in text or end not in text.split(begin, 1)[1]:
        raise SystemExit(f"project_time: {page} lacks the markers {begin.strip()} ... {end.strip()}")
    return text.split(begin, 1)[1].split(end, 1)[0]


def write_page(block: str, page: Path = PAGE) -> None:
    """Replace the text between MARKERS with `block`."""
    begin, end = MARKERS
    text = page.read_text()
    old = page_block(page)
    page.write_text(text.replace(begin + old + end, begin + block + end, 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of the saved bench JSON")
    parser.add_argument("--write-docs", action="store_true", help="also put the table into docs/BENCHMARKS.md")
    args = parser.parse_args()
    text = table(load_results(args.results))
    print(text)
    if args.write_docs:
        write_page(text)


if __name__ == "__main__":
    main()
