"""Container analyzers: zip (and npz, Keras), tar, single-stream compressors, 7z.

Each analyzer lists its container strictly and hands every member back to the
scanner through :meth:`ScanContext.nested`, which detects the member's format
from its bytes and enforces ``max_nesting_depth``; so a pickle inside a zip
inside a tar.gz is analysed like a top-level one. Stored zip members and tar
members are windows on the parent bytes (no copy); compressed content is
inflated incrementally under ``max_compression_ratio`` and the per-file
``max_decompressed_bytes`` budget, into a temporary-file spool so that memory
stays bounded whatever the ratio (issue 15). Tars are read by ``tarfile``
itself on a bounded stream (:mod:`weightguard.formats.tar_reader`); a name
that repeats is a blocking finding and every copy is analysed. Links, devices and unsafe member names are
reported and never followed. Python's ``tarfile`` stops quietly at a truncated
or corrupt later header, so where it stopped is checked here: POSIX's
end-of-archive marker (two zero blocks) must follow the last member, and only
zero padding after it. Single streams include the legacy ``.lzma`` container
(LZMA_alone) that joblib's "lzma" compressor writes.

Not handled here: PyTorch archives (:mod:`weightguard.analysis.torch_formats`),
what the members contain (their own analyzers), extraction to disk (never done).
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from lzma import LZMAError
from types import ModuleType
from typing import Protocol

from weightguard.analysis.interface import Location, ScanContext
from weightguard.errors import LimitExceeded
from weightguard.findings import Finding
from weightguard.formats import codes
from weightguard.formats.archives import (
    RATIO_FLOOR_BYTES,
    Budget,
    open_member,
    read_zip_directory,
    unsafe_name_reason,
)
from weightguard.formats.detect import lzma_alone_header
from weightguard.formats.interface import FileFormat
from weightguard.formats.spool import Spool
from weightguard.formats.tar_reader import TAR_ERRORS, member_key, open_tar
from weightguard.formats.zip_names import zipfile_key
from weightguard.sources.interface import ByteSource, BytesSource, SliceSource, SourceFile

_KERAS_CONFIG = "config.json"
_STREAM_CHUNK = 1 << 20
_TAR_BLOCK = 512


class ZipAnalyzer:
    """Analyzer for plain zip, ``numpy-npz`` and Keras v3 archives."""

    name = "zip"
    formats = frozenset({FileFormat.ZIP, FileFormat.NUMPY_NPZ, FileFormat.KERAS})

    def analyze(self, source: ByteSource, where: Location, ctx: ScanContext) -> Iterator[Finding]:
        """Yield the container's findings, then every member's (via the scanner)."""
        directory = read_zip_directory(source, ctx.limits, path=where.path, member_prefix=where.member)
        yield from directory.findings
        names = {m.name for m in directory.members}
        keras = _KERAS_CONFIG in names and ("model.weights.h5" in names or "metadata.json" in names)
        for member in directory.members:
            if member.is_dir:
                continue
            ctx.check_time()
            at = where.child(member.name)
            opened = open_member(source, member, ctx, path=at.path, member_path=at.member)
            yield from opened.findings
            if opened.source is None:
                continue
            # Keras reads config.json with zipfile (the last duplicate): every copy is checked.
            if keras and zipfile_key(member.name) == _KERAS_CONFIG:
                yield from _keras_config(opened.source, at, ctx)
            yield from ctx.nested(opened.source, at)


def _keras_config(source: ByteSource, where: Location, ctx: ScanContext) -> Iterator[Finding]:
    if source.size > ctx.limits.max_header_bytes:
        raise LimitExceeded("max_header_bytes", ctx.limits.max_header_bytes, source.size)
    # Imported here: the Keras checks live with the header validators.
    from weightguard.formats.keras import check_keras_config

    yield from check_keras_config(source.read_at(0, source.size), where)


def iter_tar(source: ByteSource, where: Location, ctx: ScanContext) -> Iterator[Finding | tuple[str, SliceSource]]:
    """Yield findings about a tar's members and ``(name, content)`` for each regular file, duplicates included.

    The archive is read by ``tarfile`` itself (:mod:`weightguard.formats.tar_reader`):
    what it accepts is a tar, as for torch's legacy loader. A name that repeats
    (compared as ``TarFile.getmember`` does) is a blocking finding: tarfile reads the
    last copy; every copy is still yielded so that all of them are analysed.

    Raises:
        LimitExceeded: more members than ``max_archive_members``, or a header body over ``max_header_bytes``.
    """
    try:
        tar = open_tar(source, ctx.limits)
    except TAR_ERRORS as exc:
        yield codes.ARC_MALFORMED.at(where.path, f"unreadable tar: {exc}", member=where.member)
        return
    count = 0
    seen: set[str] = set()
    while True:
        ctx.check_time()
        try:
            info = tar.next()
        except TAR_ERRORS as exc:
            yield codes.ARC_MALFORMED.at(where.path, f"tar header {count + 1}: {exc}", member=where.member)
            return
        if info is None:
            # tarfile stops quietly at a truncated or corrupt later header, or at a lone
            # zero block: judge where it stopped ourselves (THREATS 5.3: fail closed).
            yield from _tar_end(source, tar.offset, where, ctx)
            return
        count += 1
        if count > ctx.limits.max_archive_members:
            raise LimitExceeded("max_archive_members", ctx.limits.max_archive_members, count)
        tar.members.clear()  # type: ignore[attr-defined]  # tarfile keeps every header otherwise
        at = where.child(info.name)
        key = member_key(info.name)
        if key in seen:
            message = f"name {key!r} appears more than once; tarfile reads the last copy"
            yield codes.ARC_DUPLICATE_NAME.at(where.path, message, member=at.member)
        seen.add(key)
        reason = unsafe_name_reason(info.name)
        if reason is not None:
            yield codes.ARC_UNSAFE_NAME.at(where.path, f"unsafe member name: {reason}", member=at.member)
        if info.islnk() or info.issym():
            yield codes.ARC_LINK.at(where.path, f"link to {info.linkname!r}", member=at.member)
        elif info.isdir():
            continue
        elif not info.isreg() or info.issparse():
            yield codes.ARC_SPECIAL.at(where.path, f"member type {info.type!r}", member=at.member)
        elif info.offset_data + info.size > source.size:
            yield codes.ARC_MALFORMED.at(where.path, "member runs past the end of the archive", member=at.member)
            return
        else:
            yield info.name, SliceSource(source, info.offset_data, info.size)


def _tar_end(source: ByteSource, at: int, where: Location, ctx: ScanContext) -> Iterator[Finding]:
    """Check what follows the last member: POSIX's end-of-archive marker (two zero blocks), then only zeros."""
    problem = _tar_end_problem(source, at, ctx)
    if problem is not None:
        yield codes.ARC_MALFORMED.at(where.path, problem, member=where.member, offset=at)


