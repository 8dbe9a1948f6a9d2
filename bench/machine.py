"""What the benchmarks say about the machine and the process: CPU name, peak memory."""

from __future__ import annotations

import contextlib
import platform
import resource
from pathlib import Path


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), for the JSON of every benchmark."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


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
