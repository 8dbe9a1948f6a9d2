"""The prepared GPU check: I3D extraction in bf16 and fp32, tvl1_torch, and LACP training on CUDA.

Two steps, so that it runs on a bare, offline GPU machine (the lent H200 has torch, h5py, numpy,
OpenCV without its contrib modules, matplotlib and pytest, but not pydantic, PyAV or DVCLive):

    python -m bench.gpu_check pack     # here, after `make run`: writes .gpu/ (~45 MB)
    bash bench/gpu_check.sh            # there (device tool: carry [".gpu"]): tests, then `run`

`pack` bundles, from the default run's artifacts: pydantic's wheels for Python 3.12; the RGB I3D
weights rounded to bf16 (half the bytes; every path below uses the same rounded weights, and
the flow stream is derived from them as in the weights stage); the first 64 decoded frames of
four test videos with their DIS flow; this CPU's fp32 features of those frames and its
tvl1_torch flow (OpenCV's default settings) of four frame pairs; the feature store, annotations
and points of the default run; this CPU's name and its seconds per training step (20 steps of the default recipe).

`run` (on the GPU machine) reports:
- extraction: per-snippet cosine of CUDA bf16 vs CUDA fp32 features and of each vs this CPU's
  fp32 features (mean and min over 16 snippets x 2 streams), and snippets/s of each CUDA path at
  224x224, batch 32 (the real-data setting);
- tvl1_torch: frame pairs/s on CUDA at 224x224, batch 32, and its end-point error against
  this CPU's tvl1_torch flow of the same pairs;
- training: the default recipe (params.yaml's train and evaluate sections) on the default run's
  features, once on CUDA and once on the GPU machine's CPU: seconds per step, mAP@0.1-0.7 and
  accuracy of each, next to this CPU's seconds per step and the committed metrics.

Prints one JSON object (and writes it to `--out`/gpu_check.json when given).
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.machine import cpu_name

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / ".gpu"
VIDEOS = 4  # test videos whose first FRAMES frames are extracted on every path
FRAMES = 64  # 4 snippets of 16
PAIRS = 4  # tvl1_torch pairs compared with this CPU
SPEED_BATCH = 32
WHEELS = ("pydantic", "pydantic-core", "annotated-types", "typing-inspection")


# ------------------------------------------------------------------------------------------ shared
def i3d_pair(rgb_state: dict[str, torch.Tensor]):
    """The RGB and flow I3D (flow stream initialised from RGB, as `stages.weights` does)."""
    from features.i3d import I3D
    from features.weights import flow_from_rgb

    rgb, flow = I3D(in_channels=3), I3D(in_channels=2)
    rgb.load_state_dict(rgb_state)
    flow.load_state_dict(flow_from_rgb(rgb_state))
    return rgb.eval(), flow.eval()


def extract(
    rgb_model, flow_model, frames: np.ndarray, flows: np.ndarray, *, store_attrs: dict, dtype: torch.dtype, device: str
) -> np.ndarray:
    """(VIDEOS * 4, 2048) features of the bundled frames, cut as the default run's store says
    (its attrs hold the extract settings: snippet, stride, frame_step, crop)."""
    from features.i3d import prepare_for_inference
    from features.snippets import iter_snippet_batches, preprocess_flow, preprocess_rgb

    crop = int(store_attrs["crop"])
    cut = dict(
        snippet=int(store_attrs["snippet"]),
        stride=int(store_attrs["stride"]),
        frame_step=int(store_attrs["frame_step"]),
        batch=8,
    )
    out = []
    for model, inputs, transform in (
        (rgb_model, frames, functools.partial(preprocess_rgb, short_side=None, crop=crop)),
        (flow_model, flows, functools.partial(preprocess_flow, crop=crop)),
    ):
        net = prepare_for_inference(model, dtype=dtype, device=device)
        per_video = [
            torch.cat([net.features(b.to(device)) for b in iter_snippet_batches(video, transform=transform, **cut)])
            for video in inputs
        ]  # each (4, 1024)
        out.append(torch.cat(per_video).float().cpu().numpy())
    return np.concatenate(out, axis=1)  # (VIDEOS * 4, 2048): rgb | flow


def tvl1_pairs(frames: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """PAIRS consecutive grey frame pairs (B, H, W) float32 from the bundled frames."""
    import cv2

    gray = [cv2.cvtColor(frames[i % VIDEOS, 8 * i], cv2.COLOR_RGB2GRAY) for i in range(PAIRS)]
    nxt = [cv2.cvtColor(frames[i % VIDEOS, 8 * i + 1], cv2.COLOR_RGB2GRAY) for i in range(PAIRS)]
    return torch.from_numpy(np.stack(gray)).float(), torch.from_numpy(np.stack(nxt)).float()


# -------------------------------------------------------------------------------------------- pack
def pack(out: Path) -> dict:
    """Bundle what `run` needs from this checkout's default run (see the module docstring)."""
    from features.flow import FlowSettings, compute_flow
    from features.store import FeatureStore
    from features.tvl1 import tvl1_flow
    from features.video import DecodedFrames
    from stages.artifacts import DecodeManifest

    data, models = REPO / "data", REPO / "models"
    needed = [
        data / "features.h5",
        data / "dataset" / "annotations.json",
        data / "points" / "points.csv",
        models / "i3d" / "rgb.pt",
        REPO / "metrics" / "eval" / "metrics.json",
    ]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        raise SystemExit(f"gpu_check pack: run `make run` first; missing {', '.join(missing)}")
    out.mkdir(parents=True, exist_ok=True)
    wheels = out / "wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in WHEELS]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            "3.12",
            "--implementation",
            "cp",
            "--platform",
            "manylinux_2_17_x86_64",
            "--platform",
            "manylinux2014_x86_64",
            "-d",
            str(wheels),
            *pins,
        ],
        check=True,
    )
    for name in ("features.h5",):
        shutil.copy2(data / name, out / name)
    (out / "dataset").mkdir(exist_ok=True)
    shutil.copy2(data / "dataset" / "annotations.json", out / "dataset" / "annotations.json")
    (out / "points").mkdir(exist_ok=True)
    shutil.copy2(data / "points" / "points.csv", out / "points" / "points.csv")
    shutil.copy2(REPO / "metrics" / "eval" / "metrics.json", out / "cpu_metrics.json")

    rgb_state = torch.load(models / "i3d" / "rgb.pt", map_location="cpu", weights_only=True)
    rounded = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in rgb_state.items()}
    torch.save(rounded, out / "rgb_bf16.pt")

    decoded = DecodeManifest.read(data / "decoded").videos
    annotations = json.loads((data / "dataset" / "annotations.json").read_text())["database"]
    videos = sorted(v for v in decoded if annotations[v]["subset"] == "test")[:VIDEOS]
    frames = []
    for vid in videos:
        with DecodedFrames(data / "decoded" / f"{vid}.mp4", num_frames=decoded[vid]["frames_out"]) as reader:
            frames.append(reader[0:FRAMES])  # (FRAMES, H, W, 3)
    frames = np.stack(frames)  # (VIDEOS, FRAMES, H, W, 3)
    import cv2

    dis = FlowSettings(method="dis")
    flows = np.stack(
        [compute_flow(np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in video]), dis) for video in frames]
    )  # (VIDEOS, FRAMES, H, W, 2) uint8
    rgb_model, flow_model = i3d_pair({k: v.float() if v.is_floating_point() else v for k, v in rounded.items()})
    with FeatureStore(out / "features.h5") as store:
        attrs = store.attrs
    with torch.no_grad():
        cpu_features = extract(
            rgb_model, flow_model, frames, flows, store_attrs=attrs, dtype=torch.float32, device="cpu"
        )
        prev, nxt = tvl1_pairs(frames)
        cpu_tvl1 = tvl1_flow(prev, nxt).numpy()  # (PAIRS, H, W, 2), OpenCV's default settings
    np.savez_compressed(
        out / "inputs.npz",
        frames=frames,
        flows=flows,
        cpu_features=cpu_features,
        cpu_tvl1=cpu_tvl1,
        videos=np.array(videos),
    )
    seconds_per_step = train_and_evaluate(out, device="cpu", steps=20, evaluate=False)["seconds_per_step"]
    info = {
        "cpu": cpu_name(),
        "torch_threads": torch.get_num_threads(),
        "seconds_per_step": seconds_per_step,
        "videos": videos,
    }
    (out / "pack.json").write_text(json.dumps(info, indent=1))
    return {**info, "bundle_mib": round(sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20, 1)}


