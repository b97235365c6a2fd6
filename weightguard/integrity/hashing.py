r"""Streaming digests: one read pass per file feeds every digest anyone asked for.

A :class:`HashRequest` names the algorithms (``sha256``, ``blake2b``,
``blake3``, ``git-sha1``) and, optionally, a shard size. :func:`hash_files`
reads each file once, in large chunks, and updates every hasher (and the
current shard's hashers) from the same buffer, so the manifest, the pins, the
OpenSSF Model Signing resources and the Hugging Face check never cause a
second read. Files are read with ``pread`` into one reusable buffer per
thread (no memory map: a file truncated under a map kills the process with
SIGBUS), opened when their stream starts and closed when it ends, at most
:data:`OPEN_STREAMS` at a time. A file whose scan was recorded is checked
against it as it streams (:mod:`weightguard.integrity.binding`). The price
of ``pread`` over a map is one copy into the buffer, kept small
(:data:`READ_BYTES`) so that the hashers read it from cache. Measured on the
2-core shared machine (wall times there are too noisy to compare), 512 MiB in
4 files, best of 5 process CPU seconds: one mapped sha256 pass 0.39-0.40 s;
``hash_files`` with maps 0.40-0.41 s, with ``pread`` into 8 MiB 0.43-0.45 s,
into 256 KiB pieces 0.43 s (CPU ratio to the mapped pass 0.91-0.92, against
0.98 with maps). Files are hashed in parallel threads: hashlib and blake3 release the
GIL on large updates, so one thread per core reaches the machine's limit.
A single file stays one stream (sha256 cannot be split), but any thread may
advance it chunk by chunk: the streams with the most bytes left are served
first, so every core stays busy until the last streams end together.

``git-sha1`` is git's blob id, ``sha1(b"blob <size>\0" + content)``: the Hub
names small (non-LFS) files by it. SHA-1 has known collisions; it is computed
only to compare with the Hub's own listing, never as the strong check.
Not handled here: which files to hash (the source stage) and what the digests
mean (:mod:`weightguard.integrity.manifest`, :mod:`weightguard.integrity.pins`).
"""

from __future__ import annotations

import hashlib
import heapq
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from weightguard.errors import IntegrityError, MissingExtraError
from weightguard.integrity.binding import ChangedWhileHashedError, RangeCheck, RecordingSource, unchanged
from weightguard.progress import Counter, current
from weightguard.sources.interface import ArtifactFile, ByteSource

ALGORITHMS = frozenset({"sha256", "blake2b", "blake3", "git-sha1"})
# Algorithms that make sense per shard (OMS 'shards' serialization); a git blob id only names a whole file.
SHARD_ALGORITHMS = frozenset({"sha256", "blake2b", "blake3"})
_SHA256_ONLY = frozenset({"sha256"})

# Large reads amortise the per-call Python cost; 8 MiB keeps the GIL released most of the time
# and the working set small enough for the CPU caches to matter little.
CHUNK_BYTES = 8 * 2**20
# Files hashed at once (each holds a descriptor while it is): enough to keep every core busy
# and balance the last streams, few enough for any descriptor limit.
OPEN_STREAMS = 64
# Each chunk is read in pieces of this size into a per-thread buffer that stays in the CPU's
# cache, so the hashers read the copy from cache, not memory. Single-thread sha256 CPU seconds
# over 128 MiB cached, best of 7: a map 0.099, pread 8 MiB 0.115, 1 MiB 0.109, 256 KiB 0.105.
READ_BYTES = 256 * 2**10


class _Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> object: ...

    def hexdigest(self) -> str: ...


@dataclass(frozen=True, slots=True)
class HashRequest:
    """Which digests to compute in the single pass.

    Attributes:
        algorithms: Any of ``sha256``, ``blake2b`` (64-byte digest), ``blake3``, ``git-sha1``.
        shard_size: When set, also one digest per ``[k*shard_size, (k+1)*shard_size)`` window
            for each shardable algorithm (OMS ``shards``); empty files have no shard.
    """

    algorithms: frozenset[str] = frozenset({"sha256"})
    shard_size: int | None = None

    def __post_init__(self) -> None:
        unknown = self.algorithms - ALGORITHMS
        if unknown or not self.algorithms:
            raise IntegrityError(
                f"unknown or no hash algorithm: {sorted(unknown)}", hint=f"use any of {sorted(ALGORITHMS)}"
            )
        if self.shard_size is not None and self.shard_size <= 0:
            raise IntegrityError(f"shard size must be positive, not {self.shard_size}")

    def union(self, other: HashRequest) -> HashRequest:
        """A request computing both this one's and ``other``'s digests (shard sizes must agree)."""
        if None not in (self.shard_size, other.shard_size) and self.shard_size != other.shard_size:
            raise IntegrityError("two consumers asked for different shard sizes in one pass")
        return HashRequest(self.algorithms | other.algorithms, self.shard_size or other.shard_size)


