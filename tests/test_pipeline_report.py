"""pipeline/report.py (the analysis report and its verdicts) and pipeline/qualitative.py (runs side by side)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.files import write_json
from pipeline.report import build_report, verdict_ablation, verdict_distributions, verdict_scoring
from pipeline.study import (
    ABLATION_POINTS,
    METRIC_KEYS,
    RUNS_FILE,
    grid_points,
    parse_grid,
    point_label,
    summarise,
    write_outputs,
)

KEYS = [k for k in METRIC_KEYS if k.startswith("mAP@")]  # every threshold and average of tIoU 0.1:0.7


def _study(folder: Path, means: dict[str, float], points: dict[str, dict[str, str]]) -> None:
    """A finished study: two seeds per run, mAP = mean -/+ 0.01."""
    runs = {
        (label, seed): dict.fromkeys(KEYS, value + (0.01 if seed else -0.01))
        for label, value in means.items()
        for seed in (0, 1)
    }
    write_outputs(summarise(runs, list(means)), folder, points=points)
    write_json(
        folder / RUNS_FILE,
        {
            f"exp-{i}": {"label": label, "seed": seed, "overrides": points[label]}
            for i, (label, seed) in enumerate(runs)
        },
    )


def test_verdicts_say_plainly_whether_each_claim_holds(tmp_path: Path) -> None:
    assert verdict_scoring({"pearson_oic": 0.5, "pearson_inner": 0.6}).startswith(
        "does not hold here: r(OIC, tIoU) = 0.50 <= r(inner, tIoU) = 0.60 (paper: 0.68 against 0.38)"
    )
    assert verdict_scoring({"pearson_oic": 0.7, "pearson_inner": None}).startswith("not decidable")
    labels = list(ABLATION_POINTS)
    _study(tmp_path / "ab", dict(zip(labels, [0.60, 0.70, 0.65, 0.75])), ABLATION_POINTS)
    from pipeline.report import read_study_rows

    assert verdict_ablation(read_study_rows(tmp_path / "ab")) == (
        "holds here (mAP@0.1-0.7 over the baseline, points: + score contrast +10.0, + feature contrast +5.0, "
        "+ both (LACP) +15.0; best: + both (LACP))"
    )
    _study(tmp_path / "ab2", dict(zip(labels, [0.60, 0.55, 0.65, 0.62])), ABLATION_POINTS)
    assert verdict_ablation(read_study_rows(tmp_path / "ab2")).startswith("does not hold here")
    grid = grid_points(parse_grid(["points.distribution=center,beta", "train.completeness=false,true"]))
    points = {point_label(p): p for p in grid}
    _study(tmp_path / "dist", dict(zip(points, [0.6, 0.7, 0.5, 0.45])), points)
    runs = json.loads((tmp_path / "dist" / RUNS_FILE).read_text())
    assert verdict_distributions(read_study_rows(tmp_path / "dist"), runs) == (
        "does not hold for beta here (mAP@0.1-0.7 with completeness minus without, points: center +10.0, beta -5.0)"
    )


def test_report_gathers_every_part_and_names_the_missing_ones(tmp_path: Path) -> None:
    analysis = tmp_path / "analysis"
    (analysis / "sequences").mkdir(parents=True)
    write_json(analysis / "metrics.json", {"pearson_oic": 0.7, "pearson_inner": 0.3})
    (analysis / "sequences" / "t1.png").write_bytes(b"\x89PNG fake")
    (analysis / "report.md").write_text("# Analysis\n\n## Scoring variants\n\ntable\n\n![t1](sequences/t1.png)\n")
    _study(tmp_path / "ab", dict(zip(ABLATION_POINTS, [0.60, 0.70, 0.65, 0.75])), ABLATION_POINTS)
    path = build_report(
        analysis_dir=analysis,
        out_dir=tmp_path / "report",
        ablation_dir=tmp_path / "ab",
        distributions_dir=tmp_path / "none",
        qualitative_dir=tmp_path / "none",
    )
    text = path.read_text()
    assert "**Verdict**: holds here: r(OIC, tIoU) = 0.70 > r(inner, tIoU) = 0.30" in text
    assert "### Scoring variants" in text and "![t1](analyze/sequences/t1.png)" in text
    assert (tmp_path / "report" / "analyze" / "sequences" / "t1.png").read_bytes() == b"\x89PNG fake"
    assert "| + both (LACP) | 2 | 75.0 ± 1.4 |" in text and (tmp_path / "report" / "ablation" / "study.png").is_file()
    assert "Not produced yet: run `make distributions`" in text and "run `make qualitative`" in text


def test_qualitative_resolves_study_labels_and_draws_workspace_runs(tmp_path: Path) -> None:
    from lacp.proposals import DetectionConfig
    from pipeline.params import load_params
    from pipeline.qualitative import compare_runs, resolve_runs
    from stages import train
    from tests.test_lacp_splits import write_tiny_inputs

    write_json(
        tmp_path / "s" / RUNS_FILE,
        {
            "exp-a": {"label": "base", "seed": 0, "overrides": {}},
            "exp-b": {"label": "base", "seed": 1, "overrides": {}},
        },
    )
    refs = resolve_runs(["base", "workspace"], study=tmp_path / "s", seed=None)
    assert [(r.name, r.rev) for r in refs] == [("base (seed 0)", "exp-a"), ("workspace", None)]
    assert resolve_runs(["base"], study=tmp_path / "s", seed=1)[0].rev == "exp-b"
    with pytest.raises(ValueError, match="no run labelled 'lacp'; labels: base"):
        resolve_runs(["lacp"], study=tmp_path / "s", seed=None)
    with pytest.raises(ValueError, match=r"has seeds \[0, 1\], not 5"):
        resolve_runs(["base"], study=tmp_path / "s", seed=5)

    inputs = write_tiny_inputs(tmp_path)
    train.run(
        train.TrainParams(steps=2, batch=2, search_every=2, checkpoint_every=0, device="cpu"),
        detection=DetectionConfig(),
        **inputs,
        model_dir=tmp_path / "model",
        log_dir=tmp_path / "log",
        pseudo_labels_path=tmp_path / "p.h5",
    )
    params = load_params(
        Path(__file__).parents[1] / "params.yaml",
        overrides={
            "paths": {
                "dataset": str(inputs["dataset_dir"]),
                "features": str(inputs["features"]),
                "model": str(tmp_path / "model"),
            },
            "evaluate": {"device": "cpu"},
        },
    )
    written = compare_runs(
        params, ["workspace", "workspace"], out_dir=tmp_path / "q", videos=[], count=5, threshold=0.0
    )
    assert [p.name for p in written] == ["e1.png", "e2.png"]  # the test videos, by id
    assert "![e1](e1.png)" in (tmp_path / "q" / "qualitative.md").read_text()
    with pytest.raises(ValueError, match="not test videos: t1"):
        compare_runs(params, ["workspace"], out_dir=tmp_path / "q", videos=["t1"], count=1, threshold=0.0)
