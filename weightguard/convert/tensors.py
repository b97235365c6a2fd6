"""From a loaded checkpoint to the tensors safetensors will hold (needs torch).

Shared storage is handled as Hugging Face's converter does: one *complete*
name is kept per storage and the removed aliases are recorded as
``{removed: kept}`` (see ``shared.py``). Entries that are not tensors are never dropped
silently: they are returned so the policy can decide.
Not handled here: reading or writing files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from weightguard.convert.shared import dedupe_shared
from weightguard.errors import ConversionError

# torch dtype -> safetensors dtype name (the names safetensors' own format defines).
DTYPES: dict[torch.dtype, str] = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}
# Newer dtypes, only where this torch has them. float4_e2m1fn_x2 is left out on purpose:
# safetensors stores it as "F4" with the unpacked element count, a different shape from torch's.
for _name, _code in (
    ("float8_e4m3fn", "F8_E4M3"),
    ("float8_e5m2", "F8_E5M2"),
    ("float8_e4m3fnuz", "F8_E4M3FNUZ"),
    ("float8_e5m2fnuz", "F8_E5M2FNUZ"),
    ("float8_e8m0fnu", "F8_E8M0"),
    ("uint16", "U16"),
    ("uint32", "U32"),
    ("uint64", "U64"),
    ("complex64", "C64"),
):
    if hasattr(torch, _name):
        DTYPES[getattr(torch, _name)] = _code


@dataclass
class Extracted:
    """Tensors to write, and what did not make it."""

    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    source: dict[str, torch.Tensor] = field(default_factory=dict)  # every tensor name before dedupe, for the proof
    aliases: dict[str, str] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    unwrapped: str | None = None


def _unwrap(obj: object, unwrap_state_dict: bool) -> tuple[Mapping[str, Any], str | None, list[str]]:
    if not isinstance(obj, Mapping):
        raise ConversionError(f"the checkpoint's top level is a {type(obj).__name__}, not a dict of tensors")
    if unwrap_state_dict and isinstance(obj.get("state_dict"), Mapping):
        others = [str(k) for k in obj if k != "state_dict"]
        return obj["state_dict"], "state_dict", others
    return obj, None, []


def extract(obj: object, *, unwrap_state_dict: bool) -> Extracted:
    """Pick the tensors out of a loaded checkpoint.

    Raises:
        ConversionError: the checkpoint is not a dict, or holds a tensor safetensors cannot represent.
    """
    mapping, unwrapped, dropped = _unwrap(obj, unwrap_state_dict)
    out = Extracted(unwrapped=unwrapped, dropped=dropped)
    tensors: dict[str, torch.Tensor] = {}
    for key, value in mapping.items():
        name = str(key)
        if isinstance(value, torch.Tensor):
            if value.layout is not torch.strided or value.is_quantized or value.dtype not in DTYPES:
                raise ConversionError(
                    f"tensor {name!r} ({value.dtype}, {value.layout}) cannot be stored in safetensors"
                )
            tensors[name] = value.detach()
        else:
            out.dropped.append(name)
    out.source = tensors
    out.tensors, out.aliases = dedupe_shared(tensors)
    return out
