"""The default run as a newcomer makes it: a fresh clone, an empty Prefect home, `make run`.

Times each stage (from its `[stage] done in ...` end line) and the whole run, and hashes the
artifacts that say whether two versions of the code compute the same thing: points.csv, LACP's
model.pt, and the metrics.json and predictions.json of both evaluations (and the self-trained
detector's model.pt). Two revisions compare by these hashes; each hash is also checked against
the clone's own dvc.lock where DVC records it.

Run by hand (a venv with the project installed saves the install; `make run` makes one otherwise):

    python -m bench.default_run [--rev HEAD] [--venv .venv] [--work-dir DIR] [--out F.json]

Prints one JSON object: the CPU, torch threads, seconds per stage and in all, the md5 of each
artifact, and whether `dvc status` is clean after the run.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from bench.machine import REPO, cpu_name, print_report, work_folder

# artifacts whose bytes say the computation is unchanged (paths relative to the clone)
HASHED = (
    "data/points/points.csv",
    "models/lacp/model.pt",
    "metrics/eval/metrics.json",
    "metrics/eval/predictions.json",
    "models/selftrain/model.pt",
    "metrics/eval_selftrain/metrics.json",
    "metrics/eval_selftrain/predictions.json",
)
END_LINE = re.compile(r"^\[(?P<stage>\w+)\] done in (?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>[\d.]+) ?s)?")


def stage_seconds(line: str) -> tuple[str, float] | None:
    """The stage and its seconds from a `[stage] done in 3m05s: ...` end line (None for other lines).

    Args:
        line: one line of the run's output.

    Returns:
        (stage, seconds), to the end line's precision (0.1 s under a minute, 1 s under an hour, else 1 min).
    """
    match = END_LINE.match(line)
    if match is None:
        return None
    h, m, s = (float(match.group(k) or 0) for k in ("h", "m", "s"))
    return match.group("stage"), h * 3600 + m * 60 + s


def md5_file(path: Path) -> str:
    """The md5 of a file's bytes (what dvc.lock records for a file output)."""
    digest = hashlib.md5()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def committed_md5(clone: Path) -> dict[str, str]:
    """The md5 the checked-out commit's dvc.lock records for each file output (what the run is
    compared with: the revision's own record, before the run rewrites dvc.lock)."""
    text = subprocess.run(
        ["git", "show", "HEAD:dvc.lock"], cwd=clone, capture_output=True, text=True, check=True
    ).stdout
    stages = yaml.safe_load(text)["stages"]
    return {out["path"]: out["md5"] for stage in stages.values() for out in stage.get("outs", [])}


def run(*, rev: str, venv: Path | None, work: Path) -> dict[str, Any]:
    """Clone `rev`, run `make run` with a fresh Prefect home, and report times and hashes.

    Args:
        rev: the revision of this checkout to clone.
        venv: an existing venv to link as the clone's `.venv` (None: `make run` creates one).
        work: the folder for the clone and the Prefect home.

    Returns:
        The report (see the module docstring).
    """
    clone, prefect_home = work / "clone", work / "prefect"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    subprocess.run(["git", "checkout", "--quiet", rev], cwd=clone, check=True)
    if venv is not None:
        (clone / ".venv").symlink_to(venv.resolve())
    prefect_home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PREFECT_HOME": str(prefect_home), "PYTHONPATH": str(clone)}
    env.pop("PREFECT_API_URL", None)
    stages: dict[str, float] = {}
    started = time.monotonic()
    # with a given venv, make must not reinstall the project into it (pointing it at this clone)
    command = ["make", "run"] + (["-o", ".venv/.installed"] if venv is not None else [])
    with subprocess.Popen(
        command, cwd=clone, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stderr.write(line)  # the run's terminal, as a person sees it
            found = stage_seconds(line.strip())
            if found is not None:
                stages[found[0]] = found[1]
    total = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"make run failed in {clone} (exit {proc.returncode}); its output is above")
    status = subprocess.run([str(clone / ".venv/bin/dvc"), "status", "--quiet"], cwd=clone, env=env)
    recorded = committed_md5(clone)
    hashes = {path: md5_file(clone / path) for path in HASHED}
    return {
        "cpu": cpu_name(),
        "torch_threads": int(
            subprocess.run(
                [str(clone / ".venv/bin/python"), "-c", "import torch; print(torch.get_num_threads())"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        ),
        "rev": subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True, text=True, check=True
        ).stdout.strip(),
        "make_run_s": round(total, 1),
        "stage_s": stages,
        "md5": hashes,
        "md5_equal_to_committed_dvc_lock": {p: recorded[p] == h for p, h in hashes.items() if p in recorded},
        "dvc_status_clean": status.returncode == 0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", default="HEAD", help="revision of this checkout to clone (default HEAD)")
    parser.add_argument("--venv", type=Path, default=None, help="an existing venv with the project installed")
    parser.add_argument("--work-dir", type=Path, default=None, help="folder for the clone (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    with work_folder(args.work_dir, keep=args.keep, prefix="default-run-") as work:
        report = run(rev=args.rev, venv=args.venv, work=work)
    print_report(report, args.out, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
