"""TFLite flatbuffers (``TFL3`` file identifier): header sanity and custom operators.

A ``.tflite`` model is a flatbuffer whose root ``Model`` table lists operator
codes, subgraphs and weight buffers; the interpreter runs only kernels compiled
into it. Two things can reach beyond the file's data: *custom* operators (a
``custom_code`` name the interpreter must resolve to native code registered by
the application) and *Flex* operators (custom codes starting with ``Flex``,
run by TensorFlow kernels, file I/O included). This module checks that the
root table and its vtable lie inside the file, that the schema version is 3,
and reports every custom operator code.

Why hand-written: the ``tflite``/``tensorflow`` packages are large and native;
four offsets per table are all that is needed. Not handled here: subgraphs,
tensors and buffers (weights are data), or the semantics of builtin operators.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from weightguard.errors import FormatError
from weightguard.findings import Finding
from weightguard.formats import asset_codes as codes
from weightguard.formats.interface import FileFormat

if TYPE_CHECKING:
    from weightguard.analysis.interface import Location, ScanContext
    from weightguard.sources.interface import ByteSource

TFLITE_IDENTIFIER = b"TFL3"
_MAX_OPERATOR_CODES = 4096  # the builtin operator enum has about 200 members
_MAX_NAME = 256


class TfliteError(FormatError):
    """The flatbuffer's offsets do not hold."""


def _u(source: ByteSource, offset: int, width: int, signed: bool = False) -> int:
    raw = source.read_at(offset, width)
    if offset < 0 or len(raw) != width:
        raise TfliteError(f"{width}-byte field at offset {offset} lies outside the file")
    return int.from_bytes(raw, "little", signed=signed)


def _field(source: ByteSource, table: int, index: int) -> int | None:
    """Return the absolute offset of field ``index`` of the table at ``table``, or None when absent."""
    vtable = table - _u(source, table, 4, signed=True)
    vt_size = _u(source, vtable, 2)
    if vt_size < 4 or vt_size % 2:
        raise TfliteError(f"vtable at offset {vtable} has size {vt_size}")
    if 4 + 2 * index >= vt_size:
        return None
    rel = _u(source, vtable + 4 + 2 * index, 2)
    return table + rel if rel else None


def _deref(source: ByteSource, at: int) -> int:
    return at + _u(source, at, 4)


def custom_operators(source: ByteSource) -> list[str]:
    """Return the custom operator names of the model (``Flex...`` included).

    Raises:
        TfliteError: An offset points outside the file or the schema version is not 3.
    """
    if source.read_at(4, 4) != TFLITE_IDENTIFIER:
        raise TfliteError("no TFL3 file identifier at offset 4")
    root = _u(source, 0, 4)
    if root % 4 or not 8 <= root < source.size:
        raise TfliteError(f"root table offset {root} is misaligned or outside the file")
    version_at = _field(source, root, 0)
    version = _u(source, version_at, 4) if version_at is not None else 0
    if version != 3:
        raise TfliteError(f"schema version {version}, expected 3")
    codes_at = _field(source, root, 1)
    if codes_at is None:
        return []
    vector = _deref(source, codes_at)
    count = _u(source, vector, 4)
    if count > _MAX_OPERATOR_CODES:
        raise TfliteError(f"{count} operator codes")
    names: list[str] = []
    for i in range(count):
        table = _deref(source, vector + 4 + 4 * i)
        custom_at = _field(source, table, 1)
        if custom_at is None:
            continue
        string = _deref(source, custom_at)
        length = _u(source, string, 4)
        name = source.read_at(string + 4, min(length, _MAX_NAME))
        names.append(name.decode("utf-8", "replace"))
    return names


class TfliteAnalyzer:
    """Analyzer for TFLite models."""

    name = "tflite"
    formats = frozenset({FileFormat.TFLITE})

    def analyze(self, source: ByteSource, where: Location, ctx: ScanContext) -> Iterator[Finding]:
        """Yield findings for broken offsets and for custom or Flex operators."""
        ctx.check_time()
        try:
            names = custom_operators(source)
        except TfliteError as exc:
            yield codes.TFL_MALFORMED.at(where.path, exc.message, member=where.member)
            return
        if names:
            shown = ", ".join(sorted(set(names))[:20])
            message = f"{len(names)} custom operator code(s): {shown}"
            yield codes.TFL_CUSTOM_OP.at(where.path, message, member=where.member, operators=shown)
