"""Where bytes come from: the source stage's records and protocols.

Analysis code never opens files itself. It receives a :class:`ByteSource`
(random access to an immutable byte range) so that the very bytes that were
scanned are the ones that are hashed and, later, loaded (no re-open by path:
see the TOCTOU note in fickling's loader). Not handled here: format detection
and everything after it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Protocol

from weightguard.errors import SourceError
from weightguard.findings import Finding


class ByteSource(Protocol):
    """Random read access to an immutable run of bytes."""

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


__all__ = [
    "ArtifactFile",
    "ByteSource",
    "BytesSource",
    "ModelSource",
    "SliceSource",
    "SourceError",
    "SourceListing",
]
