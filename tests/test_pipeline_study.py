"""Study helpers: grid expansion, reading `dvc exp show --json`, summaries over seeds, outputs."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from pipeline.params import load_params
from pipeline.study import (
    ABLATION_POINTS,
    METRIC_KEYS,
    collect_metrics,
    departure_points,
    experiment_argv,
    grid_points,
    markdown_table,
    metric_keys,
    parse_grid,
    point_label,
    report_markdown,
    row_thresholds,
    run_thresholds,
    summarise,
    write_outputs,
)


def test_grid_expansion_and_labels():
    grid = parse_grid(["points.distribution=center,uniform", "train.completeness=true,false"])
    points = grid_points(grid)
    assert points == [
        {"points.distribution": "center", "train.completeness": "true"},
        {"points.distribution": "center", "train.completeness": "false"},
        {"points.distribution": "uniform", "train.completeness": "true"},
        {"points.distribution": "uniform", "train.completeness": "false"},
    ]
    assert point_label({"points.distribution": "beta"}) == "beta"
    assert point_label(points[1]) == "points.distribution=center train.completeness=false"


def test_departures_study_is_the_defaults_the_preset_and_each_key_alone():
    points = departure_points("released")
    keys = [
        "train.oic_outer",
        "train.search_method",
        "train.feat_last_class_only",
        "train.video_end",
        "train.label_delay",
        "detection.faithful",
    ]
    assert list(points)[:2] == ["defaults", "released preset"]
    assert points["defaults"] == {}
    assert sorted(points["released preset"]) == sorted(keys)
    alone = {label: p for label, p in points.items() if label not in ("defaults", "released preset")}
    assert sorted(k for p in alone.values() for k in p) == sorted(keys)  # one key each
    assert alone["train.oic_outer=released"] == {"train.oic_outer": "released"}
    assert alone["detection.faithful=true"] == {"detection.faithful": "true"}


def test_a_run_without_completeness_takes_its_pseudo_instances_from_proposals():
    """Every ablation row and both values of a completeness grid give params that load: the
    baseline's run gets pseudo.source=proposals (it has no search), unless it names a source."""
    for point in [*ABLATION_POINTS.values(), {"train.completeness": "false"}, {"train.completeness": "true"}]:
        argv = experiment_argv(point, 0, name="s", extra=[], copy=[])
        overrides: dict = {}
        for item in [a for i, a in enumerate(argv) if i and argv[i - 1] == "-S"]:
            key, _, value = item.partition("=")
            section, _, field = key.partition(".")
            overrides.setdefault(section, {})[field] = {"true": True, "false": False}.get(value, value)
        params = load_params(Path(__file__).resolve().parents[1] / "params.yaml", overrides=overrides)
        assert params.pseudo.source == ("search" if params.train.completeness else "proposals")
    named = experiment_argv({"train.completeness": "false"}, 0, name="s", extra=["pseudo.source=ground_truth"], copy=[])
    assert "pseudo.source=proposals" not in named and "pseudo.source=ground_truth" in named


def test_bad_grid_entry_is_explained():
    with pytest.raises(ValueError, match="expected key=v1,v2"):
        parse_grid(["points.distribution"])


def test_experiment_argv_sets_seeds_and_copies_inputs():
    argv = experiment_argv(
        {"points.distribution": "manual"}, 2, name="s-001", extra=["train.steps=10"], copy=["clicks.txt"]
    )
    assert argv[1:6] == ["exp", "run", "--temp", "--name", "s-001"]
    joined = " ".join(argv)
    for item in (
        "-S points.distribution=manual",
        "-S points.seed=2",
        "-S train.seed=2",
        "-S train.steps=10",
        "-C clicks.txt",
    ):
        assert item in joined


def _exp(name: str, map05: float) -> dict:
    return {
        "rev": "abc",
        "name": name,
        "data": {
            "metrics": {
                "metrics/eval/metrics.json": {
                    "data": {"mAP@0.5": map05, "selection": "final step", "per_class_ap": {"a": [1.0]}}
                }
            }
        },
    }


def test_collect_metrics_walks_dvc_exp_show_json():
    shown = [
        {"rev": "workspace", "name": None, "data": {"metrics": {}}},
        {
            "rev": "HEAD",
            "name": "main",
            "data": {"metrics": {}},
            "experiments": [{"revs": [_exp("s-000", 0.4)]}, {"revs": [_exp("s-001", 0.6), _exp("other", 0.9)]}],
        },
    ]
    found = collect_metrics(shown, {"s-000", "s-001"})
    assert found == {"s-000": {"mAP@0.5": 0.4}, "s-001": {"mAP@0.5": 0.6}}  # strings and per-class lists skipped


