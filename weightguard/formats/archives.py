"""A strict zip reader over a ByteSource, and capped decompression.

The zip reader mirrors PyTorch's miniz-based ``PyTorchStreamReader``: it finds
the end record from the end of the file, reads the central directory, and
takes member offsets as absolute positions. Wherever miniz and Python's
``zipfile`` would read an archive differently (duplicate names, local/central
name mismatch, CRC mismatch, flag bits, prepended data, relative offsets,
overlapping members) it reports a finding instead of picking a side; see
THREATS.md items 8 and 16. Names that collide under either reader's lookup
rule (miniz ignores ASCII case, zipfile cuts at NUL) are findings too
(:mod:`weightguard.formats.zip_names`, issue 15). Listing reads only the end record, the central
directory and each member's 30-byte local header, never member data.

Member data is exposed by :func:`open_member`: stored members as a
:class:`SliceSource` over the archive (no copy) and deflated members
decompressed incrementally into a :class:`~weightguard.formats.spool.Spool`
(a temporary file past one chunk, so memory stays bounded) under ``max_compression_ratio`` and the per-file
``max_decompressed_bytes`` budget. CRCs are verified for every member except
stored members larger than :data:`CRC_SKIP_BYTES` under a ``data/`` folder
(PyTorch tensor storages): checking those would read every tensor byte, and
the integrity stage hashes those bytes anyway.

Also here: :func:`unsafe_name_reason`, shared with the tar reader. Not
handled here: what members contain (the analyzers dispatch them), tar/7z
listing and single-stream compressors (:mod:`weightguard.analysis.containers`).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, replace
from typing import Protocol

from weightguard.errors import FormatError, LimitExceeded
from weightguard.findings import Finding, Rule
from weightguard.formats import codes
from weightguard.formats.spool import Spool
from weightguard.formats.zip_names import duplicate_findings, torch_candidates
from weightguard.limits import KiB, Limits, MiB
from weightguard.sources.interface import ByteSource, SliceSource

EOCD_SIG = b"PK\x05\x06"
CDIR_SIG = b"PK\x01\x02"
LOCAL_SIG = b"PK\x03\x04"
ZIP64_LOCATOR_SIG = b"PK\x06\x07"
ZIP64_EOCD_SIG = b"PK\x06\x06"
STORED = 0
DEFLATED = 8
CRC_SKIP_BYTES = 1 * MiB
# Below this output size the ratio is not judged: what a tiny member inflates to is
# trivial (the per-file decompressed budget still applies). Above it the policy's ratio
# holds, so a limit set low is honoured for small members too. Trade-off: deflate packs
# zeros about 1000:1, so a zero-filled member over this size passes the default 200
# only if the policy raises max_compression_ratio.
RATIO_FLOOR_BYTES = 32 * KiB
_CHUNK = 1 * MiB
_MAX_COMMENT = 0xFFFF
# Bits a normal writer sets: 1/2 deflate level, 3 data descriptor, 11 UTF-8 names.
_ALLOWED_FLAGS = 0x0002 | 0x0004 | 0x0008 | 0x0800
_ENCRYPTED = 0x0001 | 0x0040 | 0x2000


class Budget(Protocol):
    """What decompression needs from the scan context (``ScanContext`` satisfies it)."""

    @property
    def limits(self) -> Limits:
        """Resource limits."""
        ...

    def charge_decompressed(self, nbytes: int) -> None:
        """Count decompressed output; raise LimitExceeded past the budget."""
        ...

    def check_time(self) -> None:
        """Raise LimitExceeded once the time budget is spent."""
        ...


class MemberUnreadable(FormatError):  # noqa: N818 - reads as a state, like LimitExceeded
    """A zip member's content cannot be read; ``finding`` says why (raised by :func:`member_source`)."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.message)
        self.finding = finding


class StreamCorrupt(FormatError):  # noqa: N818 - reads as a state
    """A compressed stream is invalid (turned into a finding by the callers)."""


@dataclass(frozen=True, slots=True)
class ZipMember:
    """One central-directory entry, resolved against its local header."""

    name: str
    index: int
    header_offset: int
    offset_data: int
    compressed_size: int
    size: int
    method: int
    crc32: int
    flags: int
    raw: bytes = b""  # the name's stored bytes (miniz compares these)

    @property
    def is_dir(self) -> bool:
        """True for a directory entry."""
        return self.name[-1:] == "/" and self.size == 0

    @property
    def end(self) -> int:
        """Offset just after the member's compressed data."""
        return self.offset_data + self.compressed_size


