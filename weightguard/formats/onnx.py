"""ONNX model checks through a minimal protobuf wire-format reader.

Why hand-written: the ``onnx`` package is large, native and not a core
dependency, and it parses (and allocates) every tensor of the model. Only a
few fields matter here, so this module walks the wire format itself, never
reading the bytes of a field it does not need (inline weights are skipped by
offset). It walks ``ModelProto`` -> graphs (and every subgraph held in node
attributes, training info and local functions) -> nodes and ``TensorProto``s,
and reports:

* external-data locations that leave the model directory (absolute, ``..``,
  drive letters, URLs), which make a loader read or map arbitrary files;
* malformed external-data entries;
* operators from custom domains, which need a custom operator library (native
  code) to run; ONNX Runtime's ``com.microsoft`` contrib domain is only noted;
* broken wire format and nesting deeper than protobuf's recursion limit.

Not handled here: checking the graph's semantics (types, shapes, opset
versions), the contents of external data files, or embedded custom-op
libraries shipped beside the model (those are separate files, scanned on
their own).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from weightguard.analysis.interface import Location, ScanContext
from weightguard.errors import FormatError
from weightguard.findings import Finding, Rule
from weightguard.formats import header_codes as codes
from weightguard.formats.interface import FileFormat
from weightguard.sources.interface import ByteSource

STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "ai.onnx.training", "ai.onnx.preview.training"})
VENDOR_DOMAIN = "com.microsoft"  # ONNX Runtime contrib operators, compiled into the runtime
_MAX_DEPTH = 100  # protobuf's default recursion limit
_MAX_STRING = 4096  # longest name/domain/location read; longer locations are malformed
_CHUNK = 1 << 16
_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5
_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")  # also catches Windows drive letters ("C:")


class _WireError(FormatError):
    """Internal: the wire format is broken at ``offset``."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} at offset {offset}")
        self.offset = offset


class _TooDeepError(FormatError):
    """Internal: messages nest deeper than protobuf allows."""


@dataclass(frozen=True, slots=True)
class _Field:
    number: int
    wire: int
    value: int  # the varint value, or the payload offset of a length-delimited field
    length: int = 0


@dataclass
class _Reader:
    """Buffered random access over the source, for small reads."""

    source: ByteSource
    _buf: bytes = b""
    _at: int = 0

    def read(self, offset: int, length: int) -> bytes:
        rel = offset - self._at
        if rel < 0 or rel + length > len(self._buf):
            self._at, self._buf = offset, self.source.read_at(offset, max(length, _CHUNK))
            rel = 0
        return self._buf[rel : rel + length]

    def varint(self, pos: int, end: int) -> tuple[int, int]:
        result = shift = 0
        for i in range(10):
            if pos + i >= end:
                raise _WireError("truncated varint", pos)
            byte = self.read(pos + i, 1)[0]
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result, pos + i + 1
            shift += 7
        raise _WireError("varint longer than 10 bytes", pos)

    def fields(self, start: int, end: int) -> Iterator[_Field]:
        pos = start
        while pos < end:
            tag, pos = self.varint(pos, end)
            number, wire = tag >> 3, tag & 7
            if number == 0:
                raise _WireError("field number 0", pos)
            if wire == _VARINT:
                value, pos = self.varint(pos, end)
                yield _Field(number, wire, value)
            elif wire in (_FIXED64, _FIXED32):
                pos += 8 if wire == _FIXED64 else 4
                if pos > end:
                    raise _WireError("truncated fixed-width field", pos)
            elif wire == _LEN:
                length, pos = self.varint(pos, end)
                if pos + length > end:
                    raise _WireError(f"field {number} of {length} bytes runs past its message", pos)
                yield _Field(number, wire, pos, length)
                pos += length
            else:
                raise _WireError(f"wire type {wire} (groups are not used by ONNX)", pos)

    def text(self, f: _Field) -> str:
        return self.read(f.value, min(f.length, _MAX_STRING)).decode("utf-8", "replace")