def _tar_end_problem(source: ByteSource, at: int, ctx: ScanContext) -> str | None:
    if at > source.size:
        return f"last member's data padding runs {at - source.size} bytes past the end of the archive"
    if at == source.size:
        return f"archive ends at offset {at} without the end-of-archive marker (two zero blocks)"
    block = source.read_at(at, _TAR_BLOCK)
    if block.strip(b"\x00"):
        if len(block) < _TAR_BLOCK:
            return f"header at offset {at} is truncated ({len(block)} of {_TAR_BLOCK} bytes)"
        return f"header at offset {at} is invalid (checksum or format); tar readers stop there and skip the rest"
    marker = source.read_at(at, 2 * _TAR_BLOCK)
    if len(marker) < 2 * _TAR_BLOCK:
        return f"end-of-archive marker at offset {at} is truncated ({len(marker)} of {2 * _TAR_BLOCK} zero bytes)"
    if marker.strip(b"\x00"):
        return f"a lone zero block at offset {at} is followed by data that only --ignore-zeros readers see"
    for pos in range(at + 2 * _TAR_BLOCK, source.size, _STREAM_CHUNK):
        ctx.check_time()
        chunk = source.read_at(pos, _STREAM_CHUNK)
        if chunk.strip(b"\x00"):
            offset = pos + len(chunk) - len(chunk.lstrip(b"\x00"))
            return f"non-zero data at offset {offset} after the end-of-archive marker (ignored by tar readers)"
    return None


class TarAnalyzer:
    """Analyzer for tar archives (uncompressed; compressed ones arrive through CompressedAnalyzer)."""

    name = "tar"
    formats = frozenset({FileFormat.TAR})

    def analyze(self, source: ByteSource, where: Location, ctx: ScanContext) -> Iterator[Finding]:
        """Yield the archive's findings, then every regular member's (via the scanner).

        torch.load takes any tar as a legacy checkpoint, so members named ``storages``,
        ``tensors`` or ``pickle`` (however far into the archive) are walked as its pickles.
        """
        # Imported here: the legacy tar walk lives with the other torch layouts.
        from weightguard.analysis.torch_formats import walk_tar

        yield from walk_tar(source, where, ctx, legacy=False)