# --------------------------------------------------------------------------------------------- run
class _MemoryLog:
    """Stand-in for `stages.training_log.TrainingLog` where DVCLive is absent (the lent GPU machine)."""

    def __init__(self, log_dir: Path, **_terms) -> None:
        self.rows: list[dict[str, float]] = []

    def log(self, row: dict[str, float]) -> None:
        self.rows.append(row)

    def finish(self, rows, *, summary=None) -> None:
        pass


def train_and_evaluate(bundle: Path, *, device: str, steps: int | None = None, evaluate: bool = True) -> dict:
    """The train and evaluate stages with params.yaml's sections on the bundled default run."""
    import stages.train
    from detector.config import InferenceConfig
    from lacp.proposals import DetectionConfig
    from stages import evaluate as evaluate_stage

    if importlib.util.find_spec("dvclive") is None:
        stages.train.TrainingLog = _MemoryLog
    # the sections' defaults, which equal params.yaml's (tests/test_pipeline_params.py); loading
    # params.yaml would import every stage, PyAV's among them
    train_params = stages.train.TrainParams(device=device, **({"steps": steps} if steps else {}))
    detection = DetectionConfig()  # the detection section's defaults (LACP's keys)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as work:
        work = Path(work)
        summary = stages.train.run(
            train_params,
            detection=detection,
            dataset_dir=bundle / "dataset",
            features=bundle / "features.h5",
            points_dir=bundle / "points",
            model_dir=work / "model",
            log_dir=work / "log",
            pseudo_labels_path=work / "pseudo_labels.h5",
        )
        out = {"seconds_per_step": summary["seconds_per_step"], "steps": summary["steps"]}
        if evaluate:
            eval_params = evaluate_stage.EvaluateParams(device=device)
            metrics = evaluate_stage.run(
                eval_params,
                detection=detection,
                inference=InferenceConfig(),
                dataset_dir=bundle / "dataset",
                features=bundle / "features.h5",
                model_dir=work / "model",
                out_dir=work / "eval",
            )
            out |= {"map_avg_0.1_0.7": metrics["mAP@0.1-0.7"], "accuracy": metrics["accuracy"]}
    return out


