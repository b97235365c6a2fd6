"""Decompressed output kept in an anonymous temporary file, read back as a ByteSource.

Decompression used to join its output in memory, so a small bomb grew the
process by whatever ``max_decompressed_bytes`` allowed (issue 15: a 6 MB gzip
reached 4.2 GB). :class:`Spool` writes each chunk to a
:func:`tempfile.TemporaryFile` as it is produced, so memory stays a small
multiple of the chunk size whatever the ratio; the bytes are read back with
``os.pread`` through :class:`SpooledSource`, which the analyzers use like any
other :class:`ByteSource`. Outputs no larger than one chunk stay in memory
(most members are small; a file per member would only cost time). The
temporary file has no name on POSIX, so it disappears with its last reference.

Not handled here: the limits themselves (the callers charge every chunk to
the per-file budget and check the ratio) and what the bytes contain.
"""

from __future__ import annotations

import tempfile
from typing import IO

from weightguard.errors import SourceError
from weightguard.sources.interface import ByteSource, BytesSource, FdSource


class SpooledSource(FdSource):
    """A :class:`ByteSource` over a finished spool file, which this object keeps open."""

    __slots__ = ("_file",)

    def __init__(self, file: IO[bytes], size: int) -> None:
        super().__init__(file.fileno(), size)
        self._file = file


class Spool:
    """Collects output chunks: in memory up to ``memory_bytes``, then in a temporary file."""

    def __init__(self, memory_bytes: int) -> None:
        self._memory_bytes = memory_bytes
        self._head: list[bytes] = []
        self._held = 0
        self._file: IO[bytes] | None = None
        self.size = 0

    def write(self, chunk: bytes) -> None:
        """Append ``chunk``.

        Raises:
            SourceError: the temporary file cannot be written (disk full).
        """
        if not chunk:
            return
        self.size += len(chunk)
        if self._file is None and self._held + len(chunk) <= self._memory_bytes:
            self._head.append(chunk)
            self._held += len(chunk)
            return
        try:
            if self._file is None:
                self._file = tempfile.TemporaryFile(prefix="wg-spool-")  # noqa: SIM115 - lives in SpooledSource
                for held in self._head:
                    self._file.write(held)
                self._head.clear()
            self._file.write(chunk)
        except OSError as exc:
            raise SourceError(f"cannot spool decompressed output: {exc}") from exc

    def source(self) -> ByteSource:
        """The bytes written so far, as a source (the spool must not be written afterwards).

        Raises:
            SourceError: the temporary file cannot be flushed.
        """
        if self._file is None:
            return BytesSource(b"".join(self._head))
        try:
            self._file.flush()
        except OSError as exc:
            raise SourceError(f"cannot spool decompressed output: {exc}") from exc
        return SpooledSource(self._file, self.size)


__all__ = ["Spool", "SpooledSource"]