def test_the_self_trained_detector_metrics_stay_apart_and_make_the_ablation_row():
    """evaluate and evaluate_selftrain write the same keys: the detector's are prefixed, never
    mixed with LACP's, and become the ablation's "+ self-training" row, right after LACP's."""
    from pipeline.study import LACP_ROW, SELFTRAIN_ROW, with_selftrain_row

    def exp(name: str, lacp: float, detector: float) -> dict:
        return {
            "name": name,
            "data": {
                "metrics": {
                    "metrics/eval/metrics.json": {"data": {"mAP@0.5": lacp}},
                    "metrics/eval_selftrain/metrics.json": {"data": {"mAP@0.5": detector}},
                }
            },
        }

    shown = [
        {
            "rev": "HEAD",
            "name": "main",
            "data": {"metrics": {}},
            "experiments": [
                {"revs": [exp("a-000", 0.4, 0.5)]},
                {"revs": [exp("a-001", 0.6, 0.8)]},
                {"revs": [exp("a-002", 0.3, 0.1)]},
            ],
        }
    ]
    found = collect_metrics(shown, {"a-000", "a-001", "a-002"}, selftrain_metrics="metrics/eval_selftrain/metrics.json")
    assert found["a-000"] == {"mAP@0.5": 0.4, "selftrain/mAP@0.5": 0.5}
    runs = {(LACP_ROW, 0): found["a-000"], (LACP_ROW, 1): found["a-001"], ("baseline", 0): found["a-002"]}
    runs, labels = with_selftrain_row(runs, ["baseline", LACP_ROW])
    assert labels == ["baseline", LACP_ROW, SELFTRAIN_ROW]
    assert runs[(SELFTRAIN_ROW, 0)] == {"mAP@0.5": 0.5} and runs[(SELFTRAIN_ROW, 1)] == {"mAP@0.5": 0.8}
    rows = summarise(runs, labels)
    assert [r["run"] for r in rows] == labels
    assert rows[1]["mAP@0.5 mean"] == pytest.approx(0.5) and rows[2]["mAP@0.5 mean"] == pytest.approx(0.65)


def test_summary_over_seeds_and_outputs(tmp_path: Path):
    def metrics(v: float) -> dict[str, float]:
        return dict.fromkeys(METRIC_KEYS, v)

    runs = {("center", 0): metrics(0.5), ("center", 1): metrics(0.7), ("uniform", 0): metrics(0.3)}
    rows = summarise(runs, ["center", "uniform"])
    assert rows[0]["run"] == "center" and rows[0]["seeds"] == 2
    assert rows[0]["mAP@0.5 mean"] == pytest.approx(0.6)
    assert rows[0]["mAP@0.5 std"] == pytest.approx(0.1414213, rel=1e-5)  # sample std of 0.5, 0.7
    assert rows[1]["mAP@0.5 std"] == 0.0  # one seed
    table = markdown_table(rows)
    assert "| center | 2 | 60.0 ± 14.1 |" in table

    paths = write_outputs(rows, tmp_path)
    assert paths["csv"].read_text().splitlines()[0].startswith("run,seeds,mAP@0.1 mean")
    assert paths["plot"].stat().st_size > 1000
    report = report_markdown(paths)  # the Prefect artifact: the table, then the plot itself
    assert report.startswith(table)
    uri = report.split("![mAP against tIoU](", 1)[1].split(")", 1)[0]
    assert base64.b64decode(uri.removeprefix("data:image/png;base64,")) == paths["plot"].read_bytes()


def test_markdown_table_shows_ratios_as_ratios_and_missing_metrics_as_a_dash():
    runs = {
        ("lacp", 0): dict.fromkeys(METRIC_KEYS, 0.5) | {"pseudo_length_ratio": 1.04},
        ("baseline", 0): {k: 0.25 for k in METRIC_KEYS if not k.startswith("pseudo_")},
    }
    table = markdown_table(summarise(runs, ["lacp", "baseline"]))
    lacp, baseline = (line for line in table.splitlines() if line.startswith(("| lacp", "| baseline")))
    assert lacp.endswith("| 50.0 ± 0.0 | 50.0 ± 0.0 | 1.04 ± 0.00 |")
    assert baseline.endswith("| 25.0 ± 0.0 | - | - | - |")


ACTIVITYNET_TIOU = [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]


