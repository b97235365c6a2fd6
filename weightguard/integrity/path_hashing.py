"""Hashing files named by path, each read whole in one go: for many small files listed but never opened.

verify-many looks a catalogue's models up by their listing and their files'
digests (:mod:`weightguard.catalogue.prepare`). Those files are mostly small
(configs, tokenizers), so the cost is per file, not per byte: mapping each
one, as :func:`~weightguard.integrity.hashing.hash_files` does for its
sources, costs more than reading it, and the page faults and unmappings of
many small maps serialise the threads. Here each file is opened, read,
hashed and closed by the thread that takes it, and dropped at once. Large
files still go to :func:`~weightguard.integrity.hashing.hash_files`, mapped
and streamed. Measured on two cores (800 files, 15 MB): one thread 17 ms,
two threads 10 to 12 ms.
Not handled here: which paths to hash, or what a path that could not be read means.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from collections.abc import Sequence
from types import MappingProxyType

from weightguard.errors import IntegrityError, SourceError
from weightguard.integrity.hashing import CHUNK_BYTES, FileHashes, HashRequest, hash_files, hex_digests
from weightguard.sources.interface import ArtifactFile
from weightguard.sources.local import MappedFile, open_regular

# Below this many files per thread, starting a thread costs more than it saves.
MIN_PATHS_PER_THREAD = 32


class PathHashing:
    """Hashing of the regular files at some paths, shared by whichever threads call :meth:`work`.

    For many small files that were listed but never opened (verify-many's look-up by listing):
    each file is opened, read whole, hashed and closed by the thread that takes it, so no
    descriptor or mapping outlives its file and a thread holds one file in memory at a time.
    Threads take one path at a time from a shared counter: a thread that has something better
    to do stops taking, one that would otherwise wait for the others helps instead. Files over
    :data:`~weightguard.integrity.hashing.CHUNK_BYTES`, and every file when shards are asked for, are set aside and mapped and
    streamed by :func:`hash_files` in :meth:`result`.
    """

    def __init__(self, paths: Sequence[str], request: HashRequest) -> None:
        """Plan hashing ``paths`` (duplicates are hashed once) for ``request``."""
        self.request = request
        self._paths = list(dict.fromkeys(paths))
        self._take = itertools.count().__next__  # atomic under the GIL: no lock per path
        self._done: dict[str, tuple[int, dict[str, str]]] = {}
        self._large: list[str] = []

    def work(self) -> None:
        """Hash paths until none is left to take."""
        # Only the digests here: any more Python per file makes the threads queue for the GIL.
        paths, request, done = self._paths, self.request, self._done
        while (i := self._take()) < len(paths):
            path = paths[i]
            try:
                fd, st = open_regular(path)
            except (OSError, SourceError):
                continue
            try:
                if st.st_size > CHUNK_BYTES or request.shard_size:
                    self._large.append(path)  # list.append is atomic: threads may share it
                    continue
                data = _read_whole(fd, st.st_size)
            except OSError:
                continue
            finally:
                os.close(fd)
            if data is not None:
                done[path] = (len(data), hex_digests(data, request))

    def result(self, *, workers: int | None = None) -> dict[str, FileHashes]:
        """Once every :meth:`work` call has returned: hash the large files, return everything.

        Returns:
            ``{path: FileHashes}`` (``relpath`` is the path) for every path that could be hashed.
            A path that cannot be opened or read, is not a regular file, or shrank while it was
            read, is left out: the caller lists those files again, properly, to say why.
        """
        out = {path: FileHashes(path, size, MappingProxyType(d)) for path, (size, d) in self._done.items()}
        mapped: list[ArtifactFile] = []
        for path in sorted(self._large):
            try:
                source = MappedFile(path)
            except (OSError, SourceError):
                continue
            mapped.append(ArtifactFile(path, source.size, source))
        with contextlib.suppress(IntegrityError):  # one shrank while it was read: the full listing says so
            out.update(hash_files(mapped, self.request, workers=workers))
        return out


def hash_paths(paths: Sequence[str], request: HashRequest, *, workers: int | None = None) -> dict[str, FileHashes]:
    """Hash the regular files at ``paths`` with ``workers`` threads, this one included (see :class:`PathHashing`).

    Raises:
        MissingExtraError: blake3 was requested and the ``blake3`` package is absent.
    """
    job = PathHashing(paths, request)
    threads = max(1, min(workers or os.cpu_count() or 1, len(paths) // MIN_PATHS_PER_THREAD))
    # Plain threads, not a pool: Thread.start returns once the helper runs, so it takes its
    # share from the first path; a pool's worker may start only after this thread did it all.
    errors: list[BaseException] = []

    def help_out() -> None:
        try:
            job.work()
        except BaseException as exc:  # noqa: BLE001 - raised again in the calling thread below
            errors.append(exc)

    helpers = [threading.Thread(target=help_out, name="wg-hash", daemon=True) for _ in range(threads - 1)]
    for helper in helpers:
        helper.start()
    try:
        job.work()
    finally:
        for helper in helpers:
            helper.join()
    if errors:
        raise errors[0]
    return job.result(workers=workers)


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


__all__ = ["MIN_PATHS_PER_THREAD", "PathHashing", "hash_paths"]
