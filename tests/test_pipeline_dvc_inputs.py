"""The user's own inputs are DVC dependencies: a folder of videos and a gt.json (directory
source, tiny dataset). Editing the ground truth reruns prepare and what depends on it and
updates the metrics; replacing one video re-decodes that video only; touching one changes
nothing; a params file naming an input dvc.yaml does not track is refused."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sources.synthetic import SyntheticSpec, dataset_annotations, plan_dataset, render_video
from tests.conftest import TINY, run_checked, tiny_repo

pytestmark = pytest.mark.slow


def _user_folder(root: Path) -> tuple[Path, Path, dict]:
    """Tiny rendered videos in `root/videos` and their gt.json (THUMOS'14 style, no fps)."""
    s = TINY["dataset"]["synthetic"]
    spec = SyntheticSpec(
        num_train=s["num_train"],
        num_test=s["num_test"],
        num_classes=s["num_classes"],
        width=s["width"],
        height=s["height"],
        duration_s=tuple(s["duration_s"]),
        instance_duration_s=tuple(s["instance_duration_s"]),
        seed=5,
    )
    plan = plan_dataset(spec)
    for video in plan:
        render_video(video, root / "videos" / f"{video.video_id}.mp4", spec=spec)
    annotations = dataset_annotations(plan, spec)
    gt = {
        "database": {
            vid: {
                "subset": e["subset"],
                "annotations": [{"segment": a["segment"], "label": a["label"]} for a in e["annotations"]],
            }
            for vid, e in annotations["database"].items()
        }
    }
    (root / "gt.json").write_text(json.dumps(gt, indent=1))
    return root / "videos", root / "gt.json", {"spec": spec, "plan": plan}


def _stages_run(result) -> set[str]:
    return set(re.findall(r"Running stage '(\w+)'", result.stdout + result.stderr))


def test_user_inputs_rerun_exactly_what_depends_on_them(tmp_path: Path, dvc_env: dict[str, str]) -> None:
    # 1. a repository on the directory source, its inputs written into dvc.yaml and committed
    videos, gt_json, made = _user_folder(tmp_path / "user")
    repo = tiny_repo(tmp_path / "repo")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["dataset"]["source"] = "directory"
    params["dataset"]["directory"].update(video_dir=str(videos), gt_json=str(gt_json))
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    py = sys.executable
    check = subprocess.run([py, "-m", "pipeline", "code-deps"], cwd=repo, env=dvc_env, capture_output=True, text=True)
    assert check.returncode == 1 and "inputs named in the params but not tracked" in check.stdout
    run_checked([py, "-m", "pipeline", "code-deps", "--write"], repo, dvc_env)
    prepare_deps = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]["prepare"]["deps"]
    assert str(videos) in prepare_deps and str(gt_json) in prepare_deps
    run_checked(["git", "commit", "-qam", "directory source"], repo, dvc_env)

    # 2. the whole DAG, then nothing to do
    run_checked([py, "-m", "dvc", "repro"], repo, dvc_env)
    before = json.loads((repo / "metrics" / "eval" / "metrics.json").read_text())
    assert before["videos"] == TINY["dataset"]["synthetic"]["num_test"]
    assert "up to date" in run_checked([py, "-m", "dvc", "status"], repo, dvc_env).stdout

    # 3. touching a video (mtime only) changes nothing
    first = sorted(videos.glob("*.mp4"))[0]
    os.utime(first, None)
    assert "up to date" in run_checked([py, "-m", "dvc", "status"], repo, dvc_env).stdout

    # 4. editing the ground truth (one test video dropped): prepare is stale, the metrics follow
    gt = json.loads(gt_json.read_text())
    dropped = sorted(v for v, e in gt["database"].items() if e["subset"] == "test")[0]
    del gt["database"][dropped]
    gt_json.write_text(json.dumps(gt, indent=1))
    status = run_checked([py, "-m", "dvc", "status"], repo, dvc_env).stdout
    assert "prepare" in status and str(gt_json) in status
    rerun = run_checked([py, "-m", "dvc", "repro"], repo, dvc_env)
    assert {"prepare", "evaluate"} <= _stages_run(rerun)
    after = json.loads((repo / "metrics" / "eval" / "metrics.json").read_text())
    assert after["videos"] == before["videos"] - 1

    # 5. one (still annotated) video replaced by another encoding: decode redoes that video only
    spec = made["spec"].model_copy(update={"crf": made["spec"].crf + 6})
    video = next(v for v in made["plan"] if v.subset == "train")
    render_video(video, videos / f"{video.video_id}.mp4", spec=spec)
    replaced = run_checked([py, "-m", "dvc", "repro"], repo, dvc_env)
    assert {"prepare", "decode"} <= _stages_run(replaced)
    decoded = re.search(
        r"\[decode\] done in [^:]+: videos (\d+), decoded (\d+), skipped (\d+)", replaced.stdout + replaced.stderr
    )
    assert decoded, replaced.stdout[-2000:]
    total, redone, skipped = map(int, decoded.groups())
    assert (redone, skipped) == (1, total - 1)


def test_a_stage_refuses_an_input_dvc_yaml_does_not_track(tmp_path: Path) -> None:
    from pipeline.code_deps import check_input_deps
    from pipeline.params import load_params

    params_file = tmp_path / "params.yaml"
    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    raw["points"].update(distribution="file", file="my_points.csv")
    params_file.write_text(yaml.safe_dump(raw))
    dvc_yaml = tmp_path / "dvc.yaml"
    dvc_yaml.write_text(
        yaml.safe_dump({"stages": {"points": {"cmd": "x", "deps": ["${paths.dataset}/annotations.json"]}}})
    )
    with pytest.raises(ValueError, match=r"stage 'points' reads \['my_points.csv'\].*code-deps --write"):
        check_input_deps("points", load_params(params_file), dvc_yaml)
    dvc_yaml.write_text(yaml.safe_dump({"stages": {"points": {"cmd": "x", "deps": ["my_points.csv"]}}}))
    check_input_deps("points", load_params(params_file), dvc_yaml)  # tracked: no error
