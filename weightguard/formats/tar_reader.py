"""Tar reading through Python's own ``tarfile``, over a ByteSource, with bounded header reads.

What counts as a tar, and which member a name means, is decided by the reader
the loaders use (issue 15): torch's legacy loader calls
``tarfile.open(fileobj=f, mode="r:")`` first and takes the tar path whenever
that succeeds; ``tarfile`` accepts v7 headers without ``ustar`` magic, signed
as well as unsigned header checksums, GNU and PAX long names; and
``getmember``/``extractfile`` by name return the LAST member whose
``os.path.normpath``-ed name matches. So this module does not parse headers
itself: it runs ``tarfile`` on :class:`BoundedTarFile`, a file object over the
source that refuses any single read over ``max_header_bytes`` (``tarfile``
reads a whole PAX or GNU long-name body in one call, which a hostile size would
otherwise turn into an allocation of that size).

Not handled here: member content (the analyzers) and the end-of-archive checks
(:mod:`weightguard.analysis.containers`).
"""

from __future__ import annotations

import posixpath
import tarfile

from weightguard.errors import LimitExceeded
from weightguard.limits import Limits
from weightguard.sources.interface import ByteSource, SourceFile

# Errors tarfile raises on hostile headers (besides TarError): bad numbers, bad text, short reads.
TAR_ERRORS = (tarfile.TarError, EOFError, ValueError, UnicodeError, OverflowError)
LEGACY_TORCH_MEMBERS = frozenset({"storages", "tensors", "pickle"})


class BoundedTarFile(SourceFile):
    """A :class:`SourceFile` whose single reads are capped at ``max_header_bytes``."""

    def __init__(self, source: ByteSource, limits: Limits) -> None:
        super().__init__(source)
        self._cap = limits.max_header_bytes

    def read(self, size: int | None = -1) -> bytes:
        """Read like a file, refusing one read larger than the cap before allocating it.

        Raises:
            LimitExceeded: a read (a PAX or GNU long-name body) is over ``max_header_bytes``.
        """
        if size is None or size < 0:
            size = max(0, self._source.size - self.tell())
        if size > self._cap:
            raise LimitExceeded("max_header_bytes", self._cap, size)
        return super().read(size) or b""


def open_tar(source: ByteSource, limits: Limits) -> tarfile.TarFile:
    """Open ``source`` exactly as torch's legacy loader does (``mode="r:"``).

    Raises:
        tarfile.TarError: tarfile refuses it (then torch does not take its tar path).
        LimitExceeded: a header body is over ``max_header_bytes``.
    """
    return tarfile.open(fileobj=BoundedTarFile(source, limits), mode="r:")  # noqa: SIM115 - caller closes


def tar_opens(source: ByteSource, limits: Limits) -> bool:
    """True when ``tarfile.open(mode="r:")`` accepts ``source`` and finds a first member.

    Then torch's legacy loader takes its tar path. A file that starts with a zero
    block also "opens" (as an empty archive), but torch then fails on the missing
    ``storages`` member (a KeyError, not a TarError) before unpickling anything, so
    such a file is not a tar for this purpose (an HDF5 user block, for one).

    Raises:
        LimitExceeded: the first header's PAX or long-name body is over ``max_header_bytes``.
    """
    if source.size < tarfile.BLOCKSIZE:
        return False
    try:
        tar = open_tar(source, limits)
    except TAR_ERRORS:
        return False
    first = tar.firstmember  # type: ignore[attr-defined]  # set by TarFile.__init__ in read mode
    tar.close()
    return first is not None


def member_key(name: str) -> str:
    """The key ``TarFile.getmember`` compares names by: ``os.path.normpath`` (POSIX)."""
    return posixpath.normpath(name)


def tar_names(source: ByteSource, limits: Limits, most: int) -> list[str]:
    """The normalised names of the first ``most`` members (fewer where tarfile stops).

    Raises:
        LimitExceeded: a header body is over ``max_header_bytes``.
    """
    names: list[str] = []
    try:
        tar = open_tar(source, limits)
    except TAR_ERRORS:
        return names
    try:
        while len(names) < most:
            info = tar.next()
            if info is None:
                break
            names.append(member_key(info.name))
            tar.members.clear()  # type: ignore[attr-defined]  # tarfile keeps every header otherwise
    except TAR_ERRORS:
        return names
    finally:
        tar.close()
    return names


__all__ = ["LEGACY_TORCH_MEMBERS", "TAR_ERRORS", "BoundedTarFile", "member_key", "open_tar", "tar_names", "tar_opens"]
