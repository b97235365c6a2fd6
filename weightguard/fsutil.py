"""Atomic file writes: temp file in the destination directory, fsync, rename.

A crash or error leaves the destination untouched (either the old file or
nothing), never a partial file; the temp file is always removed. The file
gets the usual ``0666 & ~umask`` mode, as any other written file would.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from weightguard.errors import UsageError


def replace_atomically(path: Path, chunks: Iterable[bytes | memoryview], *, fsync: bool = True) -> None:
    """Write ``chunks`` to a temp file beside ``path``, then rename it over ``path``.

    ``fsync``: flush to disk before the rename. A caller that renames the file again later
    (the converter's staging folder) may pass False and flush it before that rename.

    Raises:
        OSError: the temp file cannot be created or written, or the rename failed.
    """
    directory = path.parent if str(path.parent) else Path()
    fd, tmp = _create_beside(directory, path.name)
    try:
        with os.fdopen(fd, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _create_beside(directory: Path, name: str) -> tuple[int, Path]:
    """Create a new, uniquely named temp file in ``directory`` with the usual mode.

    Not ``mkstemp``: its 0600 would need a chmod to the umask's mode, and reading the umask
    means setting it, which races with files other threads create meanwhile.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(99):
        tmp = directory / f".{name}.{secrets.token_hex(4)}.tmp"  # as long as mkstemp's names
        with contextlib.suppress(FileExistsError):  # a 32-bit name taken: draw another
            return os.open(tmp, flags, 0o666), tmp
    tmp = directory / f".{name}.{secrets.token_hex(4)}.tmp"
    return os.open(tmp, flags, 0o666), tmp  # the last draw: its error is the caller's


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` atomically.

    Raises:
        UsageError: the destination cannot be written.
    """
    try:
        replace_atomically(path, [data.encode() if isinstance(data, str) else data])
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from exc
