"""One exclusive lock per repository, so that two stage commands never write its artifacts at once.

`repo_lock(root, command=...)` holds an `fcntl.flock` on `<root>/.pipeline.lock` (git- and
DVC-ignored) while its block runs, and records in that file who holds it (`Holder`: pid, command,
start time, host). A second caller either waits, told once who holds it, or with `wait=False`
gets a `LockHeldError` naming the holder. The kernel drops a flock when its holder exits, however
it exits (a kill included), so a crashed stage never leaves the repository locked; the file
itself stays (removing it would let a waiter lock the old file while a newcomer locks a new one).

The holder record is written in place, not through `core.files.atomic_path`: the lock belongs
to the file's inode, and replacing the file would hand the next caller a different, unlocked one.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["LOCK_FILE", "Holder", "LockHeldError", "repo_lock"]

LOCK_FILE = ".pipeline.lock"
_RECORD_WAIT_S = 1.0  # how long to wait for a holder that has just locked to write its record


class LockHeldError(RuntimeError):
    """Another process holds the repository's lock, and the caller asked not to wait."""


@dataclass(frozen=True)
class Holder:
    """Who holds the lock.

    Attributes:
        pid: its process id.
        command: what it runs (`python -m pipeline run train`).
        since: when it took the lock (ISO 8601, local time with its offset).
        host: the machine it runs on.
    """

    pid: int
    command: str
    since: str
    host: str

    def describe(self) -> str:
        """`pid 123 (python -m pipeline run train) since 2025-01-01T10:00:00+01:00 on host x`."""
        return f"pid {self.pid} ({self.command}) since {self.since} on host {self.host}"


def _read_holder(fd: int) -> Holder | None:
    """The holder recorded in the open lock file; None when none is readable in `_RECORD_WAIT_S`
    (a holder between taking the lock and writing its record, or one from an older version)."""
    deadline = time.monotonic() + _RECORD_WAIT_S
    while True:
        try:
            return Holder(**json.loads(os.pread(fd, 1 << 16, 0)))
        except (ValueError, TypeError):  # empty, half-written or foreign content
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)


def _write_holder(fd: int, holder: Holder | None) -> None:
    """Replace the lock file's content by `holder`'s record (empty for None)."""
    os.ftruncate(fd, 0)
    if holder is not None:
        os.pwrite(fd, (json.dumps(asdict(holder)) + "\n").encode(), 0)


@contextmanager
def repo_lock(
    root: str | os.PathLike[str],
    *,
    command: str,
    wait: bool = True,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[Holder]:
    """Hold the exclusive lock of the repository at `root` while the block runs.

    Args:
        root: the repository root (the folder of the params file); the lock file goes there.
        command: what the caller runs, recorded for the others to read.
        wait: when another process holds the lock, wait for it (True) or raise (False).
        on_wait: called once with a line naming the lock file and its holder before waiting.

    Yields:
        This process's `Holder` record.

    Raises:
        LockHeldError: `wait` is False and another process holds the lock; names the lock file,
            the holder's pid, command and start, and what to do.
    """
    path = Path(root) / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)  # not inherited by child processes (PEP 446)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            held = f"{path} is held by " + (holder.describe() if holder else "another process (no holder record)")
            if not wait:
                raise LockHeldError(
                    f"{held}: another stage command is running in this repository; wait for "
                    "it to end (or stop it), or run without --no-wait to wait for it"
                ) from None
            if on_wait is not None:
                on_wait(f"{held}: waiting for it to end")
            fcntl.flock(fd, fcntl.LOCK_EX)
        me = Holder(
            pid=os.getpid(),
            command=command,
            since=datetime.now(UTC).astimezone().isoformat(timespec="seconds"),
            host=socket.gethostname(),
        )
        _write_holder(fd, me)
        try:
            yield me
        finally:
            _write_holder(fd, None)
    finally:
        os.close(fd)  # drops the flock
