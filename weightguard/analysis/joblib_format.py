"""joblib files: a pickle whose numpy arrays are written as raw bytes inside the stream.

``joblib.dump`` (>= 0.12, ``numpy_pickle.py``) pickles a ``NumpyArrayWrapper``
(subclass, shape, order, dtype, allow_mmap, numpy_array_alignment_bytes) in
place of each array and, right after the wrapper's BUILD opcode, writes the
array: one padding-length byte and that many padding bytes when the wrapper
has a non-None ``numpy_array_alignment_bytes`` (joblib >= 1.2), then
``prod(shape) * itemsize`` raw bytes. For object-dtype arrays it writes a
nested protocol-5 pickle instead. :class:`JoblibAnalyzer` walks the stream
with a BUILD hook that sizes each array from the wrapper's symbolic state and
skips its bytes without decoding them, and analyses object arrays as pickles.

Compressed joblib files (old ``ZF`` zfile, zlib, gzip, bz2, lzma, xz) are
decompressed here with the per-file caps (``ctx.charge_decompressed``,
``max_compression_ratio``), because their content is joblib's format, not a
plain pickle. Not handled here: lz4 (reported as skipped), the joblib < 0.10
layout that keeps arrays in separate ``.npy`` files (its wrappers are denied
by the allowlist), and reading array values.
"""

from __future__ import annotations

import bz2
import lzma
import math
import re
import zlib
from collections.abc import Callable, Iterator
from typing import Protocol

from weightguard.analysis import codes
from weightguard.analysis.interface import Location, ScanContext
from weightguard.analysis.opcodes import Made, SymDict, walk_pickle
from weightguard.analysis.pickle_analyzer import analyze_stream, judge
from weightguard.errors import LimitExceeded
from weightguard.findings import Finding
from weightguard.formats.interface import FileFormat
from weightguard.sources.interface import ByteSource, BytesSource

_WRAPPERS = frozenset(
    {"joblib.numpy_pickle.NumpyArrayWrapper", "sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper"}
)
_DTYPES = frozenset({"numpy.dtype"})
_TYPESTR = re.compile(r"^[<>|=]?([bBiufcmMOSUV])(\d*)$")
_ZFILE_HEADER = 2 + len(hex(2**64))  # "ZF" + hex length padded (joblib numpy_pickle_compat.write_zfile)
_CHUNK = 1 << 16  # compressed bytes fed per step
_STEP = 1 << 20  # most decompressed bytes produced per step
_PREFIXES: tuple[tuple[bytes, str], ...] = (
    (b"ZF", "zfile"),
    (b"\x78", "zlib"),
    (b"\x1f\x8b", "gzip"),
    (b"BZ", "bz2"),
    (b"\x5d\x00", "lzma"),
    (b"\xfd7zXZ", "xz"),
    (b"\x04\x22\x4d\x18", "lz4"),
)  # the order joblib's _detect_compressor tries


class _Decompressor(Protocol):
    @property
    def eof(self) -> bool: ...

    def decompress(self, data: bytes, max_length: int = ...) -> bytes: ...


def _dtype_info(dtype: object, depth: int = 0) -> tuple[int | None, bool]:
    """Return (itemsize, has_object) of a symbolic ``numpy.dtype(...)`` value; itemsize None when unknown."""
    if not isinstance(dtype, Made) or dtype.callee.name not in _DTYPES or depth > 8:
        return None, False
    args, state = dtype.args, dtype.state
    match = _TYPESTR.match(args[0]) if isinstance(args, tuple) and args and isinstance(args[0], str) else None
    if match is None:
        return None, False
    state_t = state if isinstance(state, tuple) else ()
    has_object = match.group(1) == "O" or _fields_have_object(state_t, depth)
    elsize = state_t[5] if len(state_t) > 5 and isinstance(state_t[5], int) and state_t[5] > 0 else None
    if elsize is None and match.group(2):
        elsize = int(match.group(2))
    return elsize, has_object


def _fields_have_object(state: tuple[object, ...], depth: int) -> bool:
    """True when a structured or sub-array dtype state holds an object-typed part."""
    parts: list[object] = []
    if len(state) > 2 and isinstance(state[2], tuple) and state[2]:
        parts.append(state[2][0])  # sub-array: (base dtype, shape)
    if len(state) > 4 and isinstance(state[4], SymDict):
        parts.extend(v[0] for _, v in state[4].pairs if isinstance(v, tuple) and v)
    return any(_dtype_info(p, depth + 1)[1] for p in parts)