@dataclass(frozen=True, slots=True)
class ShardDigest:
    """The digest of bytes ``[start, end)`` of a file (``end`` exclusive)."""

    start: int
    end: int
    algorithm: str
    hex: str


@dataclass(frozen=True, slots=True)
class FileHashes:
    """Every digest computed for one file.

    Attributes:
        relpath: The file's POSIX path relative to the model root.
        size: Bytes hashed.
        digests: Algorithm name to lowercase hex digest of the whole file.
        shards: Per-shard digests in file order (empty unless a shard size was requested).
    """

    relpath: str
    size: int
    digests: Mapping[str, str] = field(default_factory=dict)
    shards: tuple[ShardDigest, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.digests, MappingProxyType):
            object.__setattr__(self, "digests", MappingProxyType(dict(self.digests)))

    def __reduce__(self) -> tuple[type[FileHashes], tuple[str, int, dict[str, str], tuple[ShardDigest, ...]]]:
        # A read-only view cannot be pickled; verify-many ships digests to its worker processes.
        return (FileHashes, (self.relpath, self.size, dict(self.digests), self.shards))


def _blake3_factory() -> Callable[[], _Hasher]:
    try:
        import blake3  # noqa: PLC0415 - optional extra, imported only when asked for
    except ImportError as exc:
        raise MissingExtraError("blake3", "blake3 hashing") from exc

    def make() -> _Hasher:
        hasher: _Hasher = blake3.blake3()
        return hasher

    return make


def _factories(algorithms: frozenset[str], size: int) -> dict[str, Callable[[], _Hasher]]:
    made: dict[str, Callable[[], _Hasher]] = {}
    for name in sorted(algorithms):
        if name == "sha256":
            made[name] = hashlib.sha256
        elif name == "blake2b":
            made[name] = hashlib.blake2b  # hashlib default: 64-byte digest, as OMS 'blake2b'
        elif name == "blake3":
            made[name] = _blake3_factory()
        else:  # git-sha1: the header carries the size, so the stream is self-delimiting

            def git_blob(size: int = size) -> _Hasher:
                hasher = hashlib.sha1(usedforsecurity=False)
                hasher.update(b"blob %d\x00" % size)
                return hasher

            made[name] = git_blob
    return made


class _Buffers(threading.local):
    """One reusable read buffer per hashing thread: no allocation per chunk, and it stays in cache."""

    def __init__(self) -> None:
        self.view = memoryview(bytearray(READ_BYTES))


_BUFFERS = _Buffers()


class _File:
    """How a stream reads one file: into a reusable buffer when the source can, and what to check."""

    def __init__(self, artifact: ArtifactFile) -> None:
        source = artifact.source
        self.relpath = artifact.relpath
        self.source = source
        self.inner: ByteSource = source.inner if isinstance(source, RecordingSource) else source
        self.check = RangeCheck(source.log.ranges()) if isinstance(source, RecordingSource) else None
        fill = getattr(self.inner, "readinto_at", None)
        self._fill: Callable[[int, memoryview], int] | None = fill if callable(fill) else None

    def read(self, offset: int, length: int) -> bytes | memoryview:
        """Up to ``length`` bytes from ``offset``; a buffer view is valid until this thread's next read."""
        if self._fill is None:
            data: bytes | memoryview = self.inner.read_at(offset, length)
        else:
            view = _BUFFERS.view if length <= READ_BYTES else memoryview(bytearray(length))
            data = view[: self._fill(offset, view[:length])]
        if self.check is not None:
            self.check.feed(offset, data)
        return data

    def feed(self, offset: int, length: int, hashers: Sequence[_Hasher]) -> int:
        """Read ``[offset, offset + length)`` in :data:`READ_BYTES` pieces into every hasher; bytes read."""
        # Pieces only for a file read into the buffer; another source returns a fresh copy anyway.
        piece = READ_BYTES if self._fill is not None else max(1, length)
        done = 0
        while done < length:
            want = min(piece, length - done)
            data = self.read(offset + done, want)
            for hasher in hashers:
                hasher.update(data)
            done += len(data)
            if len(data) < want:
                break
        return done

    def done(self) -> None:
        """Check the file is still the listed one and agrees with its scan, then release its descriptor.

        Raises:
            ChangedWhileHashedError: it does not (see :mod:`weightguard.integrity.binding`).
        """
        try:
            reason = unchanged(self.inner) or (self.check.finish() if self.check is not None else "")
        finally:
            self.close()
        if reason:
            raise ChangedWhileHashedError(self.relpath, reason)

    def close(self) -> None:
        """Release the descriptor, if the source holds one."""
        close = getattr(self.inner, "close", None)
        if callable(close):
            close()


