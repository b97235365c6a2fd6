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
import struct
from collections.abc import Iterable
from pathlib import Path

import torch

from weightguard.convert.loader import source_chunks
from weightguard.convert.tensors import DTYPES
from weightguard.errors import ConversionError
from weightguard.fsutil import replace_atomically
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
    """Write ``chunks`` to ``path`` atomically (see :func:`weightguard.fsutil.replace_atomically`).

    Raises:
        ConversionError: the destination cannot be written.
    """
    try:
        replace_atomically(path, chunks, fsync=fsync)
    except OSError as exc:
        raise ConversionError(f"cannot write {path}: {exc.strerror or exc}") from exc


def copy_file(source: ByteSource, dest: Path) -> None:
    """Copy a file unchanged into the staging folder (never over an existing file).

    Raises:
        ConversionError: the source ends early or the destination cannot be written.
    """
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with dest.open("xb") as fh:
            for chunk in source_chunks(source, dest.name):
                fh.write(chunk)
    except OSError as exc:
        raise ConversionError(f"cannot copy into {dest}: {exc.strerror or exc}") from exc
