"""The conversion proof: reload the output with ``safetensors`` and compare it with the source.

Every tensor *name of the source* is checked, aliases included: a kept name
must come back under its own name, a removed alias must equal the tensor it
points to, and each must have the source's dtype, shape and bytes, compared
bit for bit (so ``-0.0``/``NaN`` payloads and float8 patterns count too). The
output must hold nothing else. The file is reopened every ``batch_bytes`` so
that the pages of the reloaded output never pile up beyond one batch.
Not handled here: writing the output or hashing it for the manifest.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from weightguard.errors import ConversionError

BATCH_BYTES = 32 * 2**20


def _bytes_of(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().reshape(-1).view(torch.uint8)


def _same_bytes(a: torch.Tensor, b: torch.Tensor) -> bool:
    # Integer views compare raw bits (float -0.0 vs 0.0 and NaN payloads differ, as they should);
    # 8-byte words when both sides allow it, because torch.equal on int64 runs ~5x faster than on
    # uint8; both sides use the same width, so the answer is the same either way.
    for width in (torch.int64, torch.int32, torch.int16):
        size = width.itemsize
        if a.numel() % size == 0 and a.storage_offset() % size == 0 and b.storage_offset() % size == 0:
            return torch.equal(a.view(width), b.view(width))
    return torch.equal(a, b)


def identical(source: torch.Tensor, back: torch.Tensor) -> bool:
    """True when ``back`` has ``source``'s dtype, shape and exact bytes."""
    if source.dtype != back.dtype or source.shape != back.shape:
        return False
    return _same_bytes(_bytes_of(source), _bytes_of(back))


def prove(
    path: Path, source: Mapping[str, torch.Tensor], aliases: Mapping[str, str], *, batch_bytes: int = BATCH_BYTES
) -> int:
    """Compare the safetensors file at ``path`` with every source tensor; return how many names were compared.

    Raises:
        ConversionError: the output is unreadable, misses or adds a name, or a tensor differs.
    """
    expected = {name for name in source if name not in aliases}
    order = sorted(source, key=lambda n: (aliases.get(n, n), n))  # an alias right after the name it points to
    compared = 0
    try:
        handle = safe_open(str(path), framework="pt")
        names = set(handle.keys())  # type: ignore[no-untyped-call]  # safetensors ships no annotations here
        # The aliases a reader resolves are the ones written in the file, not the ones meant to be.
        meta: dict[str, str] = handle.metadata() or {}  # type: ignore[no-untyped-call]
        written = {k: v for k, v in meta.items() if k != "format"}
        if written != dict(aliases):
            raise ConversionError(f"{path.name}: the aliases recorded in the file are not the removed names")
        if names != expected:
            missing, extra = sorted(expected - names), sorted(names - expected)
            raise ConversionError(f"{path.name}: reloaded names differ (missing {missing[:5]}, extra {extra[:5]})")
        loaded_bytes = 0
        for name in order:
            if loaded_bytes >= batch_bytes:
                handle = safe_open(str(path), framework="pt")  # drops the previous mapping's pages
                loaded_bytes = 0
            back: torch.Tensor = handle.get_tensor(aliases.get(name, name))  # type: ignore[no-untyped-call]
            if not identical(source[name], back):
                raise ConversionError(f"{path.name}: tensor {name!r} did not survive the round trip bit for bit")
            loaded_bytes += back.numel() * back.element_size()
            del back
            compared += 1
    except (OSError, RuntimeError, ValueError, SafetensorError) as exc:
        raise ConversionError(f"{path.name}: the output cannot be reloaded: {exc}") from exc
    return compared