@dataclass(frozen=True, slots=True)
class Decompressed:
    """Output of :func:`decompress_stream`.

    Attributes:
        source: The decompressed bytes (what was produced before any error), spooled
            to a temporary file past one chunk so memory stays bounded (issue 15).
        complete: True when the stream reached its end marker.
        consumed: Compressed bytes used by the stream (the rest is trailing data).
        error: Why the stream is invalid, or None.
    """

    source: ByteSource
    complete: bool
    consumed: int
    error: str | None = None

    @property
    def data(self) -> bytes:
        """All the decompressed bytes in memory (for small outputs and tests)."""
        return self.source.read_at(0, self.source.size)


class _Decompressor(Protocol):
    @property
    def eof(self) -> bool: ...
    @property
    def unused_data(self) -> bytes: ...
    def decompress(self, data: bytes, max_length: int = ..., /) -> bytes: ...


def decompress_stream(source: ByteSource, budget: Budget, factory: Callable[[], _Decompressor]) -> Decompressed:
    """Decompress one stream incrementally into a spool, charging every output byte to ``budget``.

    Memory stays a few chunks whatever the ratio: output past one chunk goes to
    an anonymous temporary file (:class:`~weightguard.formats.spool.Spool`).

    Args:
        source: Compressed bytes.
        budget: Decompressed-bytes and time budget; ``max_compression_ratio`` is
            enforced once the output passes ``RATIO_FLOOR_BYTES``.
        factory: Builds the decompressor (see :func:`decompressor_for`).

    Raises:
        LimitExceeded: a decompression limit was reached.
        SourceError: the temporary file cannot be written.
    """
    ratio = budget.limits.max_compression_ratio
    engine = factory()
    out = Spool(_STREAM_CHUNK)
    read = 0
    try:
        while read < source.size and not engine.eof:
            pending = source.read_at(read, _STREAM_CHUNK)
            read += len(pending)
            while pending or not engine.eof:
                budget.check_time()
                piece = engine.decompress(pending, _STREAM_CHUNK)
                budget.charge_decompressed(len(piece))
                if out.size + len(piece) > RATIO_FLOOR_BYTES and out.size + len(piece) > ratio * max(read, 1):
                    raise LimitExceeded("max_compression_ratio", ratio, (out.size + len(piece)) / max(read, 1))
                out.write(piece)
                if not piece:
                    break
                # zlib keeps input it could not yet emit in unconsumed_tail; bz2/lzma buffer it inside.
                pending = getattr(engine, "unconsumed_tail", b"")
    except (zlib.error, OSError, EOFError, lzma.LZMAError, ValueError) as exc:
        return Decompressed(out.source(), False, read, f"invalid compressed stream: {exc}")
    consumed = read - len(engine.unused_data) if engine.eof else read
    return Decompressed(out.source(), engine.eof, consumed)


def decompressor_for(kind: str) -> Callable[[], _Decompressor]:
    """Return a decompressor factory for ``gzip``, ``bzip2``, ``xz``, ``lzma`` (LZMA_alone) or ``zlib``."""
    factories: dict[str, Callable[[], _Decompressor]] = {
        "lzma": lambda: lzma.LZMADecompressor(format=lzma.FORMAT_ALONE),
        "gzip": lambda: zlib.decompressobj(16 + zlib.MAX_WBITS),
        "zlib": lambda: zlib.decompressobj(zlib.MAX_WBITS),
        "bzip2": bz2.BZ2Decompressor,
        "xz": lambda: lzma.LZMADecompressor(format=lzma.FORMAT_AUTO),
    }
    return factories[kind]


_KIND = {FileFormat.GZIP: "gzip", FileFormat.BZIP2: "bzip2", FileFormat.XZ: "xz", FileFormat.ZLIB: "zlib"}
_MAGIC = {b"\x1f\x8b": "gzip", b"BZ": "bzip2", b"\xfd7": "xz"}


