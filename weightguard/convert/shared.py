"""Shared and tied tensors: one storage, several names (needs torch).

Handled as Hugging Face's converter does: per storage, one *complete* name
(a contiguous view covering the whole storage) is kept, and every other name
that is the very same view is removed and recorded as ``{removed: kept}``
(the safetensors metadata carries this map). Unlike HF's converter, a name
that is a *different* view of the storage (a slice, a transpose, a view of
another dtype) is never dropped: it is written as its own contiguous tensor,
so nothing is lost. Views that do not cover their storage are written as
contiguous copies of just their elements (the writer copies one tensor at a
time, so no whole-model copy is ever held).
Not handled here: reading or writing files, or deciding whether to convert.
"""

from __future__ import annotations

import torch

# Tied output projections are re-tied from the input embedding by the frameworks that load
# these files (transformers' _tied_weights_keys lists lm_head.weight, not wte), so the
# embedding's name is the one to keep; HF's converter prefers names outside that list too.
_OUTPUT_ALIASES = ("lm_head.", "decoder.weight", "output.weight", "classifier.weight")
_INPUT_NAMES = ("embed", "wte", "word_embeddings", "shared")


def keep_preference(name: str) -> tuple[int, str]:
    """Sort key among complete names of one storage: input embeddings first, output heads last."""
    if any(part in name for part in _INPUT_NAMES):
        return (0, name)
    if name.startswith(_OUTPUT_ALIASES) or name.endswith(_OUTPUT_ALIASES):
        return (2, name)
    return (1, name)


def covers_storage(t: torch.Tensor) -> bool:
    """True when ``t`` is a contiguous view of its whole storage."""
    # bool(): newer torch types these comparisons as SymBool
    return bool(
        t.storage_offset() == 0 and t.is_contiguous() and t.numel() * t.element_size() == t.untyped_storage().nbytes()
    )


def _same_view(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool(
        a.dtype == b.dtype
        and a.shape == b.shape
        and a.stride() == b.stride()
        and a.storage_offset() == b.storage_offset()
    )


def dedupe_shared(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Keep one name per shared storage and return ``(tensors to write, {removed: kept})``.

    Every input name is either in the first result or a key of the second.
    """
    groups: dict[int, list[str]] = {}
    for name, t in tensors.items():
        if t.numel() == 0:
            continue  # empty tensors own no bytes; several may report the same (null) pointer
        groups.setdefault(t.untyped_storage().data_ptr(), []).append(name)
    kept = dict(tensors)
    aliases: dict[str, str] = {}
    for names in groups.values():
        complete = sorted((n for n in names if covers_storage(tensors[n])), key=keep_preference)
        if len(names) < 2 or not complete:
            continue  # each name is written on its own (a view becomes a contiguous copy when written)
        keep = complete[0]
        for other in names:
            if other != keep and _same_view(tensors[other], tensors[keep]):
                aliases[other] = keep
                del kept[other]
    return kept, aliases
