"""Atomic writes, JSON files and file hashes: the one implementation the project uses.

Every artifact is written under a temporary name beside its target
(`.tmp-<stem>-<12 hex digits><suffix>`) and renamed into place only once complete, so a crash or
kill leaves at most a temporary file, never a half-written target that a later stage reads.
`remove_stale_tmp` clears those of the targets a caller owns, and no one else's.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import secrets
from collections.abc import Iterable, Iterator
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
_TOKEN_BYTES = 6  # random bytes in a temporary name (12 hex digits)


def _tmp_name(target: Path) -> str:
    """A fresh temporary name for `target`: `.tmp-<stem>-<12 hex digits><suffix>`."""
    return f"{TMP_PREFIX}{target.stem}-{secrets.token_hex(_TOKEN_BYTES)}{target.suffix}"


def _tmp_pattern(target_name: str) -> re.Pattern[str]:
    """The temporary names `_tmp_name` gives a target named `target_name`; a stem of `*`
    (e.g. `*.mp4`) stands for every target with that suffix."""
    name = Path(target_name)
    stem = ".+" if name.stem == "*" else re.escape(name.stem)
    return re.compile(f"{re.escape(TMP_PREFIX)}{stem}-[0-9a-f]{{{2 * _TOKEN_BYTES}}}{re.escape(name.suffix)}")


@contextmanager
def atomic_path(path: str | os.PathLike[str], *, fsync: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary path beside `path`; rename it onto `path` if the block succeeds.

    The temporary file exists (empty) when the block starts; writers may overwrite or
    replace it. It gets the permissions a plain `open` would give (0666 minus the umask),
    not `mkstemp`'s 0600. On an exception it is removed and `path` is left untouched.

    Args:
        path: the target; its folder is created when missing.
        fsync: flush the finished file to disk before the rename: for every file that a
            sidecar, manifest or record written after it marks finished, so a power cut cannot
            leave an empty or holed file that the record vouches for.

    Yields:
        The temporary path to write.

    Raises:
        OSError: a write error (full disk, file size limit, read-only or forbidden folder, I/O)
            restated to name `path` (`_naming_target`); `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A fresh name created with O_EXCL and mode 0666, so the kernel applies the umask: reading the
    # umask (os.umask sets it) would race with other threads creating files at the same time.
    while True:
        tmp = path.with_name(_tmp_name(path))
        try:
            with _naming_target(path, tmp):
                os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            break
        except FileExistsError:
            continue
    try:
        with _naming_target(path, tmp):
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


# Errors of writing itself (full disk or quota, file size limit, read-only or forbidden folder, I/O)
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO})


@contextmanager
def _naming_target(path: Path, tmp: Path) -> Iterator[None]:
    """Restate a write error on `tmp` (or on no named file: a failed `write()` names none) as
    `OSError(errno, strerror, path)`, so that the message names the file being written, not its
    temporary name or nothing; any other error (e.g. reading an input inside the block) passes
    unchanged. The errno picks the subclass as `OSError` does (EACCES: `PermissionError`); the
    original error is the `__cause__`.
    """
    try:
        yield
    except OSError as err:
        if err.errno not in _WRITE_ERRNOS or (err.filename is not None and str(err.filename) != str(tmp)):
            raise
        raise OSError(err.errno, os.strerror(err.errno), str(path)) from err


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes, *, fsync: bool = False) -> None:
    """Write `data` to `path` atomically (see `atomic_path`; `fsync` as there)."""
    with atomic_path(path, fsync=fsync) as tmp:
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


def remove_stale_tmp(folder: str | os.PathLike[str], *, targets: Iterable[str]) -> list[Path]:
    """Delete the temporary files that interrupted writes of `targets` left in `folder`.

    Only the names `atomic_path` gives those targets are removed, so a stage sweeps its own
    leftovers and never another stage's file in flight beside them. Call it only when none of
    the caller's own writers of those targets is running (e.g. at a stage's start or end).

    Args:
        folder: the folder holding the targets.
        targets: file names of the caller's outputs in `folder` (`features.h5`); a stem of `*`
            (`*.mp4`) stands for every output with that suffix, for a stage that owns the folder.

    Returns:
        The removed paths, sorted.
    """
    patterns = [_tmp_pattern(name) for name in targets]
    removed = sorted(
        p
        for p in Path(folder).glob(f"{TMP_PREFIX}*")
        if p.is_file() and any(pattern.fullmatch(p.name) for pattern in patterns)
    )
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
