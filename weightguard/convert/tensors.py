"""From a loaded checkpoint to the tensors safetensors will hold (needs torch).

Shared storage is handled as Hugging Face's converter does: one *complete*
name is kept per storage and the removed aliases are recorded as
``{removed: kept}`` (see ``shared.py``). Entries that are not tensors are never dropped
silently: they are returned so the policy can decide. Which entry of a
training checkpoint holds the weights is decided in ``layouts.py``; the
training state beside it is returned as ``left_out``, never converted.
Not handled here: reading or writing files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from weightguard.convert.layouts import select_weights
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
    dropped: list[str] = field(default_factory=list)  # non-tensor entries inside the weights (the policy decides)
    unwrapped: str | None = None  # the dotted path of the weights entry; None: the top level
    left_out: list[str] = field(default_factory=list)  # training state beside the weights, never converted
    layout: str = "plain"


def _is_tensor(value: object) -> bool:
    return isinstance(value, torch.Tensor)


def extract(obj: object, *, unwrap_state_dict: bool, keys: Sequence[str] = ()) -> Extracted:
    """Pick the tensors out of a loaded checkpoint (the weights entry is chosen by ``layouts.py``).

    Args:
        obj: the loaded checkpoint.
        unwrap_state_dict: whether the well-known weight entries of training checkpoints are recognised.
        keys: the entries the user named as the weights, in order of preference.

    Raises:
        ConversionError: the checkpoint is not a dict, its weights cannot be told apart from the rest,
            or it holds a tensor safetensors cannot represent.
    """
    if not isinstance(obj, Mapping):
        raise ConversionError(f"the checkpoint's top level is a {type(obj).__name__}, not a dict of tensors")
    chosen = select_weights(obj, keys=keys, recognise_layouts=unwrap_state_dict, is_tensor=_is_tensor)
    out = Extracted(unwrapped=chosen.path, left_out=list(chosen.left_out), layout=chosen.layout)
    tensors: dict[str, torch.Tensor] = {}
    for key, value in chosen.weights.items():
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
