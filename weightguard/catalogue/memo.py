"""``--trust-file-metadata``: a file's digests remembered with the stamp it had when it was read.

A stamp is what the file system reports without reading the bytes: device,
inode, size, mtime and ctime. Every write to a file moves its ctime to the
kernel's clock, and no system call sets ctime back, so an unchanged stamp
means unchanged bytes unless someone controls the clock (root) or the file
system lies (some network and FUSE file systems report no inode or ctime:
their files are never remembered). Files that changed less than
:data:`SETTLED_NS` before they were read are not remembered either: time
stamps move in coarse ticks, and an edit within the tick of the read would
leave the stamp as it was. This is how git and backup tools skip unchanged
files; it is off by default, when every file is read on every run.
Not handled here: the table itself (:class:`.cache.ResultsCache`), or what
the digests are for (:mod:`.runner`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence

from weightguard.catalogue.cache import FileStamp, ResultsCache
from weightguard.integrity.hashing import FileHashes, HashRequest, covers
from weightguard.sources.interface import ArtifactFile

SETTLED_NS = 2 * 10**9


def stamp_of(st: os.stat_result) -> FileStamp | None:
    """The stamp in ``st``, or None when it proves nothing (no inode or no ctime)."""
    if not st.st_ino or not st.st_ctime_ns:
        return None
    return FileStamp(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def stamp(path: str) -> FileStamp | None:
    """The stamp of the file at ``path`` (links followed), or None when it proves nothing."""
    try:
        return stamp_of(os.stat(path))  # noqa: PTH116 - paths are str here; pathlib would cost more than the stat
    except OSError:
        return None  # hashing the file reports why it cannot be read


def recall(
    files: Sequence[tuple[ArtifactFile, str]], memo: ResultsCache, request: HashRequest
) -> tuple[dict[str, FileHashes], dict[str, tuple[str, FileStamp]]]:
    """Digests remembered for files whose stamp is unchanged, and the current stamps of the others.

    ``files`` pairs each listed file with its path on disk; the results are keyed by relpath.
    """
    stamps = {a.relpath: (path, st) for a, path in files if (st := stamp(path)) is not None}
    recorded = memo.get_digests(path for path, _ in stamps.values())
    known: dict[str, FileHashes] = {}
    for a, path in files:
        now = stamps.get(a.relpath)
        held = recalled(a.relpath, now[1], recorded.get(path), request) if now is not None else None
        if held is not None and held.size == a.size:
            known[a.relpath] = held
    return known, {rel: v for rel, v in stamps.items() if rel not in known}


def recalled(
    relpath: str, now: FileStamp, record: tuple[FileStamp, dict[str, str]] | None, request: HashRequest
) -> FileHashes | None:
    """The remembered digests of a file whose stamp is ``now``, if the record has that stamp and covers ``request``."""
    if record is None or record[0] != now:
        return None
    held = FileHashes(relpath, now.size, record[1])
    return held if covers(held, request) else None


def remember(memo: ResultsCache, hashes: Mapping[str, FileHashes], stamps: Mapping[str, tuple[str, FileStamp]]) -> None:
    """Record the digests of the files that had been still for :data:`SETTLED_NS` before they were read."""
    settled = time.time_ns() - SETTLED_NS
    memo.put_digests(
        {
            path: (st, hashes[rel].digests)
            for rel, (path, st) in stamps.items()
            if rel in hashes and st.ctime_ns < settled and st.mtime_ns < settled
        }
    )


__all__ = ["SETTLED_NS", "recall", "recalled", "remember", "stamp", "stamp_of"]
