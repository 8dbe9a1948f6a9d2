"""What the benchmarks say about the machine and the process: CPU name, peak memory."""

from __future__ import annotations

import contextlib
import os
import platform
import resource
from pathlib import Path


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
