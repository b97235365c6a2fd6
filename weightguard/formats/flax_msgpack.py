"""Flax ``flax_model.msgpack`` weights: a bounded walk of the msgpack stream.

``flax.serialization.to_bytes`` writes one msgpack map of nested maps whose
leaves are scalars, strings or arrays; arrays are msgpack *ext* values of type
1 (payload: ``[shape, dtype name, raw buffer]``), complex numbers type 2 and
numpy scalars type 3. ``from_bytes`` unpacks them with ``np.frombuffer``:
nothing in the file names code, so a stream that holds only these shapes is
inert. The walk checks that the whole file is one msgpack value (no trailing
bytes, no reserved ``0xc1`` byte), that map keys are strings, that ext types are
only Flax's, that dtypes are numeric, and that each buffer's length equals
``prod(shape) * itemsize``. Tensor buffers are skipped by offset, never read.

Why hand-written: the ``msgpack`` package unpacks a whole file in memory (every
tensor included) and has no bound on nesting besides Python's; walking by
offsets keeps a multi-gigabyte checkpoint at a few reads per tensor.
Bounded by depth (100, like protobuf) and by ``max_pickle_opcodes`` values.

Not handled here: whether the tree matches a model (the caller's template).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from weightguard.errors import FormatError
from weightguard.findings import Finding
from weightguard.formats import asset_codes as codes
from weightguard.formats.interface import FileFormat

if TYPE_CHECKING:
    from weightguard.analysis.interface import Location, ScanContext
    from weightguard.sources.interface import ByteSource

FLAX_NDARRAY, FLAX_COMPLEX, FLAX_SCALAR = 1, 2, 3
ITEMSIZE = {
    "bool": 1,
    "int8": 1,
    "uint8": 1,
    "int16": 2,
    "uint16": 2,
    "float16": 2,
    "bfloat16": 2,
    "int32": 4,
    "uint32": 4,
    "float32": 4,
    "int64": 8,
    "uint64": 8,
    "float64": 8,
    "complex64": 8,
    "complex128": 16,
}
_MAX_DEPTH = 100
_MAX_STRING = 64 * 1024  # longest key or dtype name read
_CHUNK = 1 << 16


class FlaxError(FormatError):
    """The bytes are not a well-formed Flax msgpack state dict."""


class FlaxForeignError(FlaxError):
    """An ext type or dtype Flax does not write."""


class FlaxLimitError(FlaxError):
    """The structure is deeper or larger than the walk allows."""


@dataclass(frozen=True, slots=True)
class _Bin:
    offset: int
    length: int


@dataclass
class _Walker:
    source: ByteSource
    max_values: int
    values: int = 0
    arrays: int = 0
    _buf: bytes = b""
    _at: int = 0

    def read(self, offset: int, length: int) -> bytes:
        if offset + length > self.source.size:
            raise FlaxError(f"value at offset {offset} runs past the end of the file")
        rel = offset - self._at
        if rel < 0 or rel + length > len(self._buf):
            self._at, self._buf = offset, self.source.read_at(offset, max(length, _CHUNK))
            rel = 0
        return self._buf[rel : rel + length]

    def uint(self, offset: int, width: int) -> int:
        return int.from_bytes(self.read(offset, width), "big")

    def head(self, pos: int) -> tuple[str, int, int]:
        """Decode one msgpack header: ``(kind, count or length or ext type, payload offset)``."""
        self.values += 1
        if self.values > self.max_values:
            raise FlaxLimitError(f"more than {self.max_values} msgpack values")
        b = self.read(pos, 1)[0]
        fixed = _fixed(b)
        if fixed is not None:
            return fixed[0], fixed[1], pos + 1
        if b in _SIZED:
            kind, width = _SIZED[b]
            return kind, self.uint(pos + 1, width), pos + 1 + width
        if b in _SCALAR_WIDTH:
            return "scalar", 0, pos + 1 + _SCALAR_WIDTH[b]
        if 0xD4 <= b <= 0xD8:  # fixext 1..16: type byte, then 2**n bytes
            return "ext", pos + 1, pos + 2
        raise FlaxError(f"reserved msgpack byte 0x{b:02x} at offset {pos}")

    def tree(self, pos: int, depth: int) -> int:
        """Walk one value of the state dict; return the offset after it."""
        if depth > _MAX_DEPTH:
            raise FlaxLimitError(f"msgpack values nest deeper than {_MAX_DEPTH}")
        kind, count, body = self.head(pos)
        if kind == "map":
            for _ in range(count):
                key_end, _ = self.string(body)
                body = self.tree(key_end, depth + 1)
            return body
        if kind == "array":
            for _ in range(count):
                body = self.tree(body, depth + 1)
            return body
        if kind == "ext":
            return self.ext(pos, count, body)
        end = body + (count if kind in ("str", "bin") else 0)
        if end > self.source.size:
            raise FlaxError(f"value at offset {pos} runs past the end of the file")
        return end

    def string(self, pos: int) -> tuple[int, str]:
        kind, length, body = self.head(pos)
        if kind not in ("str", "bin") or length > _MAX_STRING:
            raise FlaxError(f"map key or name at offset {pos} is not a short string")
        try:
            return body + length, self.read(body, length).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FlaxError(f"string at offset {body} is not UTF-8") from exc

    def ext(self, pos: int, length_or_type_at: int, body: int) -> int:
        """Check one ext value; ``head`` returned the type's offset (fixext) or the length (ext 8/16/32)."""
        b = self.read(pos, 1)[0]
        if 0xD4 <= b <= 0xD8:
            length, type_at = 1 << (b - 0xD4), length_or_type_at
        else:
            length, type_at = length_or_type_at, body
        ext_type = self.read(type_at, 1)[0]
        start, end = type_at + 1, type_at + 1 + length
        if end > self.source.size:
            raise FlaxError(f"ext payload at offset {start} runs past the end of the file")
        if ext_type == FLAX_NDARRAY:
            self.arrays += 1
            self._ndarray(start, end)
        elif ext_type == FLAX_COMPLEX:
            self._complex(start, end)
        elif ext_type == FLAX_SCALAR:
            self._scalar(start, end)
        else:
            raise FlaxForeignError(f"msgpack ext type {ext_type} at offset {pos} is not one Flax writes")
        return end

    def _array_of(self, pos: int, n: int) -> int:
        kind, count, body = self.head(pos)
        if kind != "array" or count != n:
            raise FlaxError(f"ext payload at offset {pos} is not an array of {n}")
        return body

    def _dtype(self, pos: int) -> tuple[int, int]:
        end, name = self.string(pos)
        if name not in ITEMSIZE:
            raise FlaxForeignError(f"dtype {name[:64]!r} at offset {pos} is not a numeric dtype")
        return end, ITEMSIZE[name]

    def _bin(self, pos: int) -> _Bin:
        kind, length, body = self.head(pos)
        if kind != "bin":
            raise FlaxError(f"array buffer at offset {pos} is not msgpack bin")
        return _Bin(body, length)

    def _int(self, pos: int) -> tuple[int, int]:
        b = self.read(pos, 1)[0]
        if b <= 0x7F:
            return b, pos + 1
        if 0xCC <= b <= 0xCF:
            width = 1 << (b - 0xCC)
            return self.uint(pos + 1, width), pos + 1 + width
        raise FlaxError(f"shape entry at offset {pos} is not a non-negative integer")

    def _ndarray(self, start: int, end: int) -> None:
        pos = self._array_of(start, 3)
        kind, ndim, pos = self.head(pos)
        if kind != "array" or ndim > 64:
            raise FlaxError(f"array shape at offset {start} is not a short list")
        shape = []
        for _ in range(ndim):
            dim, pos = self._int(pos)
            shape.append(dim)
        pos, itemsize = self._dtype(pos)
        buffer = self._bin(pos)
        if buffer.offset + buffer.length != end:
            raise FlaxError(f"array payload at offset {start} does not end where its ext ends")
        if math.prod(shape) * itemsize != buffer.length:
            raise FlaxError(
                f"array at offset {start}: shape {shape} needs {math.prod(shape) * itemsize} bytes, buffer has {buffer.length}"
            )

    def _complex(self, start: int, end: int) -> None:
        pos = self._array_of(start, 2)
        for _ in range(2):
            kind, _, pos = self.head(pos)
            if kind != "scalar":
                raise FlaxError(f"complex value at offset {start} is not two numbers")
        if pos != end:
            raise FlaxError(f"complex payload at offset {start} has trailing bytes")

    def _scalar(self, start: int, end: int) -> None:
        pos, itemsize = self._dtype(self._array_of(start, 2))
        buffer = self._bin(pos)
        if buffer.length != itemsize or buffer.offset + buffer.length != end:
            raise FlaxError(
                f"numpy scalar at offset {start} has a {buffer.length}-byte buffer for a {itemsize}-byte dtype"
            )


