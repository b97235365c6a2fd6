"""Find the weights inside a loaded checkpoint: named keys first, then the common layouts.

A training checkpoint keeps the model's state dict beside the training state
(``{"model": sd, "optimizer": ..., "epoch": 3}``). Only the weights become
safetensors; everything else is *left out* on purpose and named in the report
(unlike a non-tensor entry *inside* the weights, which the policy must allow
to be dropped, see ``tensors.py``).

The weights are chosen in this order:

1. The keys the user named (``convert --key``, then the policy's
   ``spec.conversion.weight_keys``), in order of preference; the first that
   leads to a dict in this checkpoint wins. A dotted path walks nested dicts
   (``model.state_dict``); a key that literally contains the dots wins over
   the nested reading. A file holding none of the keys falls through to 2.
2. A plain state dict (a tensor at the top level) is taken as it is.
3. When the policy lets layouts be recognised (``unwrap_state_dict``), one of
   the well-known weight entries: ``state_dict`` (also Lightning's),
   ``model_state_dict``, ``model``, ``module`` (DeepSpeed). It is used only
   when it is the one weight-like entry besides known training state; two
   candidates (``model`` and ``ema``) are ambiguous and refused.
4. Anything else is refused with a hint naming the keys to rerun with.

Pure: it only walks dicts, it never loads or converts anything. The caller
says what a tensor is, so this module does not need torch.
Not handled here: loading (``loader.py``) or checking the tensors (``tensors.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from weightguard.errors import ConversionError

# The entries frameworks use for the model's weights, in the order they are tried.
WEIGHT_ENTRIES = ("state_dict", "model_state_dict", "model", "module")
# Training state that is never the weights: it never makes a choice ambiguous and is not suggested.
TRAINING_STATE = frozenset(
    {
        "optimizer",
        "optimizer_state_dict",
        "optimizer_states",
        "optim",
        "lr_scheduler",
        "lr_schedulers",
        "scheduler",
        "scheduler_state_dict",
        "scaler",
        "grad_scaler",
        "amp",
        "callbacks",
        "loops",
        "epoch",
        "global_step",
        "step",
        "iteration",
        "hyper_parameters",
        "hparams",
        "args",
        "config",
        "rng_state",
    }
)
# Markers that name the framework in the report; the choice itself does not depend on them.
_MARKERS = (
    ("lightning", "state_dict", ("pytorch-lightning_version", "optimizer_states", "loops")),
    ("deepspeed", "module", ("ds_version", "ds_config", "buffer_names", "param_shapes")),
)
_SUGGEST_DEPTH = 3  # how deep the refusal's hint looks for dicts of tensors
_SUGGESTED = 5


@dataclass(frozen=True, slots=True)
class Selection:
    """The part of a checkpoint that holds the weights, and what was left out.

    Attributes:
        weights: the dict whose tensors are converted.
        path: its dotted path in the checkpoint; ``None`` for the top level.
        left_out: dotted paths of the entries not converted (training state), sorted.
        layout: how it was chosen: ``plain``, ``key``, ``lightning``, ``deepspeed`` or ``wrapped``.
    """

    weights: Mapping[Any, Any]
    path: str | None
    left_out: tuple[str, ...]
    layout: str


def _resolve(mapping: Mapping[Any, Any], path: str) -> tuple[Mapping[Any, Any], list[str]] | None:
    """The dict at dotted ``path`` and the dotted path of its siblings on the way, or ``None``."""
    if path in mapping:
        value = mapping[path]
        if not isinstance(value, Mapping):
            return None
        return value, [str(k) for k in mapping if k != path]
    for cut in (i for i, ch in enumerate(path) if ch == "."):
        head, rest = path[:cut], path[cut + 1 :]
        inner = mapping.get(head)
        if isinstance(inner, Mapping) and (found := _resolve(inner, rest)) is not None:
            value, siblings = found
            return value, [str(k) for k in mapping if k != head] + [f"{head}.{s}" for s in siblings]
    return None


def _weight_like(value: object, is_tensor: Callable[[object], bool]) -> bool:
    return isinstance(value, Mapping) and any(is_tensor(v) for v in value.values())


def _selected(obj: Mapping[Any, Any], path: str, layout: str) -> Selection | None:
    found = _resolve(obj, path)
    if found is None:
        return None
    weights, siblings = found
    return Selection(weights, path, tuple(sorted(siblings)), layout)


def _layout_name(obj: Mapping[Any, Any], entry: str) -> str:
    for name, weights_entry, markers in _MARKERS:
        if entry == weights_entry and any(m in obj for m in markers):
            return name
    return "wrapped"


def _tensor_dicts(
    value: object, is_tensor: Callable[[object], bool], prefix: str = "", depth: int = 0
) -> Iterator[str]:
    """Dotted paths of the dicts that hold tensors directly, outside known training state."""
    if not isinstance(value, Mapping) or depth > _SUGGEST_DEPTH:
        return
    if prefix and _weight_like(value, is_tensor):
        yield prefix
        return
    for key, inner in value.items():
        if not isinstance(key, str) or (depth == 0 and key in TRAINING_STATE):
            continue
        yield from _tensor_dicts(inner, is_tensor, f"{prefix}.{key}" if prefix else key, depth + 1)


def _keys_of(obj: Mapping[Any, Any]) -> str:
    keys = [str(k) for k in obj]
    return ", ".join(keys[:12]) + (f" (+{len(keys) - 12} more)" if len(keys) > 12 else "")


class WeightsNotFoundError(ConversionError):
    """No entry of a checkpoint could be told to hold its weights; the hint names the keys to rerun with."""

    def __init__(self, obj: Mapping[Any, Any], why: str, candidates: Sequence[str]) -> None:
        if candidates:
            rerun = " or ".join(f"--key {c}" for c in candidates[:_SUGGESTED])
            hint = f"rerun with {rerun} (or list it in spec.conversion.weight_keys)"
        else:
            hint = "name the entry holding the weights with --key PATH (dotted for nested dicts)"
        super().__init__(f"holds keys {_keys_of(obj)}: {why}: {hint}", hint=hint)
        self.candidates = tuple(candidates)


def select_weights(
    obj: Mapping[Any, Any],
    *,
    keys: Sequence[str],
    recognise_layouts: bool,
    is_tensor: Callable[[object], bool],
) -> Selection:
    """Choose the dict of ``obj`` whose tensors are the model's weights (see the module docstring).

    Args:
        obj: the loaded checkpoint's top level.
        keys: the entries the user named, in order of preference (dotted paths allowed).
        recognise_layouts: whether the well-known weight entries are looked for.
        is_tensor: what counts as a tensor.

    Raises:
        WeightsNotFoundError: no entry holds the weights, or several could; the message carries the hint.
    """
    for key in keys:
        if (chosen := _selected(obj, key, "key")) is not None:
            return chosen
    if not obj or any(is_tensor(v) for v in obj.values()):
        return Selection(obj, None, (), "plain")
    if not recognise_layouts:
        return Selection(obj, None, (), "plain")  # the entries are then refused as non-tensors, as before
    known = [e for e in WEIGHT_ENTRIES if _weight_like(obj.get(e), is_tensor)]
    others = [
        str(k)
        for k, v in obj.items()
        if k not in WEIGHT_ENTRIES and k not in TRAINING_STATE and _weight_like(v, is_tensor)
    ]
    if len(known) == 1 and not others:
        chosen = _selected(obj, known[0], _layout_name(obj, known[0]))
        if chosen is not None:
            return chosen
    if known or others:
        raise WeightsNotFoundError(obj, "more than one entry could hold the weights", [*known, *others])
    candidates = list(_tensor_dicts(obj, is_tensor))
    why = "no entry holds the weights" if not candidates else "the weights are not in an entry weightguard knows"
    raise WeightsNotFoundError(obj, why, candidates)