@dataclass(frozen=True, slots=True)
class ZipDirectory:
    """The members of a zip (central-directory order) and findings about the container.

    ``members`` holds only entries whose local header could be read, in
    central-directory order. Which of several equal names a loader reads is
    not knowable (see :mod:`weightguard.formats.zip_names`): duplicates are
    findings, and callers analyse every candidate.
    """

    members: tuple[ZipMember, ...]
    findings: tuple[Finding, ...]
    first_local: int
    cd_offset: int

    def first(self, name: str) -> ZipMember | None:
        """Return the first member called exactly ``name`` in archive order (no loader's choice)."""
        for member in self.members:
            if member.name == name:
                return member
        return None

    def torch_candidates(self, name: str) -> list[ZipMember]:
        """Every member torch's miniz lookup of ``name`` could return (ASCII case folded)."""
        return torch_candidates(self.members, name)


@dataclass(frozen=True, slots=True)
class OpenedMember:
    """A member's content, or why it has none."""

    source: ByteSource | None
    findings: tuple[Finding, ...]


def unsafe_name_reason(name: str) -> str | None:
    """Return why an archive member name is unsafe to extract, or None when it is safe."""
    if not name:
        return "empty name"
    if "\x00" in name:
        return "NUL in name"
    if "\\" in name:
        return "backslash in name"
    if name[0] == "/" or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if ".." in name.split("/"):
        return "'..' component"
    return None


def _u32(data: bytes, at: int) -> int:
    return int(struct.unpack_from("<I", data, at)[0])


def _u64(data: bytes, at: int) -> int:
    return int(struct.unpack_from("<Q", data, at)[0])


def _find_eocd(source: ByteSource) -> tuple[int, bytes] | None:
    """Locate the last end-of-central-directory record, as miniz and zipfile both do."""
    tail_len = min(source.size, 22 + _MAX_COMMENT)
    tail_start = source.size - tail_len
    tail = source.read_at(tail_start, tail_len)
    pos = tail.rfind(EOCD_SIG)
    while pos >= 0:
        if pos + 22 <= len(tail):
            return tail_start + pos, tail[pos : pos + 22]
        pos = tail.rfind(EOCD_SIG, 0, pos)
    return None


