"""Load a weight file only from the exact bytes that were scanned (needs torch).

The file is read once, into a private copy (its sha256 is computed from the
copy, in the background when the copy is sealed). On Linux the copy is a ``memfd`` (anonymous, in-memory) **sealed**
against writes, shrinking and growing: from then on the kernel itself
guarantees that the bytes cannot change, so the bytes the scanner judged are
the bytes torch maps, without a second hashing pass. Elsewhere the copy is a
0600 file in a private 0700 temp folder and is hashed again just before it is
loaded.

Why a copy that torch can map rather than ``torch.load(io.BytesIO(data))``:
loading from a BytesIO makes torch allocate every storage anew, so memory
peaks at twice the file; ``torch.load(path, mmap=True)`` on the sealed copy
makes the tensors views of the copy's pages (one file's worth of memory).
The copy is scanned through ``pread`` (no mapping), and pages of the
original file are dropped from this process as soon as they are copied, so
a conversion holds about one shard in memory at a time.

Loading is restricted: ``torch.load(weights_only=True)`` (torch's own
restricted unpickler; the unrestricted mode is never used) and
``numpy.load(allow_pickle=False)``; nothing is loaded unless the
:class:`Approver` returned no blocking finding for the copy.
Not handled here: deciding what to convert, or writing anything.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import pickle
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from concurrent.futures import Executor, Future, wait
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from weightguard.analysis.scanner import Scanner
from weightguard.errors import ConversionError
from weightguard.findings import Finding
from weightguard.formats.interface import FileFormat
from weightguard.policy.load import LoadedPolicy
from weightguard.sources.interface import ArtifactFile, ByteSource, FdSource

CHUNK = 8 * 2**20  # a multiple of every page size, so madvise ranges stay aligned
_SEALS = ("F_SEAL_WRITE", "F_SEAL_SHRINK", "F_SEAL_GROW", "F_SEAL_SEAL")


class Approver(Protocol):
    """Judges the bytes that are about to be loaded."""

    def approve(self, source: ByteSource, relpath: str) -> tuple[Finding, ...]:
        """Return what blocks loading ``source``; an empty tuple means approved."""
        ...


class ScanApprover:
    """The real approver: weightguard's scanner, judged under the policy."""

    def __init__(self, scanner: Scanner, loaded: LoadedPolicy) -> None:
        """Judge with ``scanner`` under ``loaded``."""
        self._scanner = scanner
        self._loaded = loaded

    def approve(self, source: ByteSource, relpath: str) -> tuple[Finding, ...]:
        """Scan ``source`` and return its blocking findings (see :func:`weightguard.api.file_blocking`)."""
        from weightguard.api import file_blocking  # api imports the report stage; only needed here

        return file_blocking(self._scanner.scan(ArtifactFile(relpath, source.size, source)), self._loaded)


HASH_BUFFER = 2**20


def sha256_fd(fd: int, size: int) -> str:
    """The sha256 of the first ``size`` bytes of ``fd``, read with ``preadv`` into one reused buffer.

    A fixed 1 MiB buffer instead of a fresh ``bytes`` per chunk: freed multi-MiB chunks stay in
    glibc's per-thread arenas, which showed up as tens of MiB of peak RSS per hashing thread.

    Raises:
        ConversionError: the descriptor ends before ``size`` bytes.
    """
    digest = hashlib.sha256()
    buffer = bytearray(HASH_BUFFER)
    view = memoryview(buffer)
    offset = 0
    while offset < size:
        n = os.preadv(fd, [view[: min(HASH_BUFFER, size - offset)]], offset)
        if n <= 0:
            raise ConversionError("a file being hashed ended early")
        digest.update(view[:n])
        offset += n
    return digest.hexdigest()


class PrivateCopy:
    """The private, immutable copy of one file: what is scanned is what is loaded."""

    def __init__(self, fd: int, size: int, sealed: bool, folder: Path | None) -> None:
        """Wrap an open descriptor (use :func:`private_copy`)."""
        self.fd = fd
        self.size = size
        self.sealed = sealed
        self._folder = folder
        self._digest: Future[str] | None = None

    @property
    def path(self) -> str:
        """A path that opens this copy (``/proc/self/fd/N`` for a memfd)."""
        if self._folder is not None:
            return str(self._folder / "copy")
        return f"/proc/self/fd/{self.fd}"

    @property
    def sha256(self) -> str:
        """The copy's sha256 (waits for the background hash when there is one)."""
        if self._digest is None:
            self._digest = _done(self._hash())
        return self._digest.result()

    def start_digest(self, executor: Executor | None) -> None:
        """Hash the copy now, or in the background when it is sealed and ``executor`` is given.

        A sealed copy cannot change, so hashing it while it is scanned and loaded gives the
        digest of the very bytes that were scanned; an unsealed copy is hashed before the
        scan so that :meth:`verify` can check it again before loading.
        """
        if executor is not None and self.sealed:
            self._digest = executor.submit(self._hash)
        else:
            self._digest = _done(self._hash())

    def _hash(self) -> str:
        return sha256_fd(self.fd, self.size)

    def source(self) -> ByteSource:
        """The copy's bytes, for the scanner."""
        return FdSource(self.fd, self.size)

    def verify(self) -> None:
        """Check that the copy still holds the bytes that were scanned (free when sealed).

        Raises:
            ConversionError: the unsealed copy changed after the scan.
        """
        if self.sealed:
            return  # the kernel refuses every write to a sealed memfd
        if self._hash() != self.sha256:
            raise ConversionError("the private copy changed after it was scanned; nothing was loaded")

    def close(self) -> None:
        """Release the copy (after a background hash of it has stopped reading the descriptor)."""
        if self._digest is not None and not self._digest.cancel():
            wait([self._digest])
        os.close(self.fd)
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)