@dataclass
class _Walk:
    reader: _Reader
    where: Location
    ctx: ScanContext
    findings: list[Finding] = field(default_factory=list)
    ops: dict[tuple[str, str], int] = field(default_factory=dict)  # (domain, op_type) -> node count
    functions: set[tuple[str, str]] = field(default_factory=set)  # local functions (domain, name)
    visited: int = 0

    def add(self, rule: Rule, message: str, **evidence: object) -> None:
        text = {k: str(v) for k, v in evidence.items()}
        self.findings.append(
            Finding(rule.code, rule.severity, rule.kind, self.where.path, message, self.where.member, text)
        )

    def sub(self, f: _Field, depth: int) -> Iterator[_Field]:
        if f.wire != _LEN:
            return
        if depth > _MAX_DEPTH:
            raise _TooDeepError(f"messages nested deeper than {_MAX_DEPTH}")
        for child in self.reader.fields(f.value, f.value + f.length):
            self.visited += 1
            if self.visited % 10_000 == 0:
                self.ctx.check_time()
            yield child

    def model(self, size: int) -> None:
        root = _Field(0, _LEN, 0, size)
        for f in self.sub(root, 0):
            if f.number == 7:  # graph
                self.graph(f, 1)
            elif f.number == 25:  # functions
                self.function(f, 1)
            elif f.number == 20:  # training_info: initialization (1) and algorithm (2) graphs
                for g in self.sub(f, 1):
                    if g.number in (1, 2):
                        self.graph(g, 2)

    def graph(self, f: _Field, depth: int) -> None:
        for g in self.sub(f, depth):
            if g.number == 1:
                self.node(g, depth + 1)
            elif g.number == 5:
                self.tensor(g, depth + 1)
            elif g.number == 15:  # sparse_initializer: values (1) and indices (2)
                self.sparse(g, depth + 1)

    def function(self, f: _Field, depth: int) -> None:
        name = domain = ""
        for g in self.sub(f, depth):
            if g.number == 1 and g.wire == _LEN:
                name = self.reader.text(g)
            elif g.number == 10 and g.wire == _LEN:
                domain = self.reader.text(g)
            elif g.number == 7:
                self.node(g, depth + 1)
        self.functions.add((domain, name))

    def node(self, f: _Field, depth: int) -> None:
        op_type = domain = ""
        for g in self.sub(f, depth):
            if g.number == 4 and g.wire == _LEN:
                op_type = self.reader.text(g)
            elif g.number == 7 and g.wire == _LEN:
                domain = self.reader.text(g)
            elif g.number == 5:
                self.attribute(g, depth + 1)
        self.ops[(domain, op_type)] = self.ops.get((domain, op_type), 0) + 1

    def attribute(self, f: _Field, depth: int) -> None:
        for g in self.sub(f, depth):
            if g.number in (5, 10):  # t, tensors
                self.tensor(g, depth + 1)
            elif g.number in (6, 11):  # g, graphs
                self.graph(g, depth + 1)
            elif g.number in (22, 23):  # sparse_tensor, sparse_tensors
                self.sparse(g, depth + 1)

    def sparse(self, f: _Field, depth: int) -> None:
        for g in self.sub(f, depth):
            if g.number in (1, 2):
                self.tensor(g, depth + 1)

    def tensor(self, f: _Field, depth: int) -> None:
        name, location_kind, entries = "", 0, []
        for g in self.sub(f, depth):
            if g.number == 8 and g.wire == _LEN:
                name = self.reader.text(g)
            elif g.number == 14 and g.wire == _VARINT:
                location_kind = g.value
            elif g.number == 13:
                key = value = ""
                value_len = 0
                for h in self.sub(g, depth + 1):
                    if h.number == 1 and h.wire == _LEN:
                        key = self.reader.text(h)
                    elif h.number == 2 and h.wire == _LEN:
                        value, value_len = self.reader.text(h), h.length
                entries.append((key, value, value_len))
        if entries or location_kind == _EXTERNAL:
            self.external(name, entries)

    def external(self, tensor: str, entries: list[tuple[str, str, int]]) -> None:
        keys = [k for k, _, _ in entries]
        repeated = sorted({k for k in keys if keys.count(k) > 1})
        if repeated:
            self.add(codes.ONNX_EXTERNAL_MALFORMED, f"tensor {tensor!r}: repeated keys {repeated}", tensor=tensor)
        values = {k: (v, n) for k, v, n in entries}
        if "location" not in values:
            self.add(codes.ONNX_EXTERNAL_MALFORMED, f"tensor {tensor!r} is external but has no location", tensor=tensor)
            return
        for key in ("offset", "length"):
            if key in values and not values[key][0].isdigit():
                self.add(codes.ONNX_EXTERNAL_MALFORMED, f"tensor {tensor!r}: {key} is {values[key][0][:40]!r}")
        location, length = values["location"]
        problem = _location_problem(location, length)
        if problem:
            rule = codes.ONNX_EXTERNAL_MALFORMED if problem in ("empty", "too long") else codes.ONNX_EXTERNAL_ESCAPE
            self.add(rule, f"tensor {tensor!r}: external data {location[:200]!r} ({problem})", location=location[:200])

    def report_ops(self) -> None:
        for (domain, op_type), count in sorted(self.ops.items()):
            if domain in STANDARD_DOMAINS or (domain, op_type) in self.functions:
                continue
            evidence = {"domain": domain, "op_type": op_type, "nodes": count}
            if domain == VENDOR_DOMAIN or domain.startswith(VENDOR_DOMAIN + "."):
                self.add(codes.ONNX_VENDOR_DOMAIN, f"{count} node(s) {domain}::{op_type}", **evidence)
            else:
                self.add(codes.ONNX_CUSTOM_DOMAIN, f"{count} node(s) {domain}::{op_type}", **evidence)


def _location_problem(location: str, length: int) -> str:
    if not location:
        return "empty"
    if length > _MAX_STRING:
        return "too long"
    if "\0" in location:
        return "contains NUL"
    if location[0] in "/\\":
        return "absolute path"
    if _URL.match(location):
        return "drive letter or URL scheme"
    if ".." in re.split(r"[/\\]", location):
        return "climbs out with '..'"
    return ""


class OnnxAnalyzer:
    """Analyzer for ONNX models: external data, custom operators and wire-format sanity."""

    name = "onnx"
    formats = frozenset({FileFormat.ONNX})

    def analyze(self, source: ByteSource, where: Location, ctx: ScanContext) -> Iterator[Finding]:
        """Yield findings about external data, custom domains and malformed protobuf."""
        ctx.check_time()
        walk = _Walk(_Reader(source), where, ctx)
        try:
            walk.model(source.size)
        except _WireError as exc:
            walk.add(codes.ONNX_MALFORMED, exc.message, offset=exc.offset)
        except _TooDeepError as exc:
            walk.add(codes.ONNX_TOO_DEEP, exc.message)
        walk.report_ops()
        yield from walk.findings