@dataclass(slots=True)
class _Reader:
    source: ByteSource
    limits: Limits
    path: str
    member_prefix: str
    findings: list[Finding]

    def add(self, rule: Rule, message: str, member: str = "", **evidence: object) -> None:
        full = ":".join(m for m in (self.member_prefix, member) if m)
        finding = rule.at(self.path, message, member=full)
        self.findings.append(replace(finding, evidence={k: str(v) for k, v in evidence.items()}))

    def directory(self) -> ZipDirectory:
        size = self.source.size
        found = _find_eocd(self.source)
        if found is None:
            self.add(codes.ZIP_MALFORMED, "no end-of-central-directory record")
            return ZipDirectory((), tuple(self.findings), 0, 0)
        eocd_at, eocd = found
        disk, cd_disk, n_disk, n_total, cd_size, cd_offset, comment_len = struct.unpack_from("<HHHHIIH", eocd, 4)
        if eocd_at + 22 + comment_len < size:
            self.add(codes.ZIP_TRAILING_DATA, "bytes after the end record", trailing=size - eocd_at - 22 - comment_len)
        elif eocd_at + 22 + comment_len > size:
            self.add(codes.ZIP_MALFORMED, "end-record comment runs past the end of the file")
        cd_end = eocd_at
        locator = self.source.read_at(eocd_at - 20, 20) if eocd_at >= 20 else b""
        if locator[:4] == ZIP64_LOCATOR_SIG:
            parsed = self._zip64_end(locator, eocd_at)
            if parsed is None:
                return ZipDirectory((), tuple(self.findings), 0, 0)
            n_total, cd_size, cd_offset, cd_end = parsed
        elif 0xFFFF in (n_disk, n_total) or 0xFFFFFFFF in (cd_size, cd_offset):
            self.add(codes.ZIP64_INCONSISTENT, "zip64 marker values without a zip64 end record")
            return ZipDirectory((), tuple(self.findings), 0, 0)
        elif disk or cd_disk or n_disk != n_total:
            self.add(codes.ZIP_MALFORMED, "multi-disk archive", disk=disk)
            return ZipDirectory((), tuple(self.findings), 0, 0)
        if cd_size > cd_end or cd_offset > cd_end:
            self.add(
                codes.ZIP_MALFORMED, "central directory larger than the file", cd_offset=cd_offset, cd_size=cd_size
            )
            return ZipDirectory((), tuple(self.findings), 0, 0)
        if n_total > self.limits.max_archive_members:
            raise LimitExceeded("max_archive_members", self.limits.max_archive_members, n_total)
        if cd_size > self.limits.max_header_bytes:
            raise LimitExceeded("max_header_bytes", self.limits.max_header_bytes, cd_size)
        concat = 0
        if cd_offset + cd_size != cd_end:
            # zipfile adjusts every offset by this shift (self-extracting archives);
            # miniz does not, so the two readers see different bytes.
            concat = cd_end - cd_size - cd_offset
            if concat < 0 or self.source.read_at(cd_end - cd_size, 4) != CDIR_SIG:
                self.add(codes.ZIP_MALFORMED, "central directory out of bounds", cd_offset=cd_offset, cd_size=cd_size)
                return ZipDirectory((), tuple(self.findings), 0, 0)
            self.add(
                codes.ZIP_PREPENDED_DATA, "member offsets are relative to data prepended to the archive", shift=concat
            )
        members = self._central(self.source.read_at(cd_offset + concat, cd_size), n_total, concat, cd_offset + concat)
        self._check_layout(members)
        first_local = min((m.header_offset for m in members), default=cd_offset + concat)
        if first_local > 0 and concat == 0:
            self.add(codes.ZIP_PREPENDED_DATA, f"{first_local} bytes before the first local header", offset=first_local)
        return ZipDirectory(tuple(members), tuple(self.findings), first_local, cd_offset + concat)

    def _zip64_end(self, locator: bytes, eocd_at: int) -> tuple[int, int, int, int] | None:
        z64_at = _u64(locator, 8)
        record = self.source.read_at(z64_at, 56)
        if len(record) < 56 or record[:4] != ZIP64_EOCD_SIG or z64_at + 56 > eocd_at - 20:
            # zipfile ignores the locator's offset and reads the record just before it;
            # that only differs when data was prepended (the shift is reported later).
            z64_at = eocd_at - 20 - 56
            record = self.source.read_at(z64_at, 56) if z64_at >= 0 else b""
            if len(record) < 56 or record[:4] != ZIP64_EOCD_SIG:
                self.add(codes.ZIP64_INCONSISTENT, "zip64 end record missing or out of bounds", offset=z64_at)
                return None
        disk, cd_disk = struct.unpack_from("<II", record, 16)
        n_disk, n_total, cd_size, cd_offset = struct.unpack_from("<QQQQ", record, 24)
        if disk or cd_disk or n_disk != n_total:
            self.add(codes.ZIP_MALFORMED, "multi-disk zip64 archive", disk=disk)
            return None
        return n_total, cd_size, cd_offset, z64_at

    def _central(self, cd: bytes, n_total: int, concat: int, cd_start: int) -> list[ZipMember]:
        members: list[ZipMember] = []
        pos = 0
        for index in range(n_total):
            if pos + 46 > len(cd) or cd[pos : pos + 4] != CDIR_SIG:
                self.add(codes.ZIP_MALFORMED, f"central directory ends after {index} of {n_total} entries")
                return members
            flags, method, _t, _d, crc, csize, usize, nlen, elen, clen = struct.unpack_from("<HHHHIIIHHH", cd, pos + 8)
            local = _u32(cd, pos + 42)
            raw = cd[pos + 46 : pos + 46 + nlen]
            extra = cd[pos + 46 + nlen : pos + 46 + nlen + elen]
            pos += 46 + nlen + elen + clen
            if pos > len(cd):
                self.add(codes.ZIP_MALFORMED, "central directory entry runs past its end")
                return members
            name = self._checked_name(raw, flags)
            sizes = self._zip64_fields(extra, name, usize, csize, local)
            if sizes is None:
                continue
            usize, csize, local = sizes
            member = self._local(name, raw, index, local + concat, flags, method, crc, csize, usize, cd_start)
            if member is not None:
                members.append(member)
        if pos != len(cd):
            self.add(codes.ZIP_MALFORMED, "central directory size disagrees with its entries", unused=len(cd) - pos)
        return members

    def _checked_name(self, raw: bytes, flags: int) -> str:
        if flags & 0x0800:
            name = raw.decode("utf-8", "replace")
        else:
            # zipfile decodes these as cp437, miniz compares raw bytes: only ASCII agrees.
            name = raw.decode("cp437")
            if not raw.isascii():
                self.add(codes.ZIP_UNSAFE_NAME, "non-ASCII name without the UTF-8 flag", name, reason="encoding")
        reason = unsafe_name_reason(name)
        if reason is not None:
            self.add(codes.ZIP_UNSAFE_NAME, f"unsafe member name: {reason}", name, reason=reason)
        bad_flags = flags & ~_ALLOWED_FLAGS
        if flags & _ENCRYPTED:
            self.add(codes.ZIP_FLAGS, "member is encrypted", name, flags=hex(flags))
        elif bad_flags:
            self.add(codes.ZIP_FLAGS, "unusual general-purpose flag bits", name, flags=hex(flags))
        return name

    def _zip64_fields(self, extra: bytes, name: str, usize: int, csize: int, local: int) -> tuple[int, int, int] | None:
        wanted = [v == 0xFFFFFFFF for v in (usize, csize, local)]
        if not any(wanted):
            return usize, csize, local
        pos = 0
        while pos + 4 <= len(extra):
            tag, length = struct.unpack_from("<HH", extra, pos)
            body = extra[pos + 4 : pos + 4 + length]
            if tag == 0x0001:
                values = [usize, csize, local]
                at = 0
                for i, need in enumerate(wanted):
                    if need:
                        if at + 8 > len(body):
                            break
                        values[i] = _u64(body, at)
                        at += 8
                else:
                    return values[0], values[1], values[2]
            pos += 4 + length
        self.add(codes.ZIP64_INCONSISTENT, "32-bit field saturated without a zip64 extra field", name)
        return None

    def _local(
        self,
        name: str,
        raw: bytes,
        index: int,
        offset: int,
        flags: int,
        method: int,
        crc: int,
        csize: int,
        usize: int,
        cd_start: int,
    ) -> ZipMember | None:
        header = self.source.read_at(offset, 30)
        if len(header) < 30 or header[:4] != LOCAL_SIG:
            self.add(codes.ZIP_MALFORMED, "local header missing", name, offset=offset)
            return None
        l_flags, l_method, _t, _d, l_crc, l_csize, l_usize, nlen, elen = struct.unpack_from("<HHHHIIIHH", header, 6)
        local_name = self.source.read_at(offset + 30, nlen)
        if local_name != raw:
            self.add(
                codes.ZIP_NAME_MISMATCH,
                "local header names a different file",
                name,
                local=local_name.decode("utf-8", "replace"),
            )
        if l_method != method or (l_flags ^ flags) & 0x0809:
            self.add(codes.ZIP_HEADER_MISMATCH, "method or flags differ from the central directory", name)
        elif not flags & 0x0008 and (l_crc, l_csize, l_usize) != (crc, csize, usize) and l_csize != 0xFFFFFFFF:
            self.add(codes.ZIP_HEADER_MISMATCH, "sizes or CRC differ from the central directory", name)
        data_at = offset + 30 + nlen + elen
        if data_at + csize > cd_start:
            self.add(codes.ZIP_OVERLAP, "member data runs into the central directory", name, end=data_at + csize)
            return None
        return ZipMember(name, index, offset, data_at, csize, usize, method, crc, flags, raw)

    def _check_layout(self, members: list[ZipMember]) -> None:
        duplicate_findings(members, self.add)
        ordered = sorted(members, key=lambda m: m.header_offset)
        for before, after in zip(ordered, ordered[1:], strict=False):
            if after.header_offset < before.end:
                self.add(codes.ZIP_OVERLAP, f"member overlaps {before.name!r}", after.name, offset=after.header_offset)