class _Stream:
    """One file's hashing state; :meth:`step` advances it by one chunk, from whichever thread."""

    def __init__(self, artifact: ArtifactFile, request: HashRequest) -> None:
        self.relpath = artifact.relpath
        self.size = artifact.source.size
        self.offset = 0
        self._file = _File(artifact)
        self._factories = _factories(request.algorithms, self.size)
        self._whole = {name: make() for name, make in self._factories.items()}
        self._shard_names = sorted(request.algorithms & SHARD_ALGORITHMS) if request.shard_size else []
        self._step = request.shard_size or self.size or 1
        self._shards: list[ShardDigest] = []
        self._in_shard: dict[str, _Hasher] = {}

    @property
    def remaining(self) -> int:
        """Bytes not hashed yet."""
        return self.size - self.offset

    def step(self) -> None:
        """Hash the next chunk; reads never cross a shard boundary, so one buffer feeds every hasher.

        Raises:
            ChangedWhileHashedError: the file read short, or (at its end) changed or disagrees with its scan.
        """
        shard_start = self.offset - self.offset % self._step
        shard_end = min(self.size, shard_start + self._step)
        if self.offset == shard_start:
            self._in_shard = {name: self._factories[name]() for name in self._shard_names}
        want = min(CHUNK_BYTES, shard_end - self.offset)
        got = 0
        try:
            got = self._file.feed(self.offset, want, [*self._whole.values(), *self._in_shard.values()])
        finally:
            if got != want:  # short, or it raised
                self._file.close()
        if got != want:
            reason = unchanged(self._file.inner) or f"short read at byte {self.offset + got} of {self.size}"
            raise ChangedWhileHashedError(self.relpath, reason)
        self.offset += got
        if self.offset >= shard_end:
            self._shards += [ShardDigest(shard_start, shard_end, n, h.hexdigest()) for n, h in self._in_shard.items()]
        if not self.remaining:
            self._file.done()

    def close(self) -> None:
        """Release the file (a run that stopped early)."""
        self._file.close()

    def result(self) -> FileHashes:
        """The digests, once :attr:`remaining` is 0."""
        digests = {name: hasher.hexdigest() for name, hasher in self._whole.items()}
        return FileHashes(self.relpath, self.size, MappingProxyType(digests), tuple(self._shards))


def _run(streams: list[_Stream], workers: int, counter: Counter | None = None) -> None:
    """Advance every stream to its end with ``workers`` threads, largest remaining stream first.

    A stream is held by one thread at a time, so its chunks stay in order, but any thread may
    take it next. Always serving the streams with the most bytes left makes them finish
    together: 5 equal shards on 2 cores take 2.5 shard-times, not 3 (one file per thread would).
    At most :data:`OPEN_STREAMS` streams are under way at once (each holds a descriptor); the
    next largest is admitted when one ends.
    """
    waiting = sorted((s for s in streams if s.remaining), key=lambda s: -s.remaining)
    waiting.reverse()  # popped from the end: largest first
    heap: list[tuple[int, int, _Stream]] = []
    admitted = 0

    def admit() -> None:
        nonlocal admitted
        while waiting and len(heap) + busy[0] < OPEN_STREAMS:
            stream = waiting.pop()
            heapq.heappush(heap, (-stream.remaining, admitted, stream))
            admitted += 1

    busy = [0]  # streams held by a thread right now
    lock = threading.Lock()
    failed = threading.Event()
    admit()

    def work() -> None:
        while not failed.is_set():
            with lock:
                if not heap:
                    return  # every unfinished stream is held by another thread
                _, index, stream = heapq.heappop(heap)
                busy[0] += 1
            ok = False
            try:
                before = stream.remaining
                stream.step()
                ok = True
                if counter is not None:
                    counter.add(before - stream.remaining, stream.relpath)
            finally:
                if not ok:
                    failed.set()  # stop the other threads; the error surfaces through the future
                with lock:
                    busy[0] -= 1
                    if ok and stream.remaining:
                        heapq.heappush(heap, (-stream.remaining, index, stream))
                    else:
                        admit()

    try:
        if workers == 1:
            work()
            return
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="wg-hash") as pool:
            for future in [pool.submit(work) for _ in range(workers)]:
                future.result()
    finally:
        for _, _, stream in heap:
            stream.close()  # a failed run: release what the streams under way hold


