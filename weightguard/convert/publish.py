"""Staging and publishing the converted model: all or nothing where the file system allows it.

A missing or empty output directory is built beside it, under its own name,
and published with one ``rename`` (POSIX replaces an empty directory
atomically): readers see no output or the whole output. A directory that
already holds other files gets each new file renamed in whole; no existing
file is ever overwritten. Not handled here: producing the files.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from weightguard.errors import ConversionError


def make_staging(out_dir: Path, produced: Sequence[str]) -> tuple[Path, Path, bool]:
    """Return ``(folder to remove at the end, staging folder, whether out_dir is published whole)``.

    A missing or empty output directory is staged beside it under its own name and published
    with one rename (all or nothing); a directory that already holds other files is staged
    inside it and each file is renamed in (each file whole, never overwriting).
    """
    try:
        fresh = not out_dir.exists() or (out_dir.is_dir() and not any(out_dir.iterdir()))
        if fresh:
            out_dir.parent.mkdir(parents=True, exist_ok=True)
            holder = Path(tempfile.mkdtemp(prefix=".weightguard-staging-", dir=out_dir.parent))
            staging = holder / out_dir.name
            staging.mkdir()
            return holder, staging, True
        clashes = [p for p in produced if (out_dir / p).exists()]
        if clashes:
            raise ConversionError(f"{out_dir} already holds {clashes[:5]}", hint="choose an empty output directory")
        holder = Path(tempfile.mkdtemp(prefix=".weightguard-staging-", dir=out_dir))
    except OSError as exc:
        raise ConversionError(f"cannot use the output directory {out_dir}: {exc.strerror or exc}") from exc
    return holder, holder, False


def publish_folder(staging: Path, out_dir: Path) -> None:
    """Rename the staged folder to ``out_dir`` (missing or empty) in one step.

    Raises:
        ConversionError: the rename failed (``out_dir`` appeared or filled meanwhile).
    """
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp's 0700 would otherwise become the output's mode
    try:
        staging.replace(out_dir)  # POSIX rename(2) also replaces an empty directory, atomically
    except OSError as exc:
        raise ConversionError(f"cannot publish the output into {out_dir}: {exc.strerror or exc}") from exc
    sync_directory(out_dir.parent)


def publish_files(staging: Path, out_dir: Path) -> None:
    """Rename each staged file into ``out_dir`` (whose clashes were checked when staging began)."""
    for item in sorted(p for p in staging.rglob("*") if p.is_file()):
        target = out_dir / item.relative_to(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        item.replace(target)
    sync_directory(out_dir)


def sync_directory(path: Path) -> None:
    """Flush a directory's entries so that the renames into it survive a crash."""
    # The renames are durable once the directory itself is flushed (POSIX; a no-op where unsupported).
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on directories; the files themselves are synced
    finally:
        os.close(fd)