def read_zip_directory(source: ByteSource, limits: Limits, *, path: str = "", member_prefix: str = "") -> ZipDirectory:
    """List a zip's members strictly, reading only headers.

    Args:
        source: The archive bytes.
        limits: ``max_archive_members`` and ``max_header_bytes`` (central directory size) apply.
        path: Top-level file path for the findings.
        member_prefix: Location of the archive inside that file (``a.tar:inner.zip``), if nested.

    Returns:
        The members and the findings about the container (never raises on hostile bytes).

    Raises:
        LimitExceeded: more members than ``max_archive_members`` or a central directory
            larger than ``max_header_bytes``.
    """
    return _Reader(source, limits, path, member_prefix, []).directory()


def _stored(source: ByteSource, member: ZipMember, verify_crc: bool, budget: Budget) -> tuple[ByteSource, bool]:
    data = SliceSource(source, member.offset_data, member.compressed_size)
    if not verify_crc:
        return data, True
    crc = 0
    for at in range(0, member.compressed_size, _CHUNK):
        budget.check_time()
        crc = zlib.crc32(data.read_at(at, _CHUNK), crc)
    return data, crc == member.crc32


def _deflated(source: ByteSource, member: ZipMember, budget: Budget) -> tuple[ByteSource, bool]:
    limits = budget.limits
    ratio = member.size / max(member.compressed_size, 1)
    if member.size > RATIO_FLOOR_BYTES and ratio > limits.max_compression_ratio:
        raise LimitExceeded("max_compression_ratio", limits.max_compression_ratio, ratio)
    engine = zlib.decompressobj(-15)
    out = Spool(_CHUNK)  # issue 15: a temporary file past one chunk, so memory stays bounded
    crc = 0
    try:
        for at in range(0, member.compressed_size, _CHUNK):
            pending = source.read_at(member.offset_data + at, min(_CHUNK, member.compressed_size - at))
            while True:
                budget.check_time()
                # max_length bounds memory per step; unprocessed input waits in unconsumed_tail.
                piece = engine.decompress(pending, _CHUNK)
                pending = engine.unconsumed_tail
                budget.charge_decompressed(len(piece))
                if out.size + len(piece) > member.size:
                    raise StreamCorrupt("member inflates past its declared size")
                crc = zlib.crc32(piece, crc)
                out.write(piece)
                if not pending and (not piece or engine.eof):
                    break
            if engine.eof:
                break
    except zlib.error as exc:
        raise StreamCorrupt(f"invalid deflate data: {exc}") from exc
    return out.source(), crc == member.crc32 and engine.eof


