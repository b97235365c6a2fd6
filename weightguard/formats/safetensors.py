"""Safetensors header validation, reading the header only.

A safetensors file is ``u64 little-endian n`` + ``n`` bytes of JSON + a data
region. The JSON maps tensor names to ``{dtype, shape, data_offsets}`` and an
optional ``__metadata__`` of strings. This module checks everything the
Rust reference (``safetensors/src/tensor.rs``, 0.8) checks, plus what it lets
through but a second reader could disagree on: duplicate JSON keys (serde
keeps the last one), unknown fields in tensor entries, off-spec padding.
Every malformation has its own rule in :mod:`weightguard.formats.header_codes`.

Bytes no tensor covers after the last one (``WG-ST-019``), and a pickle stream
starting the data region (``WG-ST-020``, a safetensors/pickle polyglot), are
refused and also handed to the scanner (:meth:`ScanContext.nested`) at their
real offset, so the report says what an appended payload would do.

Memory: parsed JSON costs about 100 bytes per value whatever its size in
bytes, so before parsing, the values the header would create are counted
(structural bytes outside strings, a C-speed pass over a copy with the
strings emptied) and a header over ``max_header_values`` is a limit finding,
not a parse (issue 15: a 99 MB header of 1.4 million tensors took 1.2 GB).
The header is parsed once, here; detection only looks at its first bytes.

Not handled here: the tensor bytes themselves are never read (a 100 GB
checkpoint costs one small read beyond the header).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from weightguard.analysis.interface import Location, ScanContext
from weightguard.findings import Finding, Rule
from weightguard.formats import header_codes as codes
from weightguard.formats._json import parse_json
from weightguard.formats.detect import pickle_stream_at
from weightguard.formats.interface import FileFormat
from weightguard.limits import Limits
from weightguard.scan_codes import LIMIT_EXCEEDED
from weightguard.sources.interface import ByteSource, BytesSource, SliceSource

# Bits per element of every dtype safetensors 0.8 accepts (its `Dtype` enum, checked
# against the library by tests/formats/test_safetensors.py).
DTYPE_BITS: Mapping[str, int] = {
    "BOOL": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
}
_FIELDS = frozenset({"dtype", "shape", "data_offsets"})
_METADATA = "__metadata__"
_USIZE_MAX = 2**64 - 1  # safetensors computes sizes in u64 with checked arithmetic
_MAX_PER_RULE = 20  # findings kept per rule; the rest are counted in one summary finding
# A JSON string, escapes included (the unrolled form: no backtracking per character).
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_STRUCTURE = (b"{", b"[", b",", b":")
_WINDOW = 1 << 20


@dataclass(frozen=True, slots=True)
class TensorEntry:
    """One tensor of the header; offsets are relative to the data region."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass(frozen=True, slots=True)
class SafetensorsHeader:
    """A fully validated header.

    Attributes:
        tensors: Tensors ordered by ``begin``.
        metadata: The ``__metadata__`` strings (empty when absent).
        header_len: Length ``n`` of the JSON header in bytes.
        data_start: File offset of the data region (``8 + n``).
    """

    tensors: tuple[TensorEntry, ...]
    metadata: Mapping[str, str]
    header_len: int
    data_start: int


@dataclass
class _Findings:
    """Collects findings, keeping at most ``_MAX_PER_RULE`` per rule (hostile headers repeat)."""

    where: Location
    items: list[Finding] = field(default_factory=list)
    dropped: dict[str, tuple[Rule, int]] = field(default_factory=dict)

    def add(self, rule: Rule, message: str, **evidence: object) -> None:
        kept = sum(1 for f in self.items if f.code == rule.code)
        if kept >= _MAX_PER_RULE:
            self.dropped[rule.code] = (rule, self.dropped.get(rule.code, (rule, 0))[1] + 1)
            return
        self.items.append(
            Finding(
                code=rule.code,
                severity=rule.severity,
                kind=rule.kind,
                path=self.where.path,
                member=self.where.member,
                message=message,
                evidence={k: str(v) for k, v in evidence.items()},
            )
        )

    def done(self) -> list[Finding]:
        for rule, count in self.dropped.values():
            self.items.append(
                rule.at(self.where.path, f"{count} more occurrences not listed", member=self.where.member, more=count)
            )
        return self.items


