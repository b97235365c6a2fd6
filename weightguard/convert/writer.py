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

import json
import os
import struct
import tempfile
from pathlib import Path

import torch

from weightguard.convert.tensors import DTYPES
from weightguard.errors import ConversionError


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
    return memoryview(flat.view(torch.uint8).numpy())


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write ``tensors`` to ``path`` atomically.

    Raises:
        ConversionError: the destination cannot be written.
    """
    header, names = _header(tensors, metadata)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise ConversionError(f"cannot write into {path.parent}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(struct.pack("<Q", len(header)))
            fh.write(header)
            for name in names:
                fh.write(_as_bytes(tensors[name]))
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        Path(tmp).chmod(0o666 & ~umask)  # mkstemp makes 0600; outputs get the usual permissions
        Path(tmp).replace(path)
    except OSError as exc:
        raise ConversionError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        Path(tmp).unlink(missing_ok=True)
