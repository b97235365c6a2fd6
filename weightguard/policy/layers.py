"""Policy layers: how several ``--policy`` files compose into one policy.

Layers are applied in the order given; each later layer is an overlay on the
result so far, merged key by key *before* the schema sees anything, and the
merged document is then validated once, as one policy:

* a **scalar** in a later layer replaces the earlier value;
* a **mapping** merges recursively (``spec.integrity.pinned`` gains and updates pins);
* a **list** is the union of both lists: earlier items first, then the later
  layer's new ones, each item once (items compared by value). The one
  exception is ``spec.rollout.stages``, whose order *is* its meaning: a later
  layer replaces it whole;
* a key set to ``null`` in a later layer **removes** it, so the schema's
  default applies again (JSON Merge Patch, RFC 7396). This is the only way a
  layer takes something back: ``allow_extra: null`` returns that allowlist to
  its default, ``allowed_globals: null`` empties it.

So a later layer can always tighten through the deny side and the scalars
(``formats.refused``, ``severity.fail_on``, ``pickle.mode: refuse``,
``signatures.required``); it can only *add* to an allowlist, or reset it with
``null``. That is deliberate and not a loophole: every layer is a file the
operator names on the command line, each one can already loosen any scalar,
and every layer is listed in the report with its sha256, so none acts unseen.

The first layer must be a complete policy (``apiVersion`` and ``kind``) or a
built-in (``builtin:default``); later layers may be partial (no
``apiVersion``/``kind``), and a layer that does name them must name the
supported ones. File paths inside a layer (trusted keys and roots) are
relative to *that* layer's folder; they are rewritten relative to the base
folder (the first file layer's) before merging, so the merged policy means
what each file says.

The merged policy's digest is the sha256 of the merged document as canonical
JSON (sorted keys, no spaces); a one-file policy keeps its file's sha256, as
``sha256sum`` prints it. Pure: no I/O here (:mod:`weightguard.policy.load` reads).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Loc = tuple[str | int, ...]

# Sequences whose order is their meaning: a later layer replaces them instead of extending them.
_REPLACED_LISTS: frozenset[Loc] = frozenset({("spec", "rollout", "stages")})

# Fields holding paths to trust material, resolved against the policy's folder (list items: index "*").
_PATH_FIELDS: tuple[Loc, ...] = (
    ("spec", "signatures", "trusted_signers", "*", "public_key"),
    ("spec", "signatures", "trusted_signers", "*", "root"),
    ("spec", "signatures", "trusted_signers", "*", "trusted_root"),
    ("spec", "rollout", "attestation", "signing_key"),
    ("spec", "rollout", "attestation", "trusted_keys", "*"),
)


@dataclass(frozen=True, slots=True)
class RawLayer:
    """One parsed (not yet validated) layer: its document, where each key sits, where it came from."""

    origin: str
    sha256: str
    raw: dict[str, Any]
    lines: dict[Loc, int]
    folder: Path | None  # None for a built-in

    @property
    def partial(self) -> bool:
        """An overlay: names neither ``apiVersion`` nor ``kind``."""
        return "apiVersion" not in self.raw and "kind" not in self.raw


def rebase(layer: RawLayer, base: Path | None) -> RawLayer:
    """``layer`` with its relative trust-material paths rewritten relative to ``base``."""
    if layer.folder is None or base is None or layer.folder == base:
        return layer

    folder = layer.folder.absolute()
    target = base.absolute()

    def move(value: object) -> object:
        if not isinstance(value, str) or not value or Path(value).is_absolute():
            return value
        try:
            return os.path.relpath(folder / value, target)  # Path.relative_to(walk_up=) needs 3.12
        except ValueError:  # another drive (Windows): only an absolute path can say it
            return str(folder / value)

    raw = _copy(layer.raw)
    for field in _PATH_FIELDS:
        _rewrite(raw, field, move)
    return RawLayer(layer.origin, layer.sha256, raw, layer.lines, layer.folder)


def merge(layers: Sequence[RawLayer]) -> dict[str, Any]:
    """The documents of ``layers`` merged in order (see the module docstring)."""
    merged: dict[str, Any] = _copy(layers[0].raw)
    for layer in layers[1:]:
        merged = _merge_mapping(merged, layer.raw, ())
    return merged


def digest(document: dict[str, Any]) -> str:
    """sha256 of ``document`` as canonical JSON (dates as ISO text)."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def locate(loc: Loc, merged: dict[str, Any], layers: Sequence[RawLayer]) -> str:
    """``origin:line`` of the layer that set the merged value at ``loc`` (for error messages).

    Walks ``loc`` through each layer, latest first, matching list items by value; the layer
    that follows ``loc`` furthest names the place (only called when validation failed).
    """
    best: tuple[int, str] = (-1, f"{layers[-1].origin}:1")
    for layer in reversed(layers):
        depth, own = _follow(loc, merged, layer.raw)
        line = layer.lines.get(own)
        if line is not None and depth > best[0]:
            best = (depth, f"{layer.origin}:{line}")
    return best[1]


def _follow(loc: Loc, merged: object, raw: object) -> tuple[int, Loc]:
    own: Loc = ()
    for depth, step in enumerate(loc):
        if isinstance(step, str) and isinstance(merged, dict) and isinstance(raw, dict) and step in raw:
            merged, raw, own = merged.get(step), raw[step], (*own, step)
        elif isinstance(step, int) and isinstance(merged, list) and isinstance(raw, list) and step < len(merged):
            item = merged[step]
            matches = [i for i, candidate in enumerate(raw) if candidate == item]
            if not matches:
                return depth, own
            merged, raw, own = item, raw[matches[0]], (*own, matches[0])
        else:
            return depth, own
    return len(loc), own


def _merge_mapping(base: dict[str, Any], over: dict[str, Any], loc: Loc) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        here = (*loc, key)
        if value is None:
            out.pop(key, None)  # RFC 7396: null removes, and the schema default applies again
        elif key not in out:
            out[key] = _copy(value)
        elif isinstance(value, dict) and isinstance(out[key], dict):
            out[key] = _merge_mapping(out[key], value, here)
        elif isinstance(value, list) and isinstance(out[key], list) and here not in _REPLACED_LISTS:
            out[key] = _union(out[key], value)
        else:  # a scalar, a replaced list, or a change of type (which validation will judge)
            out[key] = _copy(value)
    return out


def _union(base: list[Any], extra: list[Any]) -> list[Any]:
    seen = {_key(item) for item in base}
    out = list(base)
    for item in extra:
        key = _key(item)
        if key not in seen:
            seen.add(key)
            out.append(_copy(item))
    return out


def _key(item: object) -> str:
    return json.dumps(item, sort_keys=True, default=str)


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _rewrite(node: object, field: Loc, move: Callable[[object], object]) -> None:
    step, rest = field[0], field[1:]
    if step == "*":
        if isinstance(node, list):
            for i, item in enumerate(node):
                if rest:
                    _rewrite(item, rest, move)
                else:
                    node[i] = move(item)
    elif isinstance(node, dict) and step in node:
        if rest:
            _rewrite(node[step], rest, move)
        else:
            node[step] = move(node[step])