def parse_safetensors_header(
    source: ByteSource, limits: Limits, where: Location | None = None
) -> SafetensorsHeader | list[Finding]:
    """Validate the header of a safetensors file without reading tensor bytes.

    Args:
        source: The file.
        limits: ``max_header_bytes`` bounds the JSON read.
        where: Location used in findings (defaults to an empty path).

    Returns:
        The header when it is valid in every respect, otherwise the findings
        (never raises on hostile input).
    """
    header, findings = _parse(source, limits, where or Location(""))
    return header if header is not None and not findings else findings


def _parse(source: ByteSource, limits: Limits, where: Location) -> tuple[SafetensorsHeader | None, list[Finding]]:
    out = _Findings(where)
    if source.size < 8:
        out.add(codes.ST_TRUNCATED, f"{source.size} bytes, fewer than the 8-byte header length", size=source.size)
        return None, out.done()
    (length,) = struct.unpack("<Q", source.read_at(0, 8))
    if length < 2 or length > source.size - 8:
        out.add(codes.ST_HEADER_PAST_EOF, f"header length {length} for a {source.size}-byte file", length=length)
        return None, out.done()
    if length > limits.max_header_bytes:
        out.add(
            codes.ST_HEADER_TOO_LARGE,
            f"header of {length} bytes > max_header_bytes {limits.max_header_bytes}",
            length=length,
        )
        return None, out.done()
    # A header of one window is read once; a longer one is counted window by window first, so
    # that one over the limit is never held whole (its pages are the file's, not a copy).
    raw = source.read_at(8, length) if length <= _WINDOW else b""
    counted, at = (BytesSource(raw), 0) if raw else (source, 8)
    values = count_json_values(counted, at, length, most=limits.max_header_values)
    if values > limits.max_header_values:
        out.add(
            LIMIT_EXCEEDED,
            f"header holds over {limits.max_header_values} JSON values (max_header_values; {values} counted)",
            resource="max_header_values",
            limit=limits.max_header_values,
        )
        return None, out.done()
    raw = raw or source.read_at(8, length)
    parsed = parse_json(raw)
    if not parsed.ok:
        rule = codes.ST_HEADER_NOT_UTF8 if parsed.error.startswith("not UTF-8") else codes.ST_HEADER_NOT_JSON
        out.add(rule, f"header: {parsed.error}")
        return None, out.done()
    if not isinstance(parsed.value, dict):
        out.add(codes.ST_NOT_AN_OBJECT, f"top-level JSON value is {type(parsed.value).__name__}")
        return None, out.done()
    _check_layout(raw, out)
    if parsed.duplicates:
        names = ", ".join(repr(k) for k in parsed.duplicates)
        out.add(codes.ST_DUPLICATE_KEY, f"keys appear more than once: {names}", keys=names)
    metadata = _metadata(parsed.value.get(_METADATA), out)
    entries = [
        entry
        for name, value in parsed.value.items()
        if name != _METADATA and (entry := _entry(name, value, out)) is not None
    ]
    complete = len(entries) == len(parsed.value) - (_METADATA in parsed.value)
    entries.sort(key=lambda e: (e.begin, e.end))
    data_start = 8 + length
    if complete:
        _check_layout_of_data(entries, source.size - data_start, out)
    findings = out.done()
    return SafetensorsHeader(tuple(entries), metadata, length, data_start), findings


