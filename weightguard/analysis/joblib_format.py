"""joblib files: a pickle whose numpy arrays are written as raw bytes inside the stream.

``joblib.dump`` (>= 0.12, ``numpy_pickle.py``) pickles a ``NumpyArrayWrapper``
in place of each array and writes the array's bytes (or, for object arrays, a
nested pickle) right after the wrapper's BUILD. :class:`JoblibAnalyzer` walks
the stream with the BUILD hook of :mod:`weightguard.analysis.joblib_wrapper`,
which sizes each array exactly as ``joblib.load`` reads it, and reports arrays
that start inside a pickle FRAME. Because ``pickle.load`` (no joblib) runs the
same file without skipping anything, the raw file is also judged as a plain
pickle; globals only that view names are a divergence (issue 15).

Compressed joblib files (old ``ZF`` zfile, zlib, gzip, bz2, lzma, xz) are
decompressed here with the per-file caps (``ctx.charge_decompressed``,
``max_compression_ratio``), because their content is joblib's format, not a
plain pickle. A ``ZF`` file is recognised as joblib's ``read_zfile`` reads it
(:func:`weightguard.formats.detect.zfile_header`: ``int(field, 16)``, the
optional space) and its content as ``ZipNumpyUnpickler`` reads it: no array
hook, since that unpickler reads no array bytes from the stream. Not handled here: lz4 (reported as skipped), the joblib < 0.10
layout that keeps arrays in separate ``.npy`` files (its wrappers are denied
by the allowlist), and reading array values.
"""

from __future__ import annotations

import bz2
import dataclasses
import lzma
import zlib
from collections.abc import Callable, Iterator
from typing import Protocol

from weightguard.analysis import codes
from weightguard.analysis.interface import Location, ScanContext
from weightguard.analysis.joblib_wrapper import ArrayHook, frame_desyncs
from weightguard.analysis.opcodes import AnomalyKind, PickleTrace, walk_pickle
from weightguard.analysis.pickle_analyzer import judge
from weightguard.errors import LimitExceeded
from weightguard.findings import Finding
from weightguard.formats.detect import ZFILE_HEADER, ZFILE_PREFIX, zfile_header
from weightguard.formats.interface import FileFormat
from weightguard.sources.interface import ByteSource, BytesSource

