"""Strict JSON parsing shared by the header validators (private).

Python's :func:`json.loads` silently keeps the last of two equal keys,
accepts ``NaN``/``Infinity`` and raises ``RecursionError`` on deep nesting.
A header validator must instead *report* each of those, because another
reader (serde in safetensors, a JavaScript loader) may see different data.
:func:`parse_json` never raises on hostile bytes: it returns a
:class:`ParsedJson` with the value, the duplicated keys it met and, on
failure, the reason. Not handled here: what a given format requires of the
parsed value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from weightguard.errors import FormatError

# At most this many duplicate keys are recorded (the first ones are evidence enough).
_MAX_DUPLICATES_KEPT = 20


class _NonStandardConstantError(FormatError):
    """Raised inside the parser when NaN/Infinity appear and they are not allowed."""


@dataclass(frozen=True, slots=True)
class ParsedJson:
    """The outcome of a strict parse.

    Attributes:
        value: The parsed value (``None`` when ``error`` is set; JSON ``null`` also gives ``None``).
        error: Why parsing failed, or ``""``.
        duplicates: Keys that appeared more than once in one object (up to 20).
    """

    value: object
    error: str = ""
    duplicates: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when the text parsed."""
        return not self.error


def parse_json(data: bytes, *, allow_constants: bool = False) -> ParsedJson:
    """Parse ``data`` as strict UTF-8 JSON, recording duplicate keys.

    Args:
        data: The raw bytes (no BOM allowed: RFC 8259 forbids emitting one).
        allow_constants: Accept ``NaN``, ``Infinity`` and ``-Infinity``
            (Python's json writer emits them in configs).

    Returns:
        The parsed value, or the reason it could not be parsed.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return ParsedJson(None, f"not UTF-8: {exc.reason} at byte {exc.start}")
    duplicates: list[str] = []

    def pairs(items: list[tuple[str, object]]) -> dict[str, object]:
        out: dict[str, object] = {}
        for key, value in items:
            if key in out and len(duplicates) < _MAX_DUPLICATES_KEPT:
                duplicates.append(key)
            out[key] = value
        return out

    def constant(name: str) -> float:
        if not allow_constants:
            raise _NonStandardConstantError(f"non-standard constant {name}")
        return float(name.replace("Infinity", "inf"))

    try:
        value = json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except _NonStandardConstantError as exc:
        return ParsedJson(None, exc.message)
    except RecursionError:
        return ParsedJson(None, "nested too deep to parse")
    except ValueError as exc:  # JSONDecodeError, and int() refusing a number of over 4300 digits
        return ParsedJson(None, str(exc))
    return ParsedJson(value, "", tuple(duplicates))