def count_json_values(source: ByteSource, start: int, length: int, *, most: int | None = None) -> int:
    """An upper bound of the values (keys included) that parsing ``length`` bytes at ``start`` creates.

    Every value but the first sits after a ``{``, ``[``, ``,`` or ``:`` outside a string
    (a key after ``{`` or ``,``, an object's value after ``:``, an array item after ``[`` or
    ``,``), so those bytes plus one bound the count, exactly for valid JSON without empty
    containers. The bytes are read one window at a time (memory: one window, not the
    header). Counting them everywhere, strings too, is a C-speed pass; only when that crude
    bound is over ``most`` are strings set aside, so that commas in metadata strings never
    refuse a real file. That second pass stops once the count is over ``most`` (the
    result is then a lower bound, which is all a refusal needs).
    """
    crude = 1
    for pos in range(0, length, _WINDOW):
        chunk = source.read_at(start + pos, min(_WINDOW, length - pos))
        crude += sum(chunk.count(c) for c in _STRUCTURE)
    if most is None or crude <= most:
        return crude
    total, pos, window = 1, 0, _WINDOW
    while pos < length:
        chunk = source.read_at(start + pos, min(window, length - pos))
        stripped = _JSON_STRING.sub(b'""', chunk)  # complete strings only: a cut one keeps its quote
        last_pair = stripped.rfind(b'""')
        lone = stripped.find(b'"', last_pair + 2 if last_pair >= 0 else 0)
        if lone < 0 or pos + len(chunk) >= length or not chunk:
            total += sum(stripped.count(c) for c in _STRUCTURE)
            pos = length if not chunk else pos + len(chunk)
        elif lone == 0:
            window *= 2  # one string longer than the window: read more at once
        else:
            # The string opened at `lone` is cut by the window's end: count up to it, resume there.
            total += sum(stripped[:lone].count(c) for c in _STRUCTURE)
            pos += len(chunk) - (len(stripped) - lone)
            window = _WINDOW
        if total > most:
            break
    return total


def _check_layout(raw: bytes, out: _Findings) -> None:
    # Spec: "The header data MUST begin with a { character" and "MAY be trailing padded with
    # whitespace (0x20)". serde also accepts leading and other whitespace, so such files load.
    if raw[:1] != b"{":
        out.add(codes.ST_HEADER_LAYOUT, f"header starts with {raw[:1]!r}, not '{{'")
    body = raw.rstrip(b" ")
    if body != body.rstrip(b" \t\r\n"):
        out.add(codes.ST_HEADER_LAYOUT, "header padded with tabs or newlines, not only spaces")


def _metadata(value: object, out: _Findings) -> dict[str, str]:
    if value is None:  # absent, or JSON null: safetensors accepts both
        return {}
    if not isinstance(value, dict):
        out.add(codes.ST_BAD_METADATA, f"__metadata__ is {type(value).__name__}, not an object")
        return {}
    bad = [k for k, v in value.items() if not isinstance(v, str)]
    if bad:
        names = ", ".join(repr(k) for k in bad[:10])
        out.add(codes.ST_BAD_METADATA, f"__metadata__ values that are not strings: {names}", keys=names)
    return {k: v for k, v in value.items() if isinstance(v, str)}


def _is_count(value: object) -> bool:
    # bool is an int subclass in Python but not a JSON number.
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _entry(name: str, value: object, out: _Findings) -> TensorEntry | None:
    if not isinstance(value, dict) or not value.keys() >= _FIELDS:
        shown = sorted(value) if isinstance(value, dict) else type(value).__name__
        out.add(codes.ST_BAD_ENTRY, f"tensor {name!r}: entry is {shown}", tensor=name)
        return None
    extra = sorted(set(value) - _FIELDS)
    if extra:
        out.add(codes.ST_UNKNOWN_FIELD, f"tensor {name!r}: unknown fields {extra}", tensor=name, fields=extra)
    dtype, shape, offsets = value["dtype"], value["shape"], value["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        out.add(codes.ST_BAD_DTYPE, f"tensor {name!r}: dtype {str(dtype)[:100]!r}", tensor=name)
        dtype = ""
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        out.add(codes.ST_BAD_SHAPE, f"tensor {name!r}: shape {str(shape)[:200]}", tensor=name)
        shape = None
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)):
        out.add(codes.ST_BAD_OFFSETS, f"tensor {name!r}: data_offsets {str(offsets)[:200]}", tensor=name)
        return None
    begin, end = offsets
    if end < begin:
        out.add(codes.ST_BAD_OFFSETS, f"tensor {name!r}: end {end} < begin {begin}", tensor=name)
        return None
    if dtype and shape is not None:
        _check_size(name, dtype, shape, end - begin, out)
    return TensorEntry(name, dtype, tuple(shape or ()), begin, end)


