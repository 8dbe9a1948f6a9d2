"""What every benchmark shares: the machine and the process it reports on (CPU name, peak
memory), and the runs of one measurement in a fresh child process whose peak is its own
(`measure` in the child; `work_folder`, `run_child`, `add_memory` and `add_peak_ratio` in the
parent)."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]  # the checkout the benchmarks measure
FLAT_RATIO = 1.3  # target: peak memory at the longest length over the shortest at most this (memory flat in length)


def cpu_name() -> str:
    """The CPU, for the JSON of every benchmark: model name, cores and the vector units that
    decide torch's speed, e.g. "AMD EPYC (2 cores, AVX2, no bf16)" (flags from /proc/cpuinfo
    on Linux; elsewhere the platform's processor string and the core count)."""
    model, flags = platform.processor() or "unknown", set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    units = [name for flag, name in (("avx512f", "AVX-512"), ("avx2", "AVX2")) if flag in flags][:1]
    units.append("AMX bf16" if "amx_bf16" in flags else "bf16" if "avx512_bf16" in flags else "no bf16")
    return f"{model} ({os.cpu_count()} cores, {', '.join(units)})"


def peak_mib() -> float:
    """Peak resident memory of this process so far (MiB).

    VmHWM from /proc on Linux: ru_maxrss of a child started by vfork can inherit the parent's
    high-water mark; ru_maxrss elsewhere.
    """
    with contextlib.suppress(OSError):
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(work: Callable[[], Mapping[str, Any] | None]) -> dict[str, Any]:
    """Run a child's measured work and report it: call it once the imports are done.

    Args:
        work: the work; what it returns is added to the report.

    Returns:
        `seconds` (the work's), `peak_mib` (the process's peak after it), `import_peak_mib` (the
        peak before it: what the imports took), and the work's own keys.
    """
    imported = peak_mib()
    started = time.perf_counter()
    extra = work() or {}
    return {"seconds": time.perf_counter() - started, "peak_mib": peak_mib(), "import_peak_mib": imported, **extra}


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment for a child that imports this checkout, Prefect's analytics off.

    Args:
        extra: more variables (e.g. OMP_NUM_THREADS).

    Returns:
        The environment.
    """
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        **extra,
    }


def run_child(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], what: str) -> dict[str, Any]:
    """Run a benchmark's child process and read the JSON object it prints last on stdout.

    Args:
        argv: its command line.
        cwd: its working folder.
        env: its environment (`child_env`).
        what: what it measures, for the error.

    Returns:
        The child's report (`measure`'s).

    Raises:
        RuntimeError: the child failed; the message ends with its stderr's last 4000 characters.
    """
    done = subprocess.run(list(argv), cwd=cwd, env=dict(env), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"bench child {what} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def add_memory(report: dict[str, Any], got: Mapping[str, Any], *, key: str) -> None:
    """Add a child's `peak_mib` and `growth_mib` (its peak minus its peak after the imports) to a report.

    Args:
        report: the benchmark's report.
        got: the child's report (`measure`'s).
        key: the report keys, with `{}` where "peak_mib" / "growth_mib" go (e.g. "decode_{}_20min").
    """
    report[key.format("peak_mib")] = round(got["peak_mib"], 1)
    report[key.format("growth_mib")] = round(got["peak_mib"] - got["import_peak_mib"], 1)


def add_peak_ratio(report: dict[str, Any], *, peak: str, ratio: str, sizes: Sequence[int]) -> bool:
    """Add flatness to a report: `<ratio>_<biggest>_to_<smallest>`, the peak of the biggest run
    over the smallest's, to three decimals.

    Args:
        report: the benchmark's report, holding the peaks.
        peak: the peak's report key, with `{}` where the run's size goes (e.g. "decode_peak_mib_{}min").
        ratio: the ratio key's start (e.g. "decode_ratio").
        sizes: the runs' sizes (video minutes, dataset videos).

    Returns:
        Whether the ratio is within `FLAT_RATIO` (memory flat in the size).
    """
    small, big = min(sizes), max(sizes)
    key = f"{ratio}_{big}_to_{small}"
    report[key] = round(report[peak.format(big)] / report[peak.format(small)], 3)
    return report[key] <= FLAT_RATIO


@contextlib.contextmanager
def work_folder(path: Path | None, *, keep: bool, prefix: str) -> Iterator[Path]:
    """The folder a benchmark's videos and outputs go to, removed at the end when it is a temporary one.

    Args:
        path: the caller's `--work-dir` (created, never removed), or None for a temporary folder.
        keep: keep the temporary folder.
        prefix: the temporary folder's name prefix.

    Yields:
        The folder.
    """
    root = path or Path(tempfile.mkdtemp(prefix=prefix))
    root.mkdir(parents=True, exist_ok=True)
    try:
        yield root
    finally:
        if not keep and path is None:
            shutil.rmtree(root, ignore_errors=True)


def print_report(report: Mapping[str, Any], out: Path | None = None, *, indent: int | None = 1) -> None:
    """Print a benchmark's JSON object and, with `out`, also write it there (folders made)."""
    text = json.dumps(report, indent=indent, default=str)
    print(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
