"""Atomic writes, JSON files and file hashes: the one implementation the project uses.

Every artifact is written under a temporary name beside its target (`.tmp-<stem>-*`) and
renamed into place only once complete, so a crash or kill leaves at most a temporary file,
never a half-written target that a later stage reads. `remove_stale_tmp` clears those.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "TMP_PREFIX",
    "atomic_path",
    "read_json",
    "remove_stale_tmp",
    "quick_fingerprint",
    "sha256_file",
    "write_bytes_atomic",
    "write_json",
]

TMP_PREFIX = ".tmp-"  # temporary files beside their targets start with this


@contextmanager
def atomic_path(path: str | os.PathLike[str], *, fsync: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary path beside `path`; rename it onto `path` if the block succeeds.

    The temporary file exists (empty) when the block starts; writers may overwrite or
    replace it. It gets the permissions a plain `open` would give (0666 minus the umask),
    not `mkstemp`'s 0600. On an exception it is removed and `path` is left untouched.

    Args:
        path: the target; its folder is created when missing.
        fsync: flush the finished file to disk before the rename (for large binary
            artifacts, so a power cut cannot expose a file with a hole).

    Yields:
        The temporary path to write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A fresh name created with O_EXCL and mode 0666, so the kernel applies the umask: reading the
    # umask (os.umask sets it) would race with other threads creating files at the same time.
    while True:
        tmp = path.with_name(f"{TMP_PREFIX}{path.stem}-{secrets.token_hex(6)}{path.suffix}")
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            break
        except FileExistsError:
            continue
    try:
        yield tmp
        if fsync:
            handle = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(handle)
            finally:
                os.close(handle)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` atomically (see `atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | os.PathLike[str], obj: Any, *, indent: int = 2, sort_keys: bool = True) -> None:
    """Write `obj` as JSON atomically, with a trailing newline.

    Args:
        path: the target file.
        obj: a JSON-serialisable object.
        indent: spaces per level.
        sort_keys: sort object keys (False keeps insertion order).
    """
    write_bytes_atomic(path, (json.dumps(obj, indent=indent, sort_keys=sort_keys) + "\n").encode())


def read_json(path: str | os.PathLike[str], *, what: str) -> Any:
    """Read a JSON file, naming `what` it is when it is missing or malformed.

    Raises:
        FileNotFoundError: the file does not exist (names it and `what`).
        ValueError: it is not valid JSON (names the file, the line and column).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path} (run the stage that writes it first)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{what} {path} is not valid JSON: {err}") from err


def remove_stale_tmp(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files that interrupted writers left in `folder`.

    Call it only when no writer is running on that folder (e.g. at a stage's start).

    Returns:
        The removed paths, sorted.
    """
    removed = sorted(p for p in Path(folder).glob(f"{TMP_PREFIX}*") if p.is_file())
    for p in removed:
        p.unlink(missing_ok=True)
    return removed


def quick_fingerprint(path: str | os.PathLike[str], *, span: int = 1 << 20) -> str:
    """A cheap content identity of a large file: its size and the SHA-256 of its first and last
    `span` bytes. It ignores mtime (a clone or a copy changes it) and costs two reads of 1 MiB
    whatever the size, so a 100 GB video folder is fingerprinted in seconds; a re-encoded or
    replaced video changes its container header or trailer and so its fingerprint.
    """
    size = os.stat(path).st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as handle:
        digest.update(handle.read(span))
        if size > span:
            handle.seek(max(span, size - span))
            digest.update(handle.read(span))
    return f"{size}:{digest.hexdigest()}"


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's bytes as lowercase hex, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
