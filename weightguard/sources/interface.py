"""Where bytes come from: the source stage's records and protocols.

Analysis code never opens files itself. It receives a :class:`ByteSource`
(random access to a byte range). A file on disk can still change under it;
verify therefore records what its scan read and checks, while hashing, that
the digests are of those bytes (:mod:`weightguard.integrity.binding`), and a
file source re-checks the file's identity whenever it opens it again. Not
handled here: format detection and everything after it.
"""

from __future__ import annotations

import io
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Protocol

from weightguard.errors import SourceError
from weightguard.findings import Finding


class ByteSource(Protocol):
    """Random read access to a run of bytes (a file source reads short, never raises, if the file shrinks)."""

    @property
    def size(self) -> int:
        """Total number of bytes."""
        ...

    def read_at(self, offset: int, length: int) -> bytes:
        """Return up to ``length`` bytes from ``offset`` (fewer only at the end)."""
        ...


@dataclass(frozen=True, slots=True)
class BytesSource:
    """A :class:`ByteSource` over bytes already in memory (decompressed members)."""

    data: bytes | memoryview

    @property
    def size(self) -> int:
        """Total number of bytes."""
        return len(self.data)

    def read_at(self, offset: int, length: int) -> bytes:
        """Return up to ``length`` bytes from ``offset``."""
        if offset < 0 or length < 0:
            return b""
        return bytes(self.data[offset : offset + length])


class FdSource:
    """A :class:`ByteSource` over an open file descriptor, read with ``pread`` (never mapped).

    The caller keeps the descriptor open (and the file object that owns it, if any) while the
    source is used. A read stops short only at the end of the file.
    """

    __slots__ = ("_fd", "_size")

    def __init__(self, fd: int, size: int) -> None:
        self._fd = fd
        self._size = size

    @property
    def size(self) -> int:
        """Total number of bytes."""
        return self._size

    def read_at(self, offset: int, length: int) -> bytes:
        """Return up to ``length`` bytes from ``offset``."""
        if offset < 0 or length <= 0 or offset >= self._size:
            return b""
        length = min(length, self._size - offset)
        out = os.pread(self._fd, length, offset)
        while 0 < len(out) < length:  # pread may return less than asked before the end
            piece = os.pread(self._fd, length - len(out), offset + len(out))
            if not piece:
                break
            out += piece
        return out


@dataclass(frozen=True, slots=True)
class SliceSource:
    """A window ``[start, start + length)`` of another source, without copying it."""

    parent: ByteSource
    start: int
    length: int

    @property
    def size(self) -> int:
        """Total number of bytes in the window."""
        return self.length

    def read_at(self, offset: int, length: int) -> bytes:
        """Return up to ``length`` bytes from ``offset`` within the window."""
        if offset < 0 or length < 0 or offset >= self.length:
            return b""
        length = min(length, self.length - offset)
        return self.parent.read_at(self.start + offset, length)


@dataclass(frozen=True, slots=True)
class ArtifactFile:
    """One regular file of a model, relative to the model root.

    Attributes:
        relpath: POSIX path relative to the target root (``1_Pooling/config.json``);
            for a single-file target, its file name.
        size: Size in bytes when collected.
        source: The bytes.
    """

    relpath: str
    size: int
    source: ByteSource


class ModelSource(ABC):
    """A target that yields the files of a model."""

    @property
    @abstractmethod
    def uri(self) -> str:
        """Where the model came from (a path or ``hf://org/name@commit``)."""

    @abstractmethod
    def collect(self) -> SourceListing:
        """List every file of the model, in a stable order, with what was refused.

        Raises:
            SourceError: the target cannot be read at all.
        """


@dataclass(frozen=True, slots=True)
class SourceListing:
    """The files of a target, and findings about entries that were not collected.

    Those are symlinks, special files and unreadable entries.
    """

    root: str
    files: tuple[ArtifactFile, ...]
    findings: tuple[Finding, ...] = ()


class SourceFile(io.RawIOBase):
    """A read-only, seekable file object over a :class:`ByteSource` (for tarfile, py7zr, h5py).

    Libraries that want a file object read through it, so they see exactly the
    bytes being analysed, without the whole source being copied into memory.
    """

    def __init__(self, source: ByteSource) -> None:
        super().__init__()
        self._source = source
        self._pos = 0

    def readable(self) -> bool:
        """Always readable."""
        return True

    def seekable(self) -> bool:
        """Always seekable."""
        return True

    def tell(self) -> int:
        """The current position."""
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move to ``offset`` from the start, the current position or the end."""
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._source.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        """Read into ``buffer``; returns the byte count (0 at the end)."""
        data = self._source.read_at(self._pos, len(buffer))
        memoryview(buffer).cast("B")[: len(data)] = data
        self._pos += len(data)
        return len(data)


__all__ = [
    "ArtifactFile",
    "ByteSource",
    "BytesSource",
    "ModelSource",
    "SliceSource",
    "SourceFile",
    "SourceError",
    "SourceListing",
]