def _say(line: str) -> None:
    """A progress line on stderr (stdout carries the JSON)."""
    print(f"[gpu_check] {line}", file=sys.stderr, flush=True)


def cosines(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Per-snippet cosine of the rgb and flow halves; mean and min."""
    values = []
    for half in (slice(0, 1024), slice(1024, 2048)):
        x, y = a[:, half], b[:, half]
        values.append((x * y).sum(1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)))
    values = np.concatenate(values)
    return {"mean": round(float(values.mean()), 6), "min": round(float(values.min()), 6)}


def speed(step, *, device: str, repeats: int = 5) -> float:
    """Best seconds of `step()` after one warm-up, with CUDA synchronised."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    step()
    sync()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        sync()
        best = min(best, time.perf_counter() - started)
    return best


def run(
    bundle: Path,
    *,
    device: str = "cuda",
    steps: int | None = None,
    speed_batch: int = SPEED_BATCH,
    videos: int = VIDEOS,
    repeats: int = 5,
) -> dict:
    """The check on `device` ("cpu": a dry run of this code without a GPU, with `steps`,
    `speed_batch`, `videos` and `repeats` made small; its figures mean nothing)."""
    from features.i3d import prepare_for_inference
    from features.store import FeatureStore
    from features.tvl1 import tvl1_flow

    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check run: torch sees no CUDA device (--device cpu for a dry run)")
    inputs = np.load(bundle / "inputs.npz")
    packed = json.loads((bundle / "pack.json").read_text())
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else "none (dry run on the CPU)"
    report: dict = {"gpu": gpu, "torch": torch.__version__, "host_cpu": cpu_name(), "reference_cpu": packed["cpu"]}

    # 1. extraction: bf16 and fp32 on CUDA against this CPU's fp32 features
    state = torch.load(bundle / "rgb_bf16.pt", map_location="cpu", weights_only=True)
    rgb_model, flow_model = i3d_pair({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    frames, flows = inputs["frames"][:videos], inputs["flows"][:videos]
    reference = inputs["cpu_features"][: videos * FRAMES // 16]  # (videos * 4, 2048)
    _say("1/3 extraction: CUDA fp32 and bf16 against this CPU's fp32 features")
    with FeatureStore(bundle / "features.h5") as store:
        attrs = store.attrs
    with torch.no_grad():
        fp32 = extract(rgb_model, flow_model, frames, flows, store_attrs=attrs, dtype=torch.float32, device=device)
        bf16 = extract(rgb_model, flow_model, frames, flows, store_attrs=attrs, dtype=torch.bfloat16, device=device)
        report["extract_cosine_bf16_vs_fp32"] = cosines(bf16, fp32)
        report["extract_cosine_fp32_vs_cpu"] = cosines(fp32, reference)
        report["extract_cosine_bf16_vs_cpu"] = cosines(bf16, reference)
        x = torch.rand(speed_batch, 3, 16, 224, 224, device=device) * 2 - 1  # (B, C, T, H, W)
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            model = prepare_for_inference(rgb_model, dtype=dtype, device=device)
            seconds = speed(lambda model=model: model.features(x), device=device, repeats=repeats)
            report[f"extract_{name}_snippets_per_s_224"] = round(speed_batch / seconds, 1)

    # 2. tvl1_torch on CUDA: speed at 224x224 and agreement with this CPU's result
    _say("2/3 tvl1_torch: speed and agreement with this CPU")
    prev, nxt = tvl1_pairs(inputs["frames"])
    flow_gpu = tvl1_flow(prev.to(device), nxt.to(device)).cpu().numpy()  # (PAIRS, H, W, 2)
    epe = np.linalg.norm(flow_gpu - inputs["cpu_tvl1"], axis=-1)
    report["tvl1_cuda_vs_cpu_epe_px"] = round(float(epe.mean()), 5)
    report["tvl1_cuda_vs_cpu_within_0.5px"] = round(float((epe <= 0.5).mean()), 5)
    big = torch.nn.functional.interpolate(prev[:1, None], size=(224, 224), mode="bilinear")[:, 0]
    big_next = torch.nn.functional.interpolate(nxt[:1, None], size=(224, 224), mode="bilinear")[:, 0]
    a = big.repeat(speed_batch, 1, 1).to(device)  # (B, 224, 224): one pair repeated, each converging alike
    b = big_next.repeat(speed_batch, 1, 1).to(device)
    seconds = speed(lambda: tvl1_flow(a, b), device=device, repeats=min(2, repeats))
    report["tvl1_cuda_pairs_per_s_224"] = round(speed_batch / seconds, 1)

    # 3. training: the default recipe on CUDA and on this machine's CPU
    _say("3/3 training: the default recipe on CUDA, then on this machine's CPU")
    for name, where in (("cuda", device), ("cpu", "cpu")):
        for key, value in train_and_evaluate(bundle, device=where, steps=steps).items():
            report[f"train_{name}_{key}"] = value
    committed = json.loads((bundle / "cpu_metrics.json").read_text())
    report["reference_cpu_seconds_per_step"] = packed["seconds_per_step"]
    report["reference_cpu_map_avg_0.1_0.7"] = committed["mAP@0.1-0.7"]
    report["train_cuda_speedup_vs_reference_cpu"] = round(
        packed["seconds_per_step"] / report["train_cuda_seconds_per_step"], 2
    )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("pack", "run"))
    parser.add_argument("--bundle", type=Path, default=BUNDLE, help="the bundle folder (default .gpu/)")
    parser.add_argument("--out", type=Path, help="also write gpu_check.json into this folder")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="run: on the CPU with 4 training steps and batch 2, to test this script without a GPU",
    )
    args = parser.parse_args()
    if args.command == "pack":
        report = pack(args.bundle)
    elif args.dry_run:
        report = run(args.bundle, device="cpu", steps=4, speed_batch=2, videos=1, repeats=1)
    else:
        report = run(args.bundle)
    text = json.dumps(report)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_check.json").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
