"""GGUF header validation: header, metadata key/values and tensor infos.

Layout (``ggml/docs/gguf.md``): ``GGUF`` magic, u32 version (1-3), tensor and
key/value counts (u32 in v1, u64 later), the key/values, one info per tensor
(name, dims, ggml type, offset relative to the data section), padding to
``general.alignment`` (default 32), then the tensor data. Everything before
the data section is parsed within ``max_header_bytes``; every count, string
and array length is checked against the bytes left before it is trusted.
The tensor layout is then checked as llama.cpp's ``gguf_init_from_file``
does (known types, aligned offsets, in bounds, no overlap) plus bytes that
no tensor references. Chat templates (every string under a key containing
``chat_template``) are parsed by Jinja and judged by the allowlist of
:mod:`weightguard.formats.jinja_template` (CVE-2024-34359 in
llama-cpp-python); one that does not parse is refused.

Not handled here: tensor bytes are never read, the padding bytes between
tensors are not inspected, and big-endian GGUF files (which detection does
not route here) are reported as an unsupported version.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from weightguard.analysis.interface import Location, ScanContext
from weightguard.errors import FormatError
from weightguard.findings import Finding, Rule
from weightguard.formats import header_codes as codes
from weightguard.formats.interface import FileFormat
from weightguard.sources.interface import ByteSource

# ggml type id -> (elements per block, bytes per block), from ggml's type_traits; ids 4, 5,
# 31-33 and 36-38 were removed from ggml and are refused by llama.cpp.
GGML_TYPES: dict[int, tuple[int, int]] = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 36),
    10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
    16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110), 22: (256, 82),
    23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 29: (256, 56), 30: (1, 2),
    34: (256, 54), 35: (256, 66), 39: (32, 17), 40: (64, 36), 41: (128, 18),
}  # fmt: skip
_FIXED_VALUE_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_BOOL, _STRING, _ARRAY, _UINT32 = 7, 8, 9, 4
_MAX_DIMS = 4  # GGML_MAX_DIMS
_INT64_MAX = 2**63 - 1
_DEFAULT_ALIGNMENT = 32
_CHUNK = 1 << 20
_MAX_PER_RULE = 20


class _StopError(FormatError):
    """Internal: parsing cannot go on; carries the finding that says why."""

    def __init__(self, rule: Rule, message: str) -> None:
        super().__init__(message)
        self.rule = rule


@dataclass
class _Cursor:
    """Sequential reads through a source, buffered, never past ``limit`` header bytes."""

    source: ByteSource
    limit: int
    big_counts: bool  # u64 counts and lengths (v2, v3) or u32 (v1)
    pos: int = 0
    _buf: bytes = b""
    _buf_at: int = 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > self.limit and self.pos + n <= self.source.size:
            raise _StopError(codes.GGUF_HEADER_TOO_LARGE, f"{what} at {self.pos} passes max_header_bytes {self.limit}")
        if n < 0 or self.pos + n > self.source.size:
            raise _StopError(codes.GGUF_TRUNCATED, f"{what} at offset {self.pos} needs {n} bytes past the end of file")
        rel = self.pos - self._buf_at
        if rel < 0 or rel + n > len(self._buf):
            self._buf_at = self.pos
            self._buf = self.source.read_at(self.pos, max(n, _CHUNK))
            rel = 0
        self.pos += n
        return self._buf[rel : rel + n]

    def skip(self, n: int, what: str) -> None:
        if n > _CHUNK:  # do not buffer what is only skipped; just check it is there
            if self.pos + n > min(self.limit, self.source.size):
                self.take(n, what)  # raises the right finding
            self.pos += n
        else:
            self.take(n, what)

    def u32(self, what: str) -> int:
        return int(struct.unpack("<I", self.take(4, what))[0])

    def u64(self, what: str) -> int:
        return int(struct.unpack("<Q", self.take(8, what))[0])

    def count(self, what: str) -> int:
        return self.u64(what) if self.big_counts else self.u32(what)

    def string(self, what: str) -> str:
        raw = self.take(self.count(f"{what} length"), what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _StopError(codes.GGUF_BAD_VALUE, f"{what} at {self.pos - len(raw)} is not UTF-8") from exc


@dataclass(frozen=True, slots=True)
class _TensorInfo:
    name: str
    dims: tuple[int, ...]
    ggml_type: int
    offset: int
    nbytes: int


@dataclass
class _Gguf:
    where: Location
    ctx: ScanContext
    findings: list[Finding] = field(default_factory=list)
    templates: dict[str, str] = field(default_factory=dict)
    alignment: int = _DEFAULT_ALIGNMENT
    sizes_known: bool = True  # False once a tensor's size cannot be computed: gaps are then meaningless

    def add(self, rule: Rule, message: str, **evidence: object) -> None:
        if sum(1 for f in self.findings if f.code == rule.code) >= _MAX_PER_RULE:
            return
        evidence_text = {k: str(v) for k, v in evidence.items()}
        self.findings.append(
            Finding(rule.code, rule.severity, rule.kind, self.where.path, message, self.where.member, evidence_text)
        )

    def run(self, source: ByteSource) -> None:
        head = source.read_at(0, 8)
        if len(head) < 8 or head[:4] != b"GGUF":
            self.add(codes.GGUF_BAD_HEADER, "no GGUF magic and version")
            return
        version = struct.unpack_from("<I", head, 4)[0]
        if version not in (1, 2, 3):
            self.add(codes.GGUF_BAD_HEADER, f"unsupported GGUF version {version}", version=version)
            return
        cur = _Cursor(source, self.ctx.limits.max_header_bytes, big_counts=version >= 2)
        cur.pos = 8
        try:
            n_tensors, n_kv = cur.count("tensor count"), cur.count("key/value count")
            # A key/value needs at least 9 bytes and a tensor info 20: reject impossible counts up front.
            if n_kv * 9 + n_tensors * 20 > source.size - cur.pos:
                self.add(codes.GGUF_BAD_HEADER, f"{n_kv} key/values and {n_tensors} tensors cannot fit in the file")
                return
            self._metadata(cur, n_kv)
            infos = self._tensor_infos(cur, n_tensors)
        except _StopError as stop:
            self.add(stop.rule, stop.message)
            return
        self._check_templates()
        data_start = -(-cur.pos // self.alignment) * self.alignment
        self._check_layout(infos, data_start, source.size)

    def _metadata(self, cur: _Cursor, n_kv: int) -> None:
        seen: set[str] = set()
        for i in range(n_kv):
            if i % 4096 == 0:
                self.ctx.check_time()
            key = cur.string("metadata key")
            if key in seen:
                self.add(codes.GGUF_DUPLICATE, f"metadata key {key!r} appears twice", key=key)
            seen.add(key)
            vtype = cur.u32(f"type of {key!r}")
            keep = "chat_template" in key
            value = self._value(cur, key, vtype, keep, depth=0)
            if key == "general.alignment":
                self._set_alignment(vtype, value)
            # A repeated key keeps every copy: readers disagree on which one wins.
            name = key if key not in self.templates else f"{key} (copy {i})"
            if keep and isinstance(value, str):
                self.templates[name] = value
            elif keep and isinstance(value, list):
                self.templates.update({f"{name}[{j}]": v for j, v in enumerate(value) if isinstance(v, str)})

    def _value(self, cur: _Cursor, key: str, vtype: int, keep: bool, depth: int) -> object:
        if vtype in _FIXED_VALUE_SIZES:
            raw = cur.take(_FIXED_VALUE_SIZES[vtype], f"value of {key!r}")
            if vtype == _BOOL and raw[0] > 1:
                self.add(codes.GGUF_BAD_VALUE, f"bool {key!r} holds {raw[0]}", key=key)
            return int(struct.unpack("<I", raw)[0]) if vtype == _UINT32 else None
        if vtype == _STRING:
            return cur.string(f"value of {key!r}")
        if vtype != _ARRAY:
            raise _StopError(codes.GGUF_BAD_VALUE, f"{key!r} has unknown value type {vtype}")
        if depth >= self.ctx.limits.max_nesting_depth:
            raise _StopError(codes.GGUF_BAD_VALUE, f"{key!r}: arrays nested deeper than {depth}")
        etype, length = cur.u32(f"element type of {key!r}"), cur.count(f"length of {key!r}")
        if etype in _FIXED_VALUE_SIZES:
            size = _FIXED_VALUE_SIZES[etype] * length
            if etype == _BOOL and length <= _CHUNK:
                if any(b > 1 for b in cur.take(size, f"array {key!r}")):
                    self.add(codes.GGUF_BAD_VALUE, f"bool array {key!r} holds values other than 0 and 1", key=key)
            else:
                cur.skip(size, f"array {key!r}")
            return None
        if etype not in (_STRING, _ARRAY):
            raise _StopError(codes.GGUF_BAD_VALUE, f"array {key!r} has unknown element type {etype}")
        # Every element needs at least a length field (or a nested array's header).
        if length * (8 if cur.big_counts else 4) > cur.source.size - cur.pos:
            raise _StopError(codes.GGUF_TRUNCATED, f"array {key!r} of {length} elements cannot fit in the file")
        items: list[object] = []
        for j in range(length):
            if j % 65536 == 0:
                self.ctx.check_time()
            item = self._value(cur, key, etype, keep, depth + 1)
            if keep:
                items.append(item)
        return items

    def _set_alignment(self, vtype: int, value: object) -> None:
        if vtype != _UINT32 or not isinstance(value, int) or value <= 0 or value & (value - 1):
            self.add(codes.GGUF_BAD_ALIGNMENT, f"general.alignment is {value!r} (type {vtype})")
            return
        self.alignment = value

    def _tensor_infos(self, cur: _Cursor, n_tensors: int) -> list[_TensorInfo]:
        infos: list[_TensorInfo] = []
        names: set[str] = set()
        for i in range(n_tensors):
            if i % 4096 == 0:
                self.ctx.check_time()
            name = cur.string("tensor name")
            n_dims = cur.u32(f"dimension count of {name!r}")
            if n_dims > _MAX_DIMS:
                raise _StopError(codes.GGUF_BAD_TENSOR, f"tensor {name!r} has {n_dims} dimensions (max {_MAX_DIMS})")
            dims = tuple(cur.count(f"dimension of {name!r}") for _ in range(n_dims))
            ggml_type, offset = cur.u32(f"type of {name!r}"), cur.u64(f"offset of {name!r}")
            if name in names:
                self.add(codes.GGUF_DUPLICATE, f"tensor name {name!r} appears twice", tensor=name)
            names.add(name)
            nbytes = self._nbytes(name, dims, ggml_type)
            if nbytes is None:
                self.sizes_known = False
            else:
                infos.append(_TensorInfo(name, dims, ggml_type, offset, nbytes))
        return infos

    def _nbytes(self, name: str, dims: tuple[int, ...], ggml_type: int) -> int | None:
        if ggml_type not in GGML_TYPES:
            self.add(codes.GGUF_BAD_TENSOR, f"tensor {name!r} has unknown ggml type {ggml_type}", tensor=name)
            return None
        block, size = GGML_TYPES[ggml_type]
        elements = 1
        for dim in dims:
            elements *= dim
            if elements > _INT64_MAX:
                self.add(codes.GGUF_BAD_TENSOR, f"tensor {name!r}: element count of {list(dims)} overflows int64")
                return None
        if dims and dims[0] % block:
            self.add(codes.GGUF_BAD_TENSOR, f"tensor {name!r}: row of {dims[0]} is not a multiple of {block}")
            return None
        return elements // block * size

    def _check_layout(self, infos: list[_TensorInfo], data_start: int, file_size: int) -> None:
        align = self.alignment
        for info in infos:
            if info.offset % align:
                self.add(codes.GGUF_MISALIGNED, f"tensor {info.name!r} at {info.offset} (alignment {align})")
            if data_start + info.offset + info.nbytes > file_size:
                self.add(codes.GGUF_OUT_OF_BOUNDS, f"tensor {info.name!r} ends past the end of file", tensor=info.name)
        if not self.sizes_known:
            return
        expected, previous = 0, ""
        for info in sorted(infos, key=lambda t: (t.offset, t.nbytes)):
            if info.offset < expected and info.nbytes and previous:
                self.add(codes.GGUF_OVERLAP, f"tensor {info.name!r} overlaps {previous!r}", tensor=info.name)
            elif info.offset > expected:
                self.add(codes.GGUF_GAP, f"{info.offset - expected} unreferenced bytes before {info.name!r}")
            end = -(-(info.offset + info.nbytes) // align) * align
            if end > expected:
                expected, previous = end, info.name
        # The file may stop right after the last tensor or after its padding, nothing more.
        limit = data_start + expected if infos else data_start
        if file_size > limit:
            self.add(codes.GGUF_GAP, f"{file_size - limit} bytes after the last tensor", hidden_bytes=file_size - limit)

    def _check_templates(self) -> None:
        # jinja2 is imported only when a file carries a chat template (start-up of every other scan).
        from weightguard.formats.jinja_template import check_template

        for key, template in self.templates.items():
            self.ctx.check_time()
            verdict = check_template(template)
            if verdict.syntax_error is not None:
                self.add(codes.CFG_TEMPLATE_UNPARSABLE, f"{key} {verdict.summary()}", key=key)
            elif verdict.issues:
                shown = ", ".join(sorted({issue.construct for issue in verdict.issues})[:10])
                self.add(codes.GGUF_TEMPLATE_INJECTION, f"{key} {verdict.summary()}", key=key, constructs=shown)


class GgufAnalyzer:
    """Analyzer for GGUF files: header, metadata and tensor layout checks."""

    name = "gguf"
    formats = frozenset({FileFormat.GGUF})

    def analyze(self, source: ByteSource, where: Location, ctx: ScanContext) -> Iterator[Finding]:
        """Yield one finding per malformation or suspicious chat template."""
        ctx.check_time()
        state = _Gguf(where, ctx)
        state.run(source)
        yield from state.findings