class _ArrayHook:
    """BUILD hook: after each NumpyArrayWrapper, return how many raw bytes follow it."""

    def __init__(self, source: ByteSource, where: Location, ctx: ScanContext) -> None:
        self.source, self.where, self.ctx = source, where, ctx
        self.findings: list[Finding] = []
        self.arrays = 0

    def __call__(self, made: Made, pos: int) -> int:
        if made.callee.name not in _WRAPPERS:
            return 0
        state = made.state
        if not isinstance(state, SymDict):
            return self._unknown(pos, "wrapper state is not a dict")
        itemsize, has_object = _dtype_info(state.get("dtype"))
        if has_object:  # joblib pickles object arrays with pickle.dump(protocol=5) right here
            trace, findings = analyze_stream(self.source, pos, self.where.child(f"object-array@{pos}"), self.ctx)
            self.findings.extend(findings)
            return trace.end - pos if trace.stopped else 0
        shape = state.get("shape")
        if itemsize is None or not isinstance(shape, tuple) or not all(_dim(d) for d in shape):
            return self._unknown(pos, f"cannot size dtype/shape {state.get('dtype')!r}/{shape!r}")
        skip = 0
        if any(k == "numpy_array_alignment_bytes" for k, _ in state.pairs) and state.get("numpy_array_alignment_bytes"):
            pad = self.source.read_at(pos, 1)
            skip = 1 + (pad[0] if pad else 0)
        self.arrays += 1
        return skip + math.prod(shape) * itemsize

    def _unknown(self, pos: int, why: str) -> int:
        message = f"joblib array wrapper before offset {pos}: {why}"
        self.findings.append(
            codes.JOBLIB_ARRAY.at(self.where.path, message, member=self.where.member, offset=pos, reason=why)
        )
        return 0


def _dim(value: object) -> bool:
    return type(value) is int and value >= 0


def _compression(head: bytes) -> str | None:
    return next((name for prefix, name in _PREFIXES if head.startswith(prefix)), None)


def _decompressor(kind: str) -> Callable[[], _Decompressor]:
    factories: dict[str, Callable[[], _Decompressor]] = {
        "zfile": lambda: zlib.decompressobj(15),
        "zlib": lambda: zlib.decompressobj(15),
        "gzip": lambda: zlib.decompressobj(31),
        "bz2": bz2.BZ2Decompressor,
        "lzma": lambda: lzma.LZMADecompressor(format=lzma.FORMAT_ALONE),
        "xz": lambda: lzma.LZMADecompressor(format=lzma.FORMAT_XZ),
    }
    return factories[kind]


def _zfile_start(source: ByteSource) -> int | None:
    header = source.read_at(0, _ZFILE_HEADER + 1)
    try:
        int(header[2:_ZFILE_HEADER].decode("ascii").strip(), 16)
    except (UnicodeDecodeError, ValueError):
        return None
    return _ZFILE_HEADER + 1 if header[_ZFILE_HEADER:] == b" " else _ZFILE_HEADER


def decompress(source: ByteSource, kind: str, ctx: ScanContext) -> tuple[bytes | None, str]:
    """Decompress a compressed joblib file under the caps; return (data or None, problem text or '')."""
    start = _zfile_start(source) if kind == "zfile" else 0
    if start is None:
        return None, "bad ZF header"
    ratio_cap = ctx.limits.max_compression_ratio * max(source.size - start, 1)
    engine, out, pos = _decompressor(kind)(), bytearray(), start

    def emit(piece: bytes) -> None:
        ctx.charge_decompressed(len(piece))
        out.extend(piece)
        if len(out) > ratio_cap:
            raise LimitExceeded("max_compression_ratio", ctx.limits.max_compression_ratio, len(out) / (pos - start))

    try:
        while pos < source.size and not engine.eof:
            ctx.check_time()
            data = source.read_at(pos, _CHUNK)
            pos += len(data)
            while data or not (engine.eof or getattr(engine, "needs_input", True)):
                piece = engine.decompress(data, _STEP)
                data = getattr(engine, "unconsumed_tail", b"")
                emit(piece)
                if engine.eof or not piece:
                    break
        while not engine.eof and (piece := engine.decompress(b"", _STEP)):  # drain what the last input held
            emit(piece)
    except (zlib.error, OSError, lzma.LZMAError, EOFError) as exc:
        return None, f"{kind} data is corrupt: {exc}"
    if not engine.eof:
        return bytes(out), f"{kind} stream is truncated"
    return bytes(out), ""


class JoblibAnalyzer:
    """Analyzer for joblib files (plain or compressed)."""

    name = "joblib"
    formats = frozenset({FileFormat.JOBLIB})

    def analyze(self, source: ByteSource, where: Location, ctx: ScanContext) -> Iterator[Finding]:
        """Yield findings for the joblib pickle, its object arrays and its compression wrapper."""
        kind = _compression(source.read_at(0, 8))
        if kind == "lz4":
            yield codes.JOBLIB_COMPRESSION.at(where.path, "lz4-compressed joblib file", member=where.member)
            return
        if kind is not None:
            data, problem = decompress(source, kind, ctx)
            if problem:
                yield codes.MALFORMED_STREAM.at(where.path, problem, member=where.member, compression=kind)
            if data is None:
                return
            source, where = BytesSource(data), where.child(f"<{kind}>")
        hook = _ArrayHook(source, where, ctx)
        trace = walk_pickle(source, 0, ctx, on_build=hook)
        yield from judge(trace, source, where, ctx)
        yield from hook.findings
        if trace.stopped and trace.end < source.size:
            message = f"{source.size - trace.end} bytes after the joblib pickle's STOP at offset {trace.end}"
            yield codes.TRAILING_DATA.at(where.path, message, member=where.member, offset=trace.end)