def _done(value: str) -> Future[str]:
    future: Future[str] = Future()
    future.set_result(value)
    return future


def release_pages(view: memoryview, offset: int, length: int) -> None:
    """Drop pages of a read-only file mapping that were just copied from this process's memory."""
    # The sources stage maps files read-only and shared; touched pages of that mapping stay in this
    # process's RSS until it is unmapped (at the end of the run), so a multi-shard model would pile up.
    # MADV_DONTNEED on a clean read-only file mapping only drops them; a later read faults them back in.
    owner = view.obj
    if isinstance(owner, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
        owner.madvise(mmap.MADV_DONTNEED, offset, length)


def private_copy(source: ByteSource, name: str, executor: Executor | None = None) -> PrivateCopy:
    """Read ``source`` once into a private copy and start hashing it (see :meth:`PrivateCopy.start_digest`).

    Raises:
        ConversionError: the source cannot be read completely, or the copy cannot be made.
    """
    folder: Path | None = None
    try:
        if hasattr(os, "memfd_create"):
            # The name is only a label in /proc; the kernel refuses one over 249 bytes.
            fd = os.memfd_create(f"weightguard-{name[-200:]}", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        else:
            folder = Path(tempfile.mkdtemp(prefix="weightguard-private-"))
            fd = os.open(folder / "copy", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise ConversionError(f"cannot make a private copy of {name}: {exc.strerror or exc}") from exc
    copy = PrivateCopy(fd, source.size, sealed=False, folder=folder)
    done = False
    try:
        _fill(fd, source, name)
        copy.sealed = folder is None and _seal(fd)
        copy.start_digest(executor)
        done = True
    finally:
        if not done:  # failed or interrupted: nothing private may outlive the call
            copy.close()
    return copy


def _fill(fd: int, source: ByteSource, name: str) -> None:
    for chunk in source_chunks(source, name):
        try:
            written = 0
            while written < len(chunk):  # os.write may write less than asked
                written += os.write(fd, chunk[written:])
        except OSError as exc:
            raise ConversionError(f"cannot copy {name}: {exc.strerror or exc}") from exc


def source_chunks(source: ByteSource, name: str) -> Iterator[bytes | memoryview]:
    """``source``'s bytes in chunks of :data:`CHUNK`, for copying.

    A mapped source is sliced, not read, and each chunk's pages are released once the
    consumer asks for the next one, so a copy holds about one chunk in memory.

    Raises:
        ConversionError: the source ends before its size.
    """
    view_of = getattr(source, "view", None)
    view = view_of() if callable(view_of) else None
    for offset in range(0, source.size, CHUNK):
        n = min(CHUNK, source.size - offset)
        chunk = view[offset : offset + n] if isinstance(view, memoryview) else source.read_at(offset, n)
        if len(chunk) != n:
            raise ConversionError(f"{name}: the source ended early while copying")
        yield chunk
        if isinstance(view, memoryview):
            release_pages(view, offset, n)


def _seal(fd: int) -> bool:
    if not all(hasattr(fcntl, s) for s in (*_SEALS, "F_ADD_SEALS")):
        return False
    seals = 0
    for s in _SEALS:
        seals |= getattr(fcntl, s)
    try:
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
    except OSError:
        return False
    return True


# What torch.load / numpy.load raise when a restricted load refuses content or the container is broken.
_LOAD_ERRORS = (
    pickle.UnpicklingError,
    RuntimeError,
    ValueError,
    OSError,
    EOFError,
    KeyError,
    TypeError,
    AttributeError,
    IndexError,
    zipfile.BadZipFile,
    NotImplementedError,
)


def load_torch(copy: PrivateCopy, fmt: FileFormat) -> object:
    """Load an approved torch checkpoint from its private copy with the restricted unpickler.

    Raises:
        ConversionError: the restricted loader refused it, or the unsealed copy changed.
    """
    copy.verify()
    try:
        # weights_only=True is torch's restricted unpickler; never weights_only=False. mmap needs the
        # zip format (legacy checkpoints are read into memory by torch).
        return torch.load(copy.path, map_location="cpu", weights_only=True, mmap=fmt is FileFormat.PYTORCH_ZIP)
    except _LOAD_ERRORS as exc:
        raise ConversionError(f"the restricted loader refused it: {exc}") from exc


def _native(array: np.ndarray) -> np.ndarray:
    # torch.from_numpy takes native byte order only; a big-endian array is converted, values unchanged.
    return array if array.dtype.isnative else array.astype(array.dtype.newbyteorder("="))


def load_npz(copy: PrivateCopy) -> dict[str, torch.Tensor]:
    """Load an approved NumPy ``.npz`` from its private copy without pickles.

    Raises:
        ConversionError: an array needs pickle (object dtype) or the archive is broken.
    """
    copy.verify()
    try:
        with Path(copy.path).open("rb") as fh, np.load(fh, allow_pickle=False) as npz:
            return {name: torch.from_numpy(_native(npz[name])) for name in npz.files}
    except _LOAD_ERRORS as exc:
        raise ConversionError(f"numpy refused it without pickles: {exc}") from exc