def test_columns_follow_the_thresholds_in_the_metrics(tmp_path: Path):
    """ActivityNet-style metrics.json (mAP@0.5 ... mAP@0.95, mAP@0.5-0.95): the table and plot use those."""

    def metrics(offset: float) -> dict[str, float]:
        values = {f"mAP@{t:g}": 0.6 - t / 2 + offset for t in ACTIVITYNET_TIOU}  # 0.35 at 0.5 ... 0.125 at 0.95
        values["mAP@0.5-0.95"] = 0.25 + offset
        return values | {"accuracy": 0.8, "val_mAP@0.5-0.95": 0.2 + offset, "val_accuracy": 0.7, "selection": 0.0}

    runs = {("n50", 0): metrics(0.0), ("n50", 1): metrics(0.02), ("n100", 0): metrics(0.1)}
    assert metric_keys(run_thresholds(runs.values())) == [
        *(f"mAP@{t:g}" for t in ACTIVITYNET_TIOU),
        "mAP@0.5-0.95",
        "accuracy",
        "val_mAP@0.5-0.95",
        "val_accuracy",
        "pseudo_iou",
        "pseudo_coverage",
        "pseudo_length_ratio",
    ]
    rows = summarise(runs, ["n50", "n100"])
    assert rows[0]["mAP@0.95 mean"] == pytest.approx(0.135) and rows[0]["mAP@0.95 std"] == pytest.approx(
        0.0141421, rel=1e-5
    )
    assert rows[0]["mAP@0.5-0.95 mean"] == pytest.approx(0.26) and rows[1]["mAP@0.5-0.95 mean"] == pytest.approx(0.35)
    assert "mAP@0.1 mean" not in rows[0] and "mAP@0.1-0.7 mean" not in rows[0]
    table = markdown_table(rows)
    head, _, n50, n100 = table.splitlines()
    assert head.startswith("| run | seeds | mAP@0.5 | mAP@0.55 | ") and "| mAP@0.95 | mAP@0.5-0.95 | accuracy |" in head
    assert n50.startswith("| n50 | 2 | 36.0 ± 1.4 | 33.5 ± 1.4 | ")
    assert n50.endswith("| 13.5 ± 1.4 | 26.0 ± 1.4 | 80.0 ± 0.0 | 21.0 ± 1.4 | 70.0 ± 0.0 | - | - | - |")
    assert n100.startswith("| n100 | 1 | 45.0 ± 0.0 |")
    assert row_thresholds(rows) == ACTIVITYNET_TIOU
    paths = write_outputs(rows, tmp_path)
    assert paths["csv"].read_text().splitlines()[0].startswith("run,seeds,mAP@0.5 mean,mAP@0.5 std,mAP@0.55 mean")
    assert paths["plot"].stat().st_size > 1000


def test_thumos_style_metrics_keep_the_default_columns():
    runs = {("a", 0): dict.fromkeys(METRIC_KEYS, 0.5) | {"mAP@0.1-0.5": 0.4}, ("b", 0): {"mAP@0.3": 0.2}}
    assert run_thresholds(runs.values()) == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    assert metric_keys(run_thresholds(runs.values())) == METRIC_KEYS
    assert run_thresholds([{"accuracy": 0.5}]) == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]  # no threshold: the default


def test_two_key_grid_gets_cross_tables_of_map_at_05_and_the_average(tmp_path: Path):
    from pipeline.study import pivot_table, study_markdown

    grid = grid_points(parse_grid(["points.distribution=center,uniform", "train.completeness=false,true"]))
    points = {point_label(p): p for p in grid}
    runs = {}
    for i, label in enumerate(points):  # two seeds per point: mAP 0.1*i and 0.1*i + 0.02
        for seed in (0, 1):
            value = 0.1 * i + 0.02 * seed
            runs[(label, seed)] = {**{k: value for k in METRIC_KEYS if k.startswith("mAP@")}}
    rows = summarise(runs, list(points))
    table = pivot_table(rows, points, "mAP@0.1-0.7")
    assert table.splitlines() == [
        "| mAP@0.1-0.7 | train.completeness=false | train.completeness=true |",
        "|---|---|---|",
        "| points.distribution=center | 1.0 ± 1.4 | 11.0 ± 1.4 |",
        "| points.distribution=uniform | 21.0 ± 1.4 | 31.0 ± 1.4 |",
    ]
    text = study_markdown(rows, points)
    assert "| mAP@0.5 | train.completeness=false" in text and table in text
    assert pivot_table(rows[:1], {"center": {"points.distribution": "center"}}, "mAP@0.5") == ""  # one key: none
    write_outputs(rows, tmp_path, points=points, title="Distributions")
    assert (tmp_path / "study.md").read_text() == text


def study_rows(value: float) -> list[dict]:
    """The summary rows of a two-run, two-seed study whose every metric is about `value`."""
    runs = {
        (label, seed): dict.fromkeys(METRIC_KEYS, value + 0.1 * seed)
        for label in ("center", "uniform")
        for seed in (0, 1)
    }
    return summarise(runs, ["center", "uniform"])


def test_a_write_failing_half_way_leaves_the_earlier_study_as_it_was(tmp_path: Path):
    from tests.test_reliability_faults import digest, run_with_file_size_limit

    study = tmp_path / "study"
    write_outputs(study_rows(0.2), study)  # an earlier study's files
    before = digest(study)
    new = write_outputs(study_rows(0.5), tmp_path / "new")  # what the new study writes
    result = run_with_file_size_limit(
        "from pathlib import Path\nfrom pipeline.study import write_outputs\n"
        "from tests.test_pipeline_study import study_rows",
        f"write_outputs(study_rows(0.5), Path({str(study)!r}))",
        file_size_limit=new["markdown"].stat().st_size // 2,  # a full disk half-way through study.md
    )
    assert result.returncode == 1 and f"File too large: '{study / 'study.md'}'" in result.stderr, result.stderr[-2000:]
    assert digest(study) == before  # study.md whole, and nothing else touched or left behind
