"""From a loaded checkpoint to the tensors safetensors will hold (needs torch).

Shared storage is handled as Hugging Face's converter does: one *complete*
name is kept per storage and the removed aliases are recorded as
``{removed: kept}``; a view that does not cover its storage becomes a
contiguous copy of its own. Entries that are not tensors are never dropped
silently: they are returned so the policy can decide.
Not handled here: reading or writing files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

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
for _name, _code in (
    ("float8_e4m3fn", "F8_E4M3"),
    ("float8_e5m2", "F8_E5M2"),
    ("float8_e4m3fnuz", "F8_E4M3FNUZ"),
    ("float8_e5m2fnuz", "F8_E5M2FNUZ"),
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
    out.tensors, out.aliases = _dedupe_shared(tensors)
    return out


_OUTPUT_ALIASES = ("lm_head.", "decoder.weight", "output.weight", "classifier.weight")
_INPUT_NAMES = ("embed", "wte", "word_embeddings", "shared")


def _keep_preference(name: str) -> tuple[int, str]:
    # Tied output projections (lm_head) are re-tied from the input embedding by the frameworks that
    # load these files, so the embedding's name must be the one kept (HF's converter keeps names
    # outside the model's tied-weights list for the same reason).
    if any(part in name for part in _INPUT_NAMES):
        return (0, name)
    if name.startswith(_OUTPUT_ALIASES) or name.endswith(_OUTPUT_ALIASES):
        return (2, name)
    return (1, name)


def _covers_storage(t: torch.Tensor) -> bool:
    return (
        t.storage_offset() == 0 and t.is_contiguous() and t.numel() * t.element_size() == t.untyped_storage().nbytes()
    )


def _dedupe_shared(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    groups: dict[tuple[int, int], list[str]] = {}
    for name, t in tensors.items():
        if t.numel() == 0:
            continue
        key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        groups.setdefault(key, []).append(name)
    kept = dict(tensors)
    aliases: dict[str, str] = {}
    for names in groups.values():
        if len(names) == 1:
            name = names[0]
            if not _covers_storage(kept[name]):
                kept[name] = kept[name].contiguous().clone()
            continue
        complete = sorted((n for n in names if _covers_storage(tensors[n])), key=_keep_preference)
        if complete:
            keep = complete[0]
            for other in names:
                if other == keep:
                    continue
                same_view = (
                    tensors[other].shape == tensors[keep].shape
                    and tensors[other].stride() == tensors[keep].stride()
                    and tensors[other].storage_offset() == 0
                )
                if same_view and tensors[other].dtype == tensors[keep].dtype:
                    aliases[other] = keep
                    del kept[other]
                else:
                    kept[other] = tensors[other].contiguous().clone()
        else:
            for n in names:  # no name covers the storage: every view gets its own copy
                kept[n] = tensors[n].contiguous().clone()
    return kept, aliases
