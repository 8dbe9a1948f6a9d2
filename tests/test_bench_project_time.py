"""bench/project_time.py: the projected hours of the real-data presets (docs/BENCHMARKS.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import project_time
from bench.project_time import DATASETS, DatasetSize, gpu_hours, stage_hours, table

REPO = Path(__file__).resolve().parents[1]
RESULTS = {
    "decode": {"frames_per_s": 250.0},
    "flow": {
        "tvl1_opencv_1thread_cpu_s_per_pair": 0.8,
        "tvl1_torch_pairs_per_s": 8.0,
        "tvl1_torch_threads": 2,
        "cores": 2,
    },
    "i3d": {
        "cpu": "Test CPU (2 cores, AVX2, no bf16)",
        "threads": 2,
        "extraction_dtype": "float32",
        "extraction": {"snippets_per_s": 2.5},
    },
    "train": {"step_seconds": 0.9, "search_phase_seconds": 1.0},
}


def test_stage_hours_follow_the_cost_model() -> None:
    # one hour of 4:3 video: 90 000 frames, decoded at 341x256 = 1.74 x 224^2 pixels
    size = DatasetSize("x", "x", 1, 1.0, 4 / 3, "test")
    hours = stage_hours(size, RESULTS, cores=2)
    ratio = 341 * 256 / 224**2
    assert hours["decode"] == pytest.approx(90_000 / 250 / 3600)
    assert hours["flow_tvl1"] == pytest.approx(90_000 * ratio * 0.8 / 2 / 3600)  # one thread per video, 2 at once
    assert hours["flow_tvl1_torch"] == pytest.approx(90_000 * ratio / 8 / 3600)
    assert hours["extract"] == pytest.approx(2 * 90_000 / 16 / 2.5 / 3600)  # RGB and flow streams
    assert hours["train"] == pytest.approx(2000 * (0.9 + 1.0 / 10) / 3600)  # a search every 10 steps
    gpu = {
        "tvl1_cuda_pairs_per_s_224": 400.0,
        "extract_bf16_snippets_per_s_224": 200.0,
        "train_cuda_seconds_per_step": 0.02,
    }
    assert gpu_hours(size, gpu) == pytest.approx((90_000 * ratio / 400 + 2 * 90_000 / 16 / 200 + 2000 * 0.02) / 3600)


def test_table_without_a_gpu_run_says_so() -> None:
    text = table(RESULTS)
    assert text.startswith(
        "Hours per stage on Test CPU (2 cores, AVX2, no bf16), torch 2 threads, extraction float32; GPU: not measured."
    )
    rows = [line for line in text.splitlines() if line.startswith("| ") and "`" in line]
    assert len(rows) == len(DATASETS) and all(row.endswith("| not measured |") for row in rows)
    thumos = rows[0].split(" | ")
    # THUMOS'14: 24.285 h x 90 000 frames/h / 250 frames/s = 2.43 h of decoding
    assert thumos[1] == "24.29" and thumos[2] == "2.43"


def test_every_row_is_a_preset() -> None:
    assert all((REPO / "presets" / f"{size.preset}.yaml").is_file() for size in DATASETS)


def test_missing_bench_results_name_the_files(tmp_path: Path) -> None:
    (tmp_path / "decode.json").write_text(json.dumps(RESULTS["decode"]))
    with pytest.raises(SystemExit, match=r"lacks flow.json, i3d.json, train.json"):
        project_time.load_results(tmp_path)


def test_docs_projected_hours_table_is_the_scripts_output() -> None:
    """docs/BENCHMARKS.md's table is what the script computes from the committed bench/results/."""
    assert project_time.page_block() == table(project_time.load_results(project_time.RESULTS)), (
        "docs/BENCHMARKS.md's projected hours are stale: run `python -m bench.project_time --write-docs`"
    )


def test_write_page_replaces_only_the_block(tmp_path: Path) -> None:
    page = tmp_path / "BENCHMARKS.md"
    begin, end = project_time.MARKERS
    page.write_text(f"# x\n{begin}old\ntable{end}\nafter\n")
    project_time.write_page("new", page)
    assert page.read_text() == f"# x\n{begin}new{end}\nafter\n"
    page.write_text("# no markers\n")
    with pytest.raises(SystemExit, match="lacks the markers"):
        project_time.write_page("new", page)


def test_dataset_sizes_match_the_annotation_files(shared_dir: Path) -> None:
    by_preset = {size.preset: size for size in DATASETS}
    for name in ("gtea", "beoid"):
        database = json.loads((shared_dir / "datasets" / name / "gt.json").read_text())["database"]
        assert by_preset[name].videos == len(database)
        assert by_preset[name].hours == pytest.approx(sum(v["duration"] for v in database.values()) / 3600, abs=1e-4)
    thumos = json.loads((shared_dir / "datasets" / "thumos14" / "gt.json").read_text())["database"]
    assert by_preset["thumos14"].videos == len(thumos) == 410
