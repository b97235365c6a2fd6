"""Atomic file writes: temp file in the destination directory, fsync, rename.

A crash or error leaves the destination untouched (either the old file or
nothing), never a partial file; the temp file is always removed.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from weightguard.errors import UsageError


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` atomically.

    Raises:
        UsageError: the destination directory cannot be written.
    """
    directory = path.parent if str(path.parent) else Path()
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).replace(path)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        Path(tmp).unlink(missing_ok=True)