def _fixed(b: int) -> tuple[str, int] | None:
    if b <= 0x7F or b >= 0xE0 or b in (0xC0, 0xC2, 0xC3):
        return "scalar", 0
    if 0x80 <= b <= 0x8F:
        return "map", b & 0x0F
    if 0x90 <= b <= 0x9F:
        return "array", b & 0x0F
    if 0xA0 <= b <= 0xBF:
        return "str", b & 0x1F
    return None


_SIZED = {
    0xC4: ("bin", 1),
    0xC5: ("bin", 2),
    0xC6: ("bin", 4),
    0xC7: ("ext", 1),
    0xC8: ("ext", 2),
    0xC9: ("ext", 4),
    0xD9: ("str", 1),
    0xDA: ("str", 2),
    0xDB: ("str", 4),
    0xDC: ("array", 2),
    0xDD: ("array", 4),
    0xDE: ("map", 2),
    0xDF: ("map", 4),
}
_SCALAR_WIDTH = {0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8, 0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8}


def check_state_dict(source: ByteSource, max_values: int) -> str:
    """Walk ``source`` as one Flax msgpack state dict; return a one-line summary.

    Raises:
        FlaxError: Malformed (``FlaxForeignError``: foreign ext or dtype; ``FlaxLimitError``: over a bound).
    """
    walker = _Walker(source, max_values)
    kind, _, _ = walker.head(0)
    walker.values = 0
    if kind != "map":
        raise FlaxError("the top-level msgpack value is not a map")
    end = walker.tree(0, 0)
    if end != source.size:
        raise FlaxError(f"{source.size - end} bytes follow the msgpack value at offset {end}")
    return f"Flax msgpack state dict, {walker.arrays} arrays, {walker.values} values"


class FlaxMsgpackAnalyzer:
    """Analyzer for Flax msgpack weights."""

    name = "flax-msgpack"
    formats = frozenset({FileFormat.FLAX_MSGPACK})

    def analyze(self, source: ByteSource, where: Location, ctx: ScanContext) -> Iterator[Finding]:
        """Yield a finding when the stream is malformed, foreign or over a bound."""
        ctx.check_time()
        try:
            check_state_dict(source, ctx.limits.max_pickle_opcodes)
        except FlaxForeignError as exc:
            yield codes.FLAX_FOREIGN_EXT.at(where.path, exc.message, member=where.member)
        except FlaxLimitError as exc:
            yield codes.FLAX_TOO_LARGE.at(where.path, exc.message, member=where.member)
        except FlaxError as exc:
            yield codes.FLAX_MALFORMED.at(where.path, exc.message, member=where.member)