def open_member(
    source: ByteSource, member: ZipMember, budget: Budget, *, path: str = "", member_path: str = ""
) -> OpenedMember:
    """Return a member's content under the limits, with findings when it is unreadable.

    Stored members come back as a window on ``source``; deflated ones are
    decompressed into a :class:`~weightguard.formats.spool.Spool` (memory stays
    bounded), charged to the per-file budget.

    Raises:
        LimitExceeded: the member's compression ratio or the file's decompressed budget is exceeded.
    """
    where = member_path or member.name
    if member.flags & _ENCRYPTED:
        return OpenedMember(None, (codes.ZIP_FLAGS.at(path, "encrypted member not analysed", member=where),))
    if member.method == STORED:
        if member.compressed_size != member.size:
            return OpenedMember(None, (codes.ZIP_CORRUPT_MEMBER.at(path, "stored member sizes differ", member=where),))
        parts = member.name.split("/")
        skip = member.size > CRC_SKIP_BYTES and len(parts) >= 2 and parts[-2] == "data"
        data, crc_ok = _stored(source, member, not skip, budget)
    elif member.method == DEFLATED:
        try:
            data, crc_ok = _deflated(source, member, budget)
        except StreamCorrupt as exc:
            return OpenedMember(None, (codes.ZIP_CORRUPT_MEMBER.at(path, exc.message, member=where),))
        if data.size != member.size:
            finding = codes.ZIP_CORRUPT_MEMBER.at(path, "inflated size differs from the declared size", member=where)
            return OpenedMember(data, (finding,))
    else:
        rule = codes.ZIP_UNSUPPORTED_METHOD
        return OpenedMember(None, (rule.at(path, f"compression method {member.method}", member=where),))
    if not crc_ok:
        return OpenedMember(data, (codes.ZIP_CRC_MISMATCH.at(path, "CRC-32 does not match", member=where),))
    return OpenedMember(data, ())


def member_source(source: ByteSource, member: ZipMember, ctx: Budget) -> ByteSource:
    """Return a member's content (see :func:`open_member`).

    Raises:
        MemberUnreadable: the member is encrypted, corrupt, fails its CRC or uses an unknown method.
        LimitExceeded: a decompression limit was reached.
    """
    opened = open_member(source, member, ctx)
    if opened.findings or opened.source is None:
        raise MemberUnreadable(opened.findings[0])
    return opened.source
