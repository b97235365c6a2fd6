"""One read, one truth: the digests of a verify run are of the bytes its scan analysed.

The scan and the hashing read a file separately (the scan a few ranges, the
hashing one stream), and a file can be rewritten between the two, or during
either. Reading the file once into memory for both would cost a 100 GB
checkpoint 100 GB; hashing first and scanning the same bytes again would double
the scan's reads. Instead the scan reads through a :class:`RecordingSource`,
which keeps, for every run of consecutive reads, its offset, its length and a
BLAKE2b digest of the bytes returned. The hashing pass streams the file once
and, for every recorded range, digests the same window of the stream and
compares (:class:`RangeCheck`); it also requires the size unchanged and the
file's identity (device, inode, size, mtime, ctime, by ``fstat`` of the
descriptor it read, before and after) equal to the one taken when the file was
listed (:class:`~weightguard.sources.local.FileSource`).

Why that is enough: the scan is a deterministic function of the size and of the
bytes its reads returned. A hashed stream that agrees on every range the scan
read, at the same size, would scan identically, so the digest that goes into
the report, the lock and the attestation is of bytes that (in effect) were
scanned, even if the file changed in ranges the scan never read. The identity
check is the stricter, cheaper net: a rewrite, a truncation or a file renamed
over the original fails it even where the contents would agree. Any
disagreement raises :class:`ChangedWhileHashedError`, which the pipeline turns
into the blocking finding ``changed while verified`` (never an approval, never
a crash).

Cost: one BLAKE2b pass over the bytes the scan read, twice (when read and when
hashed); the scan reads headers, not tensors, so that is a small fraction of
the file. A digest, not a copy of the bytes: memory stays one record per run of
reads. BLAKE2b-256, not a CRC: the writer is the adversary and may choose two
versions of a range that agree on a CRC.
Not handled here: opening files (:mod:`weightguard.sources.local`), the digests
themselves (:mod:`weightguard.integrity.hashing`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from weightguard.errors import IntegrityError
from weightguard.findings import Finding
from weightguard.sources.codes import CHANGED_WHILE_VERIFIED
from weightguard.sources.interface import ArtifactFile, ByteSource

_DIGEST_BYTES = 32
T = TypeVar("T")


class ChangedWhileHashedError(IntegrityError):
    """A file's hashed bytes are not provably the bytes its scan read (see the module docstring)."""

    def __init__(self, relpath: str, reason: str) -> None:
        """Name the file and say what changed."""
        super().__init__(
            f"{relpath}: {reason} (changed while verified)",
            hint="the file moved under the verifier; verify a copy nothing else writes to",
        )
        self.relpath = relpath
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ReadRange:
    """The bytes ``[start, end)`` a reader was given, by their BLAKE2b-256 digest."""

    start: int
    end: int
    digest: bytes


class ReadLog:
    """The ranges read from one source; consecutive reads merge into one range."""

    def __init__(self) -> None:
        """An empty log."""
        self._done: list[ReadRange] = []
        self._start = 0
        self._end = 0
        self._hasher: hashlib.blake2b | None = None

    def add(self, offset: int, data: bytes | memoryview) -> None:
        """Record that a read at ``offset`` returned ``data``."""
        if not data:
            return
        if self._hasher is None or offset != self._end:
            self._close_run()
            self._start = self._end = offset
            self._hasher = hashlib.blake2b(digest_size=_DIGEST_BYTES)
        self._hasher.update(data)
        self._end += len(data)

    def _close_run(self) -> None:
        if self._hasher is not None:
            self._done.append(ReadRange(self._start, self._end, self._hasher.digest()))
            self._hasher = None

    def ranges(self) -> list[ReadRange]:
        """Every distinct range read, by start (a range read twice with the same bytes counts once)."""
        self._close_run()
        return sorted(set(self._done), key=lambda r: (r.start, r.end))