_CHUNK = 1 << 16  # compressed bytes fed per step
_STEP = 1 << 20  # most decompressed bytes produced per step
_PREFIXES: tuple[tuple[bytes, str], ...] = (
    (ZFILE_PREFIX, "zfile"),
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


def decompress(source: ByteSource, kind: str, ctx: ScanContext) -> tuple[bytes | None, str]:
    """Decompress a compressed joblib file under the caps; return (data or None, problem text or '')."""
    start = 0
    if kind == "zfile":
        header = zfile_header(source.read_at(0, ZFILE_HEADER + 1))
        if header is None:
            return None, "bad ZF header"
        start = header[1]
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


_PARSE_ONLY = frozenset(
    {
        AnomalyKind.INVALID_OPCODE, AnomalyKind.TRUNCATED, AnomalyKind.MISSING_STOP, AnomalyKind.STACK_UNDERFLOW,
        AnomalyKind.MEMO_MISS, AnomalyKind.BAD_ARGUMENT, AnomalyKind.UNKNOWN_PROTOCOL, AnomalyKind.UNUSED_VALUES,
        AnomalyKind.TOO_MANY,
    }
)  # fmt: skip
"""Anomalies after which ``pickle.load`` has already stopped with an error (what ran before is judged)."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Seen:
    """What joblib's view of the same bytes already reported, by offset (empty for a compressed file)."""

    globals: frozenset[tuple[str, int]] = frozenset()
    anomalies: frozenset[tuple[AnomalyKind, int]] = frozenset()
    embedded: frozenset[int] = frozenset()

    @classmethod
    def of(cls, trace: PickleTrace, hook: ArrayHook) -> _Seen:
        return cls(
            frozenset({(g.name, g.offset) for g in trace.globals} | hook.nested_globals),
            frozenset((a.kind, a.offset) for a in trace.anomalies),
            frozenset(b.offset for b in trace.embedded),
        )


def _plain_view(source: ByteSource, where: Location, ctx: ScanContext, seen: _Seen) -> Iterator[Finding]:
    """Judge the file as ``pickle.load`` reads it: no array skipping, so array bytes are opcodes.

    A file naming joblib's wrapper is still a pickle: ``pickle.load`` runs everything up to the
    first error, including opcodes hidden in the bytes joblib reads as array data. Parse errors
    only end that load, so they are not findings here; every global it names, every semantic
    anomaly and every nested constant that joblib's view did not already report is judged, and
    globals joblib's view does not name are a divergence.
    """
    trace = walk_pickle(source, 0, ctx)
    extra = sorted({(g.name, g.offset) for g in trace.globals} - seen.globals, key=lambda g: g[1])
    fresh = dataclasses.replace(
        trace,
        globals=tuple(g for g in trace.globals if (g.name, g.offset) not in seen.globals),
        anomalies=tuple(
            a for a in trace.anomalies if a.kind not in _PARSE_ONLY and (a.kind, a.offset) not in seen.anomalies
        ),
        embedded=tuple(b for b in trace.embedded if b.offset not in seen.embedded),
    )
    yield from judge(fresh, source, where.child("<as pickle.load>"), ctx)
    if extra:
        names = ", ".join(f"{name}@{offset}" for name, offset in extra[:5])
        message = f"pickle.load imports globals joblib.load never reads as opcodes: {names}"
        yield codes.JOBLIB_VIEWS_DIVERGE.at(where.path, message, member=where.member, offset=extra[0][1])


def _frame_findings(source: ByteSource, where: Location, trace_end: int, hook: ArrayHook) -> Iterator[Finding]:
    for pos, frame_end in frame_desyncs(source, 0, trace_end, hook.reads)[:5]:
        message = (
            f"joblib array at offset {pos} starts inside a pickle FRAME ending at {frame_end}: joblib reads the "
            "array after the frame while the unpickler executes the frame's remaining bytes"
        )
        yield codes.JOBLIB_FRAME.at(where.path, message, member=where.member, offset=pos, frame_end=frame_end)


def _zfile_view(source: ByteSource, where: Location, ctx: ScanContext) -> Iterator[Finding]:
    """Judge an inflated ``ZF`` file as ``numpy_pickle_compat.ZipNumpyUnpickler`` reads it.

    That unpickler is ``pickle._Unpickler`` whose BUILD hook only swaps an ``NDArrayWrapper``
    (denied by the allowlist) for the array it loads from a separate file: it reads no array
    bytes from the stream, so a ``NumpyArrayWrapper`` there is an ordinary object and the bytes
    a joblib >= 0.12 file would hold as its array are opcodes it executes (issue 15). Hence no
    array hook here.
    """
    trace = walk_pickle(source, 0, ctx)
    yield from judge(trace, source, where, ctx)
    if trace.stopped and trace.end < source.size:
        message = f"{source.size - trace.end} bytes after the zfile pickle's STOP at offset {trace.end}"
        yield codes.TRAILING_DATA.at(where.path, message, member=where.member, offset=trace.end)


class JoblibAnalyzer:
    """Analyzer for joblib files (plain or compressed), as joblib.load and as pickle.load read them."""

    name = "joblib"
    formats = frozenset({FileFormat.JOBLIB})

    def analyze(self, source: ByteSource, where: Location, ctx: ScanContext) -> Iterator[Finding]:
        """Yield findings for the joblib pickle, its object arrays, its compression and its plain-pickle view."""
        raw, raw_where = source, where
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
        if kind == "zfile":
            yield from _zfile_view(source, where, ctx)
            return
        hook = ArrayHook(source, where, ctx)
        trace = walk_pickle(source, 0, ctx, on_build=hook)
        yield from judge(trace, source, where, ctx)
        yield from hook.findings
        if hook.reads:
            yield from _frame_findings(source, where, trace.end, hook)
        if trace.stopped and trace.end < source.size:
            message = f"{source.size - trace.end} bytes after the joblib pickle's STOP at offset {trace.end}"
            yield codes.TRAILING_DATA.at(where.path, message, member=where.member, offset=trace.end)
        # Offsets only compare within the same bytes: a compressed file's plain view shares none.
        yield from _plain_view(raw, raw_where, ctx, _Seen.of(trace, hook) if kind is None else _Seen())