class CompressedAnalyzer:
    """Analyzer for single-stream gzip, bzip2, xz, legacy lzma and zlib files."""

    name = "compressed"
    formats = frozenset(_KIND)

    def analyze(self, source: ByteSource, where: Location, ctx: ScanContext) -> Iterator[Finding]:
        """Inflate the stream under the limits and analyse its content (via the scanner)."""
        head = source.read_at(0, 4096)
        kind = "lzma" if lzma_alone_header(head) else _MAGIC.get(head[:2], "zlib")
        result = decompress_stream(source, ctx, decompressor_for(kind))
        if not result.complete:
            message = result.error or "stream is truncated"
            yield codes.ARC_CORRUPT_STREAM.at(where.path, message, member=where.member, format=kind)
        # What inflated before the damage is analysed too: streaming loaders run it.
        inner = where.child(f"<{kind}>")
        yield from ctx.nested(result.source, inner)
        rest = source.size - result.consumed
        if rest > 0 and source.read_at(result.consumed, min(rest, 1 << 16)).strip(b"\x00"):
            yield codes.ARC_TRAILING_DATA.at(
                where.path, f"{rest} bytes after the {kind} stream", member=where.member, offset=result.consumed
            )
            yield from ctx.nested(SliceSource(source, result.consumed, rest), where.child(f"<after-{kind}>"))


class SevenZipAnalyzer:
    """Analyzer for 7z archives: listed and extracted with py7zr under the limits, else skipped."""

    name = "7z"
    formats = frozenset({FileFormat.SEVEN_ZIP})

    def analyze(self, source: ByteSource, where: Location, ctx: ScanContext) -> Iterator[Finding]:
        """Yield every member's findings (via the scanner), or a SKIPPED finding."""
        try:
            import py7zr
            import py7zr.exceptions
        except ImportError:
            yield codes.ARC_SEVEN_ZIP_SKIPPED.at(where.path, "py7zr is not installed", member=where.member)
            return
        failures: tuple[type[Exception], ...] = (py7zr.exceptions.ArchiveError, py7zr.exceptions.PasswordRequired)
        failures += (EOFError, ValueError, KeyError, OSError, LZMAError, IndexError, TypeError)
        try:
            contents = _seven_zip_contents(py7zr, source, where, ctx)
        except failures as exc:  # py7zr raises many types for corrupt or unsupported archives
            yield codes.ARC_SEVEN_ZIP_SKIPPED.at(where.path, f"7z not analysed: {exc!r}", member=where.member)
            return
        for item in contents:
            if isinstance(item, Finding):
                yield item
            else:
                name, data = item
                yield from ctx.nested(BytesSource(data), where.child(name))


def _seven_zip_contents(
    py7zr: ModuleType, source: ByteSource, where: Location, ctx: ScanContext
) -> list[Finding | tuple[str, bytes]]:
    """List then extract in memory, refusing before extraction what the declared sizes exceed."""
    limits = ctx.limits
    out: list[Finding | tuple[str, bytes]] = []
    with py7zr.SevenZipFile(SourceFile(source), mode="r") as archive:
        if archive.needs_password():
            return [codes.ARC_SEVEN_ZIP_SKIPPED.at(where.path, "encrypted 7z archive", member=where.member)]
        infos = [i for i in archive.list() if not i.is_directory]
        if len(infos) > limits.max_archive_members:
            raise LimitExceeded("max_archive_members", limits.max_archive_members, len(infos))
        declared = sum(int(i.uncompressed) for i in infos)
        if declared > limits.max_compression_ratio * max(source.size, 1) and declared > RATIO_FLOOR_BYTES:
            raise LimitExceeded("max_compression_ratio", limits.max_compression_ratio, declared / max(source.size, 1))
        if ctx.decompressed_bytes + declared > limits.max_decompressed_bytes:
            total = ctx.decompressed_bytes + declared
            raise LimitExceeded("max_decompressed_bytes", limits.max_decompressed_bytes, total)
        safe: list[str] = []
        for info in infos:
            reason = unsafe_name_reason(info.filename)
            if reason is not None:
                out.append(codes.ARC_UNSAFE_NAME.at(where.path, reason, member=where.child(info.filename).member))
            safe.append(info.filename)
        # Py7zBytesIO stops writing at its limit, so a lying size header cannot grow memory.
        factory = py7zr.io.BytesIOFactory(max((int(i.uncompressed) for i in infos), default=0) + 1)
        archive.extract(targets=safe, factory=factory)
    for name in safe:
        product = factory.products.get(name)
        if product is None:
            missing = where.child(name).member
            out.append(codes.ARC_SEVEN_ZIP_SKIPPED.at(where.path, "member not extracted", member=missing))
            continue
        product.seek(0)
        data = product.read()
        ctx.charge_decompressed(len(data))
        out.append((name, data))
    return out