class RecordingSource:
    """A :class:`ByteSource` that records what it returned (see :class:`ReadLog`), around another one."""

    def __init__(self, inner: ByteSource) -> None:
        """Record the reads of ``inner``."""
        self.inner = inner
        self.log = ReadLog()

    @property
    def size(self) -> int:
        """Total number of bytes."""
        return self.inner.size

    def read_at(self, offset: int, length: int) -> bytes:
        """Return up to ``length`` bytes from ``offset``, and record them."""
        data = self.inner.read_at(offset, length)
        self.log.add(offset, data)
        return data


class RangeCheck:
    """Compares a file's hashed stream, chunk by chunk, with the ranges its scan read."""

    def __init__(self, ranges: list[ReadRange]) -> None:
        """Check ``ranges`` (sorted by start) against the stream fed to :meth:`feed`."""
        self._pending = ranges
        self._next = 0
        self._active: list[tuple[ReadRange, hashlib.blake2b]] = []
        self.problem = ""

    def feed(self, offset: int, data: bytes | memoryview) -> None:
        """The stream's bytes ``[offset, offset + len(data))``; chunks come in order, without gaps."""
        end = offset + len(data)
        while self._next < len(self._pending) and self._pending[self._next].start < end:
            self._active.append((self._pending[self._next], hashlib.blake2b(digest_size=_DIGEST_BYTES)))
            self._next += 1
        still: list[tuple[ReadRange, hashlib.blake2b]] = []
        for wanted, hasher in self._active:
            lo, hi = max(wanted.start, offset), min(wanted.end, end)
            if lo < hi:
                hasher.update(data[lo - offset : hi - offset])
            if wanted.end > end:
                still.append((wanted, hasher))
            elif hasher.digest() != wanted.digest and not self.problem:
                self.problem = f"bytes {wanted.start}-{wanted.end} differ from the bytes the scan read"
        self._active = still

    def finish(self) -> str:
        """Why the stream did not match every range ("" when it did); call after the last chunk."""
        if not self.problem and (self._active or self._next < len(self._pending)):
            self.problem = "the scan read bytes past the end of the hashed stream"
        return self.problem


def scan_recorded(scan: Callable[[ArtifactFile], T], artifact: ArtifactFile) -> tuple[T, ArtifactFile]:
    """Scan ``artifact`` through a recording source; return the scan and the artifact to hash.

    Hashing the returned artifact checks that the hashed bytes are the bytes the scan read.
    The file's descriptor is released after the scan: the hashing opens it again and checks
    that it is the same, unchanged file.
    """
    recorded = RecordingSource(artifact.source)
    try:
        result = scan(ArtifactFile(artifact.relpath, artifact.size, recorded))
    finally:
        close = getattr(artifact.source, "close", None)
        if callable(close):
            close()
    return result, ArtifactFile(artifact.relpath, artifact.size, recorded)


def changed_finding(exc: ChangedWhileHashedError) -> Finding:
    """The blocking finding for a file that moved under the verifier."""
    return CHANGED_WHILE_VERIFIED.at(exc.relpath, f"the file changed while it was verified: {exc.reason}")


def changed_findings(files: Sequence[ArtifactFile]) -> list[Finding]:
    """A finding for each file whose source already knows it changed (no system call: nothing is opened)."""
    out = []
    for artifact in files:
        source = artifact.source
        inner = source.inner if isinstance(source, RecordingSource) else source
        reason = getattr(inner, "changed", "")
        if isinstance(reason, str) and reason:
            out.append(changed_finding(ChangedWhileHashedError(artifact.relpath, reason)))
    return out


def unchanged(source: object) -> str:
    """Why ``source`` (a file source, possibly recorded) is not its listed file now; "" when it is."""
    inner = source.inner if isinstance(source, RecordingSource) else source
    check = getattr(inner, "check_unchanged", None)
    if callable(check):
        reason = check()
        return reason if isinstance(reason, str) else ""
    return ""


__all__ = [
    "ChangedWhileHashedError",
    "RangeCheck",
    "ReadLog",
    "ReadRange",
    "RecordingSource",
    "CHANGED_WHILE_VERIFIED",
    "changed_finding",
    "changed_findings",
    "scan_recorded",
    "unchanged",
]