def covers(hashes: FileHashes, request: HashRequest) -> bool:
    """Whether ``hashes`` already holds every digest ``request`` asks for, shards included."""
    if not request.algorithms <= hashes.digests.keys():
        return False
    if request.shard_size is None:
        return True
    windows = [(s, min(s + request.shard_size, hashes.size)) for s in range(0, hashes.size, request.shard_size)]
    return all(
        [(s.start, s.end) for s in hashes.shards if s.algorithm == name] == windows
        for name in request.algorithms & SHARD_ALGORITHMS
    )


def hash_files(
    files: Sequence[ArtifactFile],
    request: HashRequest,
    *,
    workers: int | None = None,
    known: Mapping[str, FileHashes] | None = None,
) -> dict[str, FileHashes]:
    """Hash every file once, computing every digest in ``request``.

    Args:
        files: The files to hash (relpaths must be unique).
        request: The algorithms and optional shard size.
        workers: Threads hashing in parallel (default: one per CPU).
        known: Digests computed earlier in this run (by relpath); a file whose entry has the
            same size and covers ``request`` is not read again, only checked unchanged since it
            was listed. Only the caller knows that those digests are of the bytes it means
            (verify-many hashes before it scans; an oci:// pull hashes what it writes).

    Bytes hashed are reported as ``hashing`` progress to the sink installed with
    :func:`weightguard.progress.reporting`, once per chunk or small file.

    Returns:
        ``{relpath: FileHashes}`` in the order of ``files``.

    Raises:
        IntegrityError: duplicate relpaths, or a file could not be read completely.
        MissingExtraError: blake3 was requested and the ``blake3`` package is absent.
    """
    names = [f.relpath for f in files]
    if len(set(names)) != len(names):
        raise IntegrityError("the same relative path was given twice to hash_files")
    reused = {
        f.relpath: h
        for f in files
        if known is not None and (h := known.get(f.relpath)) is not None and h.size == f.size and covers(h, request)
    }
    for f in files:
        # A digest taken over: the file must still be the one it was of (the caller's identity, unchanged).
        if f.relpath in reused:
            reason = unchanged(f.source)
            _File(f).close()  # the check opened it
            if reason:
                raise ChangedWhileHashedError(f.relpath, reason)
    todo = [f for f in files if f.relpath not in reused]
    sink = current()  # read here: the hashing threads do not see the caller's context
    counter = Counter(sink, "hashing", sum(f.source.size for f in todo)) if sink is not None and todo else None
    # A small file is one read: hashing it directly skips the stream bookkeeping, which for the
    # many small files of a model (configs, tokenizers) costs more than the digests themselves.
    small = [f for f in todo if request.shard_size is None and f.source.size <= CHUNK_BYTES]
    done: dict[str, FileHashes] = {}
    for f in small:
        done[f.relpath] = _hash_small(f, request)
        if counter is not None:
            counter.add(f.source.size, f.relpath)
    streams = [_Stream(f, request) for f in todo if f.relpath not in done]
    _run(streams, max(1, min(workers or os.cpu_count() or 1, len(streams) or 1)), counter)
    done.update((s.relpath, s.result()) for s in streams)
    return {f.relpath: reused.get(f.relpath) or done[f.relpath] for f in files}


def _hash_small(artifact: ArtifactFile, request: HashRequest) -> FileHashes:
    size = artifact.source.size
    file = _File(artifact)
    got = -1
    digests: dict[str, str] = {}
    try:
        if size <= READ_BYTES:  # one read, one call per digest: the many small files of a model
            data = file.read(0, size) if size else b""
            got = len(data)
            digests = hex_digests(data, request) if got == size else {}
        else:
            hashers = {name: make() for name, make in _factories(request.algorithms, size).items()}
            got = file.feed(0, size, list(hashers.values()))
            digests = {name: hasher.hexdigest() for name, hasher in hashers.items()}
    finally:
        if got != size:
            file.close()
    if got != size:
        reason = unchanged(file.inner) or f"short read: {got} of {size} bytes"
        raise ChangedWhileHashedError(artifact.relpath, reason)
    file.done()
    return FileHashes(artifact.relpath, size, MappingProxyType(digests))


def hex_digests(data: bytes | memoryview, request: HashRequest) -> dict[str, str]:
    """Every whole-file digest of ``request`` over ``data``, by algorithm name."""
    if request.algorithms == _SHA256_ONLY:  # the common request, without the per-algorithm bookkeeping
        return {"sha256": hashlib.sha256(data).hexdigest()}
    digests = {}
    for name, make in _factories(request.algorithms, len(data)).items():
        hasher = make()
        hasher.update(data)
        digests[name] = hasher.hexdigest()
    return digests