def _check_size(name: str, dtype: str, shape: list[int], span: int, out: _Findings) -> None:
    bits = DTYPE_BITS[dtype]
    for dim in shape:
        bits *= dim
        if bits > _USIZE_MAX:  # stop before a hostile shape builds a huge integer
            out.add(codes.ST_SIZE_MISMATCH, f"tensor {name!r}: size of shape {shape[:8]} overflows u64", tensor=name)
            return
    if bits % 8:
        out.add(codes.ST_SIZE_MISMATCH, f"tensor {name!r}: {bits} bits is not a whole number of bytes", tensor=name)
    elif bits // 8 != span:
        out.add(
            codes.ST_SIZE_MISMATCH,
            f"tensor {name!r}: {dtype}{shape} needs {bits // 8} bytes, data_offsets span {span}",
            tensor=name,
            expected=bits // 8,
            span=span,
        )


def _check_layout_of_data(entries: list[TensorEntry], data_len: int, out: _Findings) -> None:
    # Mirrors Metadata::validate: sorted by begin, each tensor starts where the previous ended.
    expected, previous = 0, ""
    for entry in entries:
        if entry.begin > expected:
            out.add(
                codes.ST_GAP,
                f"{entry.begin - expected} unreferenced bytes before tensor {entry.name!r}",
                tensor=entry.name,
                offset=expected,
            )
        elif entry.begin < expected:
            out.add(
                codes.ST_OVERLAP,
                f"tensor {entry.name!r} starts at {entry.begin}, inside {previous!r} (ends at {expected})",
                tensor=entry.name,
                other=previous,
            )
        if entry.end > data_len:
            out.add(
                codes.ST_OUT_OF_BOUNDS,
                f"tensor {entry.name!r} ends at {entry.end}, data region is {data_len} bytes",
                tensor=entry.name,
            )
        if entry.end >= expected:
            expected, previous = entry.end, entry.name
    if data_len > expected:
        out.add(
            codes.ST_TRAILING_DATA,
            f"{data_len - expected} bytes after the last tensor (data ends at {expected})",
            hidden_bytes=data_len - expected,
            offset=expected,
        )


class SafetensorsAnalyzer:
    """Analyzer for safetensors files: header validation only (no code can run from tensor bytes)."""

    name = "safetensors"
    formats = frozenset({FileFormat.SAFETENSORS})

    def analyze(self, source: ByteSource, where: Location, ctx: ScanContext) -> Iterator[Finding]:
        """Yield one finding per malformation of the header, then analyse bytes hidden in the data region."""
        ctx.check_time()
        header, findings = _parse(source, ctx.limits, where)
        yield from findings
        if header is None:
            return
        start = header.data_start
        if pickle_stream_at(source, start):
            message = f"a complete pickle stream starts the data region at offset {start}"
            yield codes.ST_DATA_IS_PICKLE.at(where.path, message, member=where.member, offset=start)
            yield from ctx.nested(SliceSource(source, start, source.size - start), where.child(f"<data@{start}>"))
            return
        if any(f.code == codes.ST_TRAILING_DATA.code for f in findings):
            # What hides after the last tensor is analysed where it sits (an appended pickle's globals).
            hidden = start + max((t.end for t in header.tensors), default=0)
            at = where.child(f"<after-tensors@{hidden}>")
            yield from ctx.nested(SliceSource(source, hidden, source.size - hidden), at)
