"""`python -m pipeline ...`: the command line.

Commands:
    params                      print the resolved, validated params
    preset NAME | --list        write a named partial params overlay (presets/) into params.yaml
    run STAGE [--no-wait]       run one DVC stage as a Prefect flow (what dvc.yaml calls); one at a time per repository
    map GT RESULTS              score any ActivityNet-format results file
    i3d-check CLIP              top-5 Kinetics-400 classes of a clip (weights sanity check)
    import-features DIR         import released LACP .npy features into the HDF5 store
    export-features OUT         the feature store as per-video .npy (LACP or ActionFormer layout)
    detect VIDEO_OR_FOLDER...   a trained model on new videos: ActivityNet results and pictures
    repro                       `dvc repro` as a Prefect flow (stage runs share a tag)
    study                       a grid of DVC experiments (label distributions by default)
    serve                       Prefect deployments of `repro` and `study` for the UI
    code-deps [--write]         check (or rewrite) dvc.yaml's code deps: each stage's import closure
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from pipeline.console import VERBOSE_ENV, configure_logging, verbose_requested
from stages import STAGE_NAMES


def _params(args: argparse.Namespace):
    from pipeline.params import load_params

    return load_params(args.params)


def cmd_params(args: argparse.Namespace) -> int:
    import yaml

    print(yaml.safe_dump(_params(args).model_dump(mode="json"), sort_keys=False), end="")
    return 0


def cmd_preset(args: argparse.Namespace) -> int:
    from pipeline.presets import apply_preset, format_value, list_presets, preset_set_args

    if args.list:
        presets = list_presets()
        width = max(map(len, presets), default=0)
        for name, header in presets.items():
            print(f"{name:{width}s}  {header}")
        return 0
    if (
        args.set_args
    ):  # shell words: eval "dvc exp run $(python -m pipeline preset NAME --set-args)"; params.yaml untouched
        print(" ".join(f"-S {shlex.quote(arg)}" for arg in preset_set_args(args.name)))
        return 0
    changes = apply_preset(args.params, args.name)
    for change in changes:
        print(f"{change.key}: {format_value(change.old)} -> {format_value(change.new)}")
    if not changes:
        print(f"{args.params} already holds every value of preset '{args.name}'")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from core.lock import LockHeldError, repo_lock
    from pipeline.console import say

    params = _params(args)  # bad params are refused before waiting for the lock
    # one stage at a time per repository (the params file's folder); `repro` takes no lock, its
    # stages (`python -m pipeline run STAGE`, started by DVC) each take it
    try:
        with repo_lock(
            Path(args.params).resolve().parent,
            command=f"python -m pipeline run {args.stage}",
            wait=not args.no_wait,
            on_wait=say,
        ):
            from pipeline.flows import run_stage  # Prefect loads once the lock is ours: --no-wait answers at once

            summary = run_stage(args.stage, params)
    except LockHeldError as err:
        print(f"error: {err}", file=sys.stderr)
        return os.EX_TEMPFAIL  # 75: try again later
    if args.json:
        print(json.dumps({"stage": args.stage, **summary}, default=str))
    return 0


def cmd_map(args: argparse.Namespace) -> int:
    from lacp.metrics import (
        evaluate_detection,
        format_table,
        load_ground_truth,
        load_results,
        parse_tiou,
        summary_table,
    )

    gt = load_ground_truth(args.gt, subset=args.subset)
    result = evaluate_detection(gt, load_results(args.results), tiou=parse_tiou(args.tiou))
    if args.json:
        table = summary_table(result)
        table["per_class_ap"] = {c: [float(a) for a in ap] for c, ap in zip(result.classes, result.ap)}
        print(json.dumps(table, indent=2))
    else:
        print(format_table(result))
    return 0


def cmd_i3d_check(args: argparse.Namespace) -> int:
    from features.kinetics import classify_clip

    top5 = classify_clip(Path(args.clip), weights=Path(args.weights) if args.weights else None)
    if args.json:
        print(json.dumps([{"class": name, "logit": float(logit)} for name, logit in top5]))
    else:
        for rank, (name, logit) in enumerate(top5, 1):
            print(f"{rank}. {name:40s} {logit:8.3f}")
    return 0


IMPORTED_FEATURES = "data/imported/features.h5"  # import-features' default: no DVC stage's output


def _dvc_stage_writing(path: Path) -> str | None:
    """The stage of ./dvc.yaml whose output `path` is or lies in (None: no stage's, or no dvc.yaml).
    Outs written `${paths.x}` are resolved from ./params.yaml, as DVC resolves them."""
    import re

    import yaml

    dvc_yaml, params_yaml = Path("dvc.yaml"), Path("params.yaml")
    if not dvc_yaml.is_file():
        return None
    values = yaml.safe_load(params_yaml.read_text()) if params_yaml.is_file() else {}

    def value(match: re.Match[str]) -> str:
        found = values
        for key in match.group(1).strip().split("."):
            found = found.get(key) if isinstance(found, dict) else None
        return match.group(0) if found is None else str(found)

    target = path.resolve()
    for name, stage in (yaml.safe_load(dvc_yaml.read_text()).get("stages") or {}).items():
        for out in stage.get("outs", []):
            owned = Path(re.sub(r"\$\{([^}]+)\}", value, next(iter(out)) if isinstance(out, dict) else out)).resolve()
            if target == owned or owned in target.parents:
                return name
    return None


def cmd_import_features(args: argparse.Namespace) -> int:
    from features.lacp_import import import_lacp_features

    out = Path(args.out)
    stage = _dvc_stage_writing(out)
    if stage is not None:
        raise ValueError(
            f"{out} is an output of the DVC stage '{stage}' (dvc.yaml): `dvc repro` would delete it and run "
            f"'{stage}' again, losing the import; import outside DVC's outputs (the default --out "
            f"{IMPORTED_FEATURES}) and point paths.features of a params file at it (docs/USAGE.md, "
            '"Starting from public features")'
        )
    summary = import_lacp_features(Path(args.dir), out)
    print(json.dumps(summary, default=str))
    return 0


def cmd_export_features(args: argparse.Namespace) -> int:
    from features.feature_export import export_features
    from stages.artifacts import read_annotations

    params = _params(args)
    annotations = read_annotations(params.paths.dataset)
    subsets = {vid: e["subset"] for vid, e in annotations["database"].items()}
    summary = export_features(
        args.features or params.paths.features, Path(args.out), layout=args.layout, subsets=subsets, force=args.force
    )
    print(
        json.dumps(
            {"out": str(summary.out), "layout": summary.layout, "written": summary.written, "removed": summary.removed}
        )
    )
    return 0


def _default_path(args: argparse.Namespace, given: str, key: str, flag: str) -> Path:
    """`given`, else the params file's `paths.<key>` (detect needs no params file when both are given)."""
    if given:
        return Path(given)
    if not Path(args.params).is_file():
        raise FileNotFoundError(f"{args.params} not found: pass {flag} (or run from the project folder)")
    return Path(getattr(_params(args).paths, key))


def detection_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The detection keys `detect`'s flags set, shaped as the params' `detection` section (LACP's
    keys, and `detector` for the self-trained detector's): `pipeline.detect.detection_settings`."""
    from detector.config import InferenceConfig
    from lacp.proposals import DetectionConfig

    overrides: dict[str, Any] = {
        k: getattr(args, k) for k in DetectionConfig.model_fields if getattr(args, k) is not None
    }
    detector = {k: getattr(args, k) for k in InferenceConfig.model_fields if getattr(args, k) is not None}
    return overrides | ({"detector": detector} if detector else {})


def cmd_detect(args: argparse.Namespace) -> int:
    from core.files import write_json
    from pipeline.console import say
    from pipeline.detect import collect_videos, detect, earlier_results, load_detector, results_document, write_pictures

    overrides = detection_overrides(args)
    videos = collect_videos(args.videos)  # bad arguments are refused before the model loads
    model_dir = Path(args.model) if args.model else None
    if model_dir is None:  # the params file's choice (detect.model): LACP's or the self-trained detector's folder
        _default_path(args, "", "model", "--model")  # names a missing params file
        params = _params(args)
        model_dir = params.detect.model_dir(params.paths)
    detector = load_detector(
        model_dir,
        weights_dir=_default_path(args, args.weights, "weights", "--weights"),
        device=args.device,
        overrides=overrides,
    )
    out = Path(args.out)
    earlier = earlier_results(out, detector, force=args.force)  # refused before any video runs

    def finished(results) -> None:  # after each video: nothing finished is lost to a later crash
        write_json(out, results_document(results, detector, earlier=earlier))
        if args.pictures:
            write_pictures(results[-1:], detector, Path(args.pictures), threshold=args.threshold or 0.0)

    results = detect(videos, detector, threshold=args.threshold, say=say, on_video=finished)
    failed = [r.name for r in results if not r.ok]  # this run's (--strict); earlier runs' stay in the file
    found = sum(len(r.detections) for r in results)
    done = len(results) - len(failed)
    kept = len(set(earlier["results"]) - {r.name for r in results}) if earlier else 0
    say(
        f"[detect] wrote {args.out}: {found} detection{'s' * (found != 1)} in {done} video{'s' * (done != 1)}"
        + (f"; {len(failed)} failed: {', '.join(failed)}" if failed else "")
        + (f"; kept the results of {kept} earlier video{'s' * (kept != 1)}" if kept else "")
        + (f"; pictures in {args.pictures}" if args.pictures else "")
    )
    return 1 if failed and args.strict else 0


def cmd_repro(args: argparse.Namespace) -> int:
    from pipeline.orchestrate import print_results, repro

    _params(args)  # refuse bad params before DVC starts
    code = repro(list(args.set or []))
    if code == 0:
        print_results(_params(args))  # read again: `-S` overrides land in params.yaml
    return code


def cmd_study(args: argparse.Namespace) -> int:
    from pipeline.presets import preset_set_args
    from pipeline.study import run_study

    preset = preset_set_args(args.preset) if args.preset else []
    run_study(
        grid=list(args.grid or []),
        seeds=[int(s) for s in args.seeds.split(",")],
        out_dir=Path(args.out),
        extra=[*preset, *(args.set or [])],  # --set after the preset: DVC applies them in order
        departures=args.departures,
        ablation=args.ablation,
    )
    return 0


def cmd_qualitative(args: argparse.Namespace) -> int:
    from pipeline.qualitative import compare_runs

    written = compare_runs(
        _params(args),
        list(args.runs),
        out_dir=Path(args.out),
        videos=list(args.videos or []),
        count=args.count,
        threshold=args.threshold,
        study=Path(args.study) if args.study else None,
        seed=args.seed,
    )
    print(f"{len(written)} picture(s) in {args.out}/ (index: {args.out}/qualitative.md)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pipeline.report import build_report, publish_report, summary_json

    params = _params(args)
    path = build_report(analysis_dir=params.paths.analysis, out_dir=Path(args.out))
    if not args.no_prefect:
        publish_report(path)
    print(summary_json(path))
    return 0


def cmd_code_deps(args: argparse.Namespace) -> int:
    import yaml

    from pipeline.code_deps import input_deps, missing_deps, stage_closure, stage_code_deps, write_code_deps

    root, dvc_yaml = Path.cwd(), Path("dvc.yaml")
    if args.write:
        inputs = input_deps(_params(args))
        for stage, deps in write_code_deps(root, dvc_yaml, inputs).items():
            named = inputs.get(stage, [])
            print(f"{stage}: {len(deps) - len(named)} code deps" + (f", inputs {named}" if named else ""))
        return 0
    parsed = yaml.safe_load(dvc_yaml.read_text())
    listed = stage_code_deps(parsed)
    listed_all = {name: stage.get("deps", []) for name, stage in parsed["stages"].items()}
    stale = False
    for stage, deps in listed.items():
        closure = stage_closure(root, stage)
        missing, extra = missing_deps(closure, deps), sorted(set(deps) - closure)
        stale |= bool(missing or extra)
        print(f"{stage}: " + ("ok" if not (missing or extra) else f"missing {missing}, not imported {extra}"))
    for stage, named in input_deps(_params(args)).items():
        untracked = [p for p in named if p not in listed_all.get(stage, [])]
        stale |= bool(untracked)
        if untracked:
            print(f"{stage}: inputs named in the params but not tracked {untracked}")
    if stale:
        print("dvc.yaml's deps are stale: python -m pipeline code-deps --write")
    return 1 if stale else 0


def cmd_serve(args: argparse.Namespace) -> int:
    from pipeline.orchestrate import serve

    serve()
    return 0


def _add_detection_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per key of the params' `detection` section (LACP's, then the self-trained
    detector's), each overriding the model folder's record, its help the config field's description."""
    from detector.config import InferenceConfig
    from lacp.proposals import DetectionConfig

    for model, fields, applies in (
        ("LACP", DetectionConfig.model_fields, "an LACP folder, or the LACP scores a detector folder fuses"),
        ("detector", InferenceConfig.model_fields, "a self-trained detector's folder"),
    ):
        group = parser.add_argument_group(f"detection settings ({model}; default: the folder's record; for {applies})")
        for key, info in fields.items():
            flag = f"--{key.replace('_', '-')}"
            described = f"{info.description} (detection.{'detector.' * (model == 'detector')}{key})"
            if info.annotation is bool:
                group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=described)
            else:
                group.add_argument(flag, type=info.annotation, default=None, metavar=key.upper(), help=described)


def build_parser() -> argparse.ArgumentParser:
    from sources.directory import DEFAULT_EXTENSIONS

    parser = argparse.ArgumentParser(
        prog="python -m pipeline", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help=f"also print Prefect's own INFO lines (flow and task run states); {VERBOSE_ENV}=1 does the same",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("params", help="print the resolved params").set_defaults(fn=cmd_params)

    p = sub.add_parser("preset", help="write a named preset (presets/NAME.yaml) into the params file")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("name", nargs="?", help="preset name, e.g. heldout (prints each key: old -> new)")
    which.add_argument("--list", action="store_true", help="list the presets and what each is for")
    p.add_argument(
        "--set-args",
        action="store_true",
        help="print the preset as `-S key=value` arguments (for dvc exp run or repro) instead of writing it",
    )
    p.set_defaults(fn=cmd_preset)

    p = sub.add_parser("run", help="run one stage as a Prefect flow")
    p.add_argument("stage", choices=STAGE_NAMES)
    p.add_argument("--json", action="store_true", help="print the stage summary as one JSON line on stdout")
    p.add_argument(
        "--no-wait",
        action="store_true",
        help="when another stage command holds the repository's lock (.pipeline.lock), fail at once "
        "(exit status 75) instead of waiting for it",
    )
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser("map", help="detection mAP of an ActivityNet results file")
    p.add_argument("gt", help="ground truth JSON ({'database': ...})")
    p.add_argument("results", help="results JSON ({'results': ...})")
    p.add_argument("--subset", default="test", help="ground-truth subset to score (default: test)")
    p.add_argument("--tiou", default="0.1:0.7:0.1", help="thresholds start:stop:step or a,b,c")
    p.add_argument("--json", action="store_true", help="JSON with per-class AP")
    p.set_defaults(fn=cmd_map)

    p = sub.add_parser("i3d-check", help="top-5 Kinetics-400 classes of a clip")
    p.add_argument("clip", help="video or GIF")
    p.add_argument("--weights", default="", help="converted RGB state_dict (default: fetch DeepMind's)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_i3d_check)

    p = sub.add_parser("import-features", help="import released LACP .npy features into HDF5")
    p.add_argument("dir", help="folder with {train,test}/{rgb,flow}/<video_id>.npy")
    p.add_argument(
        "--out",
        default=IMPORTED_FEATURES,
        help=f"the store to write (default: {IMPORTED_FEATURES}); an output of a dvc.yaml stage, such as "
        "data/features.h5, is refused: `dvc repro` would delete it",
    )
    p.set_defaults(fn=cmd_import_features)

    p = sub.add_parser(
        "export-features", help="export the feature store as per-video .npy (the inverse of import-features)"
    )
    p.add_argument("out", help="folder to write: new, empty, or an earlier export of the same store (else see --force)")
    p.add_argument(
        "--force",
        action="store_true",
        help="export into a folder that holds anything else: every array is rewritten, and the arrays an "
        "earlier export there listed that this one does not write are removed",
    )
    p.add_argument(
        "--layout",
        choices=["lacp", "actionformer"],
        required=True,
        help="lacp: {train,test}/{rgb,flow}/<vid>.npy (T, 1024); actionformer: <vid>.npy (T, 2048)",
    )
    p.add_argument("--features", default="", help="store to export (default: the params' paths.features)")
    p.set_defaults(fn=cmd_export_features)

    p = sub.add_parser("detect", help="detect actions in new videos with a trained model folder")
    p.add_argument(
        "videos",
        nargs="+",
        metavar="VIDEO_OR_FOLDER",
        help=f"video files, or folders (their files ending in {', '.join(DEFAULT_EXTENSIONS)})",
    )
    p.add_argument(
        "--model",
        default="",
        help="the model folder: LACP's (train) or the self-trained detector's "
        "(selftrain) (default: the one the params file's detect.model names)",
    )
    p.add_argument("--weights", default="", help="the I3D weights folder (default: the params file's paths.weights)")
    p.add_argument(
        "--out",
        default="detections.json",
        help="ActivityNet results file (default: detections.json), rewritten after each video; when it "
        "holds an earlier detect run's results of the same model folder and detection settings, "
        "this run's videos are merged in (the others kept, the ones run again replaced); any other "
        "existing file is refused unless --force",
    )
    p.add_argument(
        "--force", action="store_true", help="replace an existing --out file instead of merging into it or refusing it"
    )
    p.add_argument(
        "--threshold", type=float, default=None, help="drop detections scoring below this (default: keep all)"
    )
    p.add_argument("--pictures", default="", metavar="DIR", help="also draw one timeline per video into DIR")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    _add_detection_flags(p)
    p.add_argument("--strict", action="store_true", help="exit with status 1 when any video failed")
    p.set_defaults(fn=cmd_detect)

    p = sub.add_parser("repro", help="dvc repro as a Prefect flow")
    p.add_argument("--set", "-S", action="append", help="params override key=value (runs dvc exp run)")
    p.set_defaults(fn=cmd_repro)

    p = sub.add_parser("study", help="study over DVC experiments (default: the label distributions)")
    p.add_argument(
        "--grid",
        action="append",
        metavar="KEY=V1,V2",
        help="params to vary (repeatable); default points.distribution=center,gaussian,uniform,beta,manual",
    )
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--out", default="study")
    p.add_argument("--set", "-S", action="append", help="extra params override for every run")
    p.add_argument("--preset", default="", help="a preset's values as overrides of every run (before --set)")
    p.add_argument(
        "--departures",
        default="",
        metavar="PRESET",
        help="instead of --grid: the defaults, the recipe preset, and each of its keys alone",
    )
    p.add_argument(
        "--ablation",
        action="store_true",
        help="instead of --grid: the point-only baseline, + score contrast, + feature contrast, + both",
    )
    p.set_defaults(fn=cmd_study)

    p = sub.add_parser("qualitative", help="draw two (or more) finished runs on the same test videos")
    p.add_argument(
        "runs",
        nargs="+",
        metavar="RUN",
        help="'workspace', a DVC experiment name or git revision, or with --study a run label",
    )
    p.add_argument("--study", default="", help="a study folder whose runs.json names the runs (e.g. study/ablation)")
    p.add_argument("--seed", type=int, default=None, help="with --study: the seed of each run (default: the first)")
    p.add_argument("--videos", nargs="*", help="test videos to draw (default: the first --count by id)")
    p.add_argument("--count", type=int, default=4)
    p.add_argument("--threshold", type=float, default=0.3, help="lowest detection score drawn (default 0.3)")
    p.add_argument("--out", default="study/qualitative")
    p.set_defaults(fn=cmd_qualitative)

    p = sub.add_parser("report", help="the analysis report: the paper's claims checked on this data")
    p.add_argument("--out", default="study/report", help="folder of analysis.md and its pictures")
    p.add_argument("--no-prefect", action="store_true", help="do not publish it as a Prefect artifact")
    p.set_defaults(fn=cmd_report)

    sub.add_parser("serve", help="serve Prefect deployments for the UI").set_defaults(fn=cmd_serve)

    p = sub.add_parser("code-deps", help="check (or --write) dvc.yaml's code and input deps")
    p.add_argument(
        "--write",
        action="store_true",
        help="rewrite dvc.yaml's deps: the import closures and the input files the params name",
    )
    p.set_defaults(fn=cmd_code_deps)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # No network here, and no usage data leaves the machine: Prefect's client-side telemetry
    # obeys DO_NOT_TRACK (its server's analytics are off in prefect.toml); the stages that
    # `repro` starts inherit it.
    os.environ.setdefault("DO_NOT_TRACK", "1")
    if args.verbose:
        os.environ[VERBOSE_ENV] = "1"  # the stages that `repro` starts inherit it
    configure_logging(verbose=verbose_requested())
    try:
        return args.fn(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
