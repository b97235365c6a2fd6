"""Atomic file writes: temp file in the destination directory, fsync, rename.

A crash or error leaves the destination untouched (either the old file or
nothing), never a partial file; the temp file is always removed. The file
gets the usual ``0666 & ~umask`` mode, as any other written file would
(``mkstemp`` alone would leave it 0600).
"""

from __future__ import annotations

import os
import tempfile
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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        Path(tmp).chmod(0o666 & ~umask)
        Path(tmp).replace(path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` atomically.

    Raises:
        UsageError: the destination cannot be written.
    """
    try:
        replace_atomically(path, [data.encode() if isinstance(data, str) else data])
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from exc
