"""Hashing files named by path, each read whole in one go: for many small files listed but never opened.

verify-many looks a catalogue's models up by their listing and their files'
digests (:mod:`weightguard.catalogue.prepare`). Those files are mostly small
(configs, tokenizers), so the cost is per file, not per byte. Here each file
is opened, read whole and closed by the calling thread (one descriptor open at
a time); files over :data:`~weightguard.integrity.hashing.CHUNK_BYTES` still
go to :func:`~weightguard.integrity.hashing.hash_files`, streamed with at most
:data:`~weightguard.integrity.hashing.OPEN_STREAMS` descriptors open.

Why one reader and separate hashers: opening and reading small files holds
the GIL between system calls, so two threads doing both mostly wait for each
other, and timings of that design were bimodal (11 ms or 17 ms for the same
800 files). Hashing a buffer releases the GIL, so the reader hands each
larger file's bytes to a hasher thread and goes on reading. Measured on two
cores, 800 files (15.7 MB) in chunks of 256, best of 21, three rounds, against
the design where two threads both read and hash: a 78 KB tokenizer shared by
every model, 11.0-11.7 ms before (17 ms in some runs), 8.9-9.2 ms now; all
contents distinct, 11.1-11.5 ms before, 12.9-13.2 ms now. End to end, the
distinct case did not show that difference: a warm ``benchmarks/catalogue.py
--distinct`` (best of 5) took 0.030 s and 0.037 s with the old design, 0.030 s
and 0.031 s with this one.

Catalogues repeat content: every fine-tune of a base model ships the same
tokenizer. A file whose bytes equal those of a file kept from earlier in the
same job takes that file's digests: comparing 78 KB in memory costs about
1.4 µs against 40 µs for its SHA-256, and equal bytes have equal digests, so
nothing is taken on trust. A file's size, head and tail pick the one earlier
file it is compared with, so a hostile look-alike costs one failed
comparison. Bytes are kept only on a second sighting of a size, head and
tail (keeping every file's bytes made each new read fault in fresh pages:
distinct contents went from 17 ms to 25 ms), and at most
:data:`SHARED_KEEP_BYTES` of them.
Not handled here: which paths to hash, or what a path that could not be read means.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Sequence
from types import MappingProxyType

from weightguard.errors import IntegrityError, SourceError
from weightguard.integrity.hashing import CHUNK_BYTES, FileHashes, HashRequest, hash_files, hex_digests
from weightguard.sources.interface import ArtifactFile
from weightguard.sources.local import FileSource, open_regular

# Files at least this big are compared with a kept file, and hashed by a hasher thread; below
# it, hashing in the reader costs about what a comparison or a hand-over does.
SHARED_MIN_BYTES = 16 * 2**10
# The most bytes a job keeps to compare later files with.
SHARED_KEEP_BYTES = 32 * 2**20
# The reader hashes this many larger files itself before it starts a hasher: a thread costs
# about 0.3 ms to start and hand its first file (measured), as much as hashing a few. A
# job whose larger files are all one shared tokenizer starts none.
HASH_FIRST = 4
# How much of a file's head and tail (with its size) picks the kept file it is compared with.
_PROBE_BYTES = 256

_Probe = tuple[int, bytes, bytes]


class PathHashing:
    """Hashing of the regular files at some paths: one reader (the caller) and hasher threads.

    The reader opens, reads whole and closes each file, hashes the small ones itself and
    hands the others to up to ``workers - 1`` hasher threads, started only once the reader
    has hashed :data:`HASH_FIRST` larger files itself. When every hasher already has a file waiting, the reader hashes
    the next one itself, so at most one file per hasher waits in memory.
    """

    def __init__(self, paths: Sequence[str], request: HashRequest, *, workers: int = 1) -> None:
        """Plan hashing ``paths`` (duplicates are hashed once) for ``request`` with ``workers`` threads."""
        self.request = request
        self._paths = list(dict.fromkeys(paths))
        self._max_hashers = max(0, workers - 1)
        self._done: dict[str, tuple[int, dict[str, str]]] = {}
        self._same: dict[str, str] = {}  # path -> the kept path whose bytes it has
        self._large: list[str] = []
        # Probe -> the first path seen with it, and its bytes once a second one was seen.
        self._seen: dict[_Probe, tuple[str, bytes | None]] = {}
        self._kept = 0
        self._hashed_here = 0  # larger files hashed by the reader itself
        self._queue: queue.SimpleQueue[tuple[str, bytes] | None] = queue.SimpleQueue()
        self._hashers: list[threading.Thread] = []
        self._errors: list[BaseException] = []

    def run(self) -> dict[str, FileHashes]:
        """Hash every path.

        Returns:
            ``{path: FileHashes}`` (``relpath`` is the path) for every path that could be hashed.
            A path that cannot be opened or read, is not a regular file, or shrank while it was
            read, is left out: the caller lists those files again, properly, to say why.

        Raises:
            MissingExtraError: blake3 was requested and the ``blake3`` package is absent.
        """
        try:
            for path in self._paths:
                self._read(path)
        finally:
            for _ in self._hashers:
                self._queue.put(None)
            for hasher in self._hashers:
                if hasher.ident is not None:  # started
                    hasher.join()
        if self._errors:
            raise self._errors[0]
        done = self._done
        for path, kept in self._same.items():
            done[path] = done[kept]
        out = {path: FileHashes(path, size, MappingProxyType(d)) for path, (size, d) in done.items()}
        return out | self._hash_large()

    def _read(self, path: str) -> None:
        try:
            fd, st = open_regular(path)
        except (OSError, SourceError):
            return
        try:
            if st.st_size > CHUNK_BYTES or self.request.shard_size:
                self._large.append(path)
                return
            first = os.pread(fd, st.st_size, 0)  # whole, nearly always; after a short read, read again
            data = first if len(first) == st.st_size else _read_whole(fd, st.st_size)
        except OSError:
            return
        finally:
            os.close(fd)
        if data is None:
            return
        if len(data) < SHARED_MIN_BYTES:
            self._done[path] = (len(data), hex_digests(data, self.request))
            return
        probe = (len(data), data[:_PROBE_BYTES], data[-_PROBE_BYTES:])
        earlier = self._seen.get(probe)
        if earlier is None:
            self._seen[probe] = (path, None)
        elif earlier[1] is None:
            if self._kept + len(data) <= SHARED_KEEP_BYTES:
                self._seen[probe] = (path, data)
                self._kept += len(data)
        elif earlier[1] == data:
            self._same[path] = earlier[0]
            return
        self._hash_later(path, data)

    def _hash_later(self, path: str, data: bytes) -> None:
        if self._queue.qsize() >= len(self._hashers):  # every hasher has a file waiting
            if self._hashed_here < HASH_FIRST or len(self._hashers) >= self._max_hashers:
                self._hashed_here += 1
                self._done[path] = (len(data), hex_digests(data, self.request))
                return
            hasher = threading.Thread(target=self._hash_queued, name="wg-hash", daemon=True)
            self._hashers.append(hasher)  # before start: run's finally must send it a sentinel
            hasher.start()
        self._queue.put((path, data))

    def _hash_queued(self) -> None:
        while (item := self._queue.get()) is not None:
            path, data = item
            try:
                self._done[path] = (len(data), hex_digests(data, self.request))
            except BaseException as exc:  # noqa: BLE001 - raised again in the reader, once it has joined
                self._errors.append(exc)

    def _hash_large(self) -> dict[str, FileHashes]:
        large: list[ArtifactFile] = []
        for path in sorted(self._large):
            try:
                source = FileSource(path)  # checked and closed; opened again when its stream starts
            except (OSError, SourceError):
                continue
            large.append(ArtifactFile(path, source.size, source))
        with contextlib.suppress(IntegrityError):  # one changed while it was read: the full listing says so
            return hash_files(large, self.request, workers=self._max_hashers + 1)
        return {}


def hash_paths(paths: Sequence[str], request: HashRequest, *, workers: int | None = None) -> dict[str, FileHashes]:
    """Hash the regular files at ``paths`` with up to ``workers`` threads, this one included (see :class:`PathHashing`).

    Raises:
        MissingExtraError: blake3 was requested and the ``blake3`` package is absent.
    """
    return PathHashing(paths, request, workers=workers or os.cpu_count() or 1).run()


def _read_whole(fd: int, size: int) -> bytes | None:
    """The first ``size`` bytes of ``fd``, or None if the file is shorter now."""
    parts: list[bytes] = []
    got = 0
    while got < size:
        part = os.pread(fd, size - got, got)
        if not part:
            return None
        parts.append(part)
        got += len(part)
    return b"".join(parts)  # no copy for the usual single part


__all__ = ["HASH_FIRST", "SHARED_KEEP_BYTES", "SHARED_MIN_BYTES", "PathHashing", "hash_paths"]
