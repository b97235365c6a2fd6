"""A streaming safetensors writer (needs torch).

Written here rather than with ``safetensors.torch.save_file`` because that
function first copies every tensor into Python bytes (peak memory twice the
model); this writer streams one tensor at a time from its (memory-mapped)
storage into the file, keeping peak memory near one shard. The output is the
standard format (8-byte little-endian header length, JSON header padded with
spaces to 8 bytes, then the data) and is read back with the real
``safetensors`` library for the proof. Writes are atomic: a temp file in the
destination directory, fsync, rename; a failure leaves nothing behind.
"""

from __future__ import annotations

import itertools
import json
import os
import struct
import tempfile
from collections.abc import Iterable
from pathlib import Path

import torch

from weightguard.convert.loader import CHUNK, release_pages
from weightguard.convert.tensors import DTYPES
from weightguard.errors import ConversionError
from weightguard.sources.interface import ByteSource


def _header(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> tuple[bytes, list[str]]:
    entries: dict[str, object] = {"__metadata__": metadata}
    names = sorted(tensors)
    offset = 0
    for name in names:
        t = tensors[name]
        nbytes = t.numel() * t.element_size()
        entries[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(entries, separators=(",", ":"), ensure_ascii=False).encode()
    raw += b" " * (-len(raw) % 8)
    return raw, names


def _as_bytes(t: torch.Tensor) -> memoryview:
    flat = t.contiguous().reshape(-1)
    if flat.numel() == 0:
        return memoryview(b"")
    return flat.view(torch.uint8).numpy().data


def write_safetensors(
    path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str], *, fsync: bool = True
) -> None:
    """Write ``tensors`` to ``path`` atomically.

    Args:
        path: the destination; a temp file beside it is renamed over it once complete.
        tensors: what to write (views are written as contiguous copies, one tensor at a time).
        metadata: the ``__metadata__`` strings.
        fsync: flush to disk before the rename. A caller that renames the file again later
            (the converter's staging folder) may pass False and fsync it before that rename.

    Raises:
        ConversionError: the destination cannot be written.
    """
    header, names = _header(tensors, metadata)
    # A generator: each tensor's bytes are produced only when they are written.
    head: list[bytes | memoryview] = [struct.pack("<Q", len(header)), header]
    chunks = itertools.chain(head, (_as_bytes(tensors[n]) for n in names))
    write_chunks(path, chunks, fsync=fsync)


def write_chunks(path: Path, chunks: Iterable[bytes | memoryview], *, fsync: bool = True) -> None:
    """Write ``chunks`` to ``path`` atomically: a temp file beside it, fsync, rename; nothing partial.

    The file gets the usual ``0666 & ~umask`` mode (``mkstemp`` alone would leave it 0600).

    Raises:
        ConversionError: the destination cannot be written.
    """
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise ConversionError(f"cannot write into {path.parent}: {exc.strerror or exc}") from exc
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
    except OSError as exc:
        raise ConversionError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        Path(tmp).unlink(missing_ok=True)


def copy_file(source: ByteSource, dest: Path) -> None:
    """Copy a file unchanged into the staging folder (never over an existing file).

    Raises:
        ConversionError: the source ends early or the destination cannot be written.
    """
    view_of = getattr(source, "view", None)
    view = view_of() if callable(view_of) else None
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with dest.open("xb") as fh:
            for offset in range(0, source.size, CHUNK):
                n = min(CHUNK, source.size - offset)
                chunk = view[offset : offset + n] if isinstance(view, memoryview) else source.read_at(offset, n)
                if len(chunk) != n:
                    raise ConversionError(f"{dest.name}: the source ended early while copying")
                fh.write(chunk)
                if isinstance(view, memoryview):
                    release_pages(view, offset, n)
    except OSError as exc:
        raise ConversionError(f"cannot copy into {dest}: {exc.strerror or exc}") from exc
