"""Local files and directories as a :class:`ModelSource`.

Files are mapped read-only (``mmap``) so that a 100 GB checkpoint costs no
memory until a page is touched, and analysis reads only the pages it needs.
Symbolic links are refused by default; with ``allow_symlinks`` a link is
followed only if it stays inside the root. Special files are never opened.
Not handled here: anything about the content of the files.
"""

from __future__ import annotations

import errno
import mmap
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from weightguard.errors import SourceError
from weightguard.findings import Finding
from weightguard.sources import codes
from weightguard.sources.interface import ArtifactFile, ByteSource, ModelSource, SourceListing


class NotRegularFileError(SourceError):
    """The name was listed as a regular file but now is a link, a FIFO, a device or a directory."""


def open_regular(path: Path | str) -> tuple[int, os.stat_result]:
    """Open ``path`` for reading, without following a final symlink and without blocking.

    The file is checked to be a regular file through the open descriptor: a name swapped for
    a link or a FIFO between listing and opening is refused, never followed or waited on.
    The caller closes the descriptor.

    Raises:
        OSError: it cannot be opened.
        NotRegularFileError: it is not a regular file.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
    except BaseException:  # noqa: BLE001 - close the descriptor on anything, then re-raise
        os.close(fd)
        raise
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise NotRegularFileError(f"{path} is not a regular file")
    return fd, st


class MappedFile:
    """A read-only memory map of a file, as a :class:`ByteSource`."""

    def __init__(self, path: Path | str) -> None:
        """Open (see :func:`open_regular`) and map the regular file ``path``.

        Raises:
            OSError: it cannot be opened or mapped.
            NotRegularFileError: it is not a regular file.
        """
        fd, st = open_regular(path)
        try:
            size = st.st_size
            self._map: mmap.mmap | None = mmap.mmap(fd, 0, access=mmap.ACCESS_READ) if size else None
        finally:
            os.close(fd)
        self._size = size

    @property
    def size(self) -> int:
        """Total number of bytes."""
        return self._size

    def read_at(self, offset: int, length: int) -> bytes:
        """Return up to ``length`` bytes from ``offset``."""
        if self._map is None or offset < 0 or length <= 0 or offset >= self._size:
            return b""
        return self._map[offset : offset + length]

    def view(self) -> memoryview:
        """Return a zero-copy view of the whole file (for hashing)."""
        if self._map is None:
            return memoryview(b"")
        return memoryview(self._map)


def open_source(path: Path) -> ByteSource:
    """Map ``path`` for reading; an empty file gives an empty source."""
    try:
        return MappedFile(path)
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _is_plain_file(entry: os.DirEntry[str]) -> bool:
    """A regular file by the directory listing (not a link); the open confirms it."""
    try:
        return entry.is_file(follow_symlinks=False)
    except OSError:
        return False


def _is_real_dir(entry: os.DirEntry[str]) -> bool:
    """A directory that is not a symlink (links are judged as entries, never walked into)."""
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def walk(top: str) -> Iterator[tuple[str, os.DirEntry[str] | OSError]]:
    """``(relpath, entry)`` for every entry under the directory ``top`` that is not a real directory.

    Real directories are descended, links never; entries come in name order at each level.
    A directory that cannot be listed yields its relpath (``""`` for ``top``) with the error.
    An explicit stack, not recursion: a hostile tree may be deeper than Python's recursion limit.
    ``os.scandir`` answers "is this a directory?" from the listing itself, without a stat.
    """
    pending: list[tuple[str, str]] = [(top, "")]
    while pending:
        folder, prefix = pending.pop()
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            yield prefix.rstrip("/"), exc
            continue
        for entry in reversed(entries):  # popped in name order
            if _is_real_dir(entry):
                pending.append((entry.path, f"{prefix}{entry.name}/"))
            else:
                yield f"{prefix}{entry.name}", entry


def plain_files(target: str) -> list[tuple[str, os.DirEntry[str]]] | None:
    """``(relpath, entry)`` of every file under the directory ``target``, by listing alone.

    None unless ``target`` is a plain folder: a real directory holding only regular files and
    real directories, every one of them listable. Such a folder is exactly what
    :meth:`LocalSource.collect` lists, with no finding, whenever its files can be opened.
    Whether an entry is a regular file comes from the listing itself (no stat on most file
    systems); the order is the listing's (POSIX path order).
    """
    try:
        if not stat.S_ISDIR(os.lstat(target).st_mode):
            return None
    except OSError:
        return None
    out: list[tuple[str, os.DirEntry[str]]] = []
    for rel, entry in walk(target):
        if isinstance(entry, OSError) or not _is_plain_file(entry):
            return None
        out.append((rel, entry))
    out.sort(key=lambda item: item[0].split("/"))
    return out


@dataclass(frozen=True, slots=True)
class LocalSource(ModelSource):
    """A model on the local file system: one file, or a directory walked recursively."""

    path: Path
    allow_symlinks: bool = False

    @property
    def uri(self) -> str:
        """The absolute path of the target."""
        return str(self.path.absolute())

    def collect(self) -> SourceListing:
        """List the regular files under the target in POSIX path order."""
        target = self.path
        try:
            st = os.lstat(target)
            if stat.S_ISLNK(st.st_mode):
                st = target.stat()  # a link to a folder is walked; a link to a file is refused below
            elif stat.S_ISREG(st.st_mode):
                return SourceListing(root=str(target.parent), files=(self._artifact(target, target.name),))
        except FileNotFoundError:
            if not os.path.lexists(target):
                raise SourceError(f"no such file or directory: {target}") from None
            raise SourceError(f"not a regular file or directory: {target}") from None  # a dangling link
        except OSError as exc:
            raise SourceError(f"cannot read {target}: {exc.strerror or exc}") from exc
        if not stat.S_ISDIR(st.st_mode):
            raise SourceError(f"not a regular file or directory: {target}")
        files: list[ArtifactFile] = []
        findings: list[Finding] = []
        root: Path | None = None  # resolved only when a link needs it: realpath costs a stat per component
        for rel, entry in walk(str(target)):
            if isinstance(entry, OSError):
                findings.append(codes.UNREADABLE.at(rel or ".", f"cannot list the directory: {entry.strerror}"))
                continue
            # The common case, a regular file, needs no stat of its own: the open checks it.
            if _is_plain_file(entry):
                item = self._listed(entry.path, rel, findings)
            else:
                root = root or target.resolve()
                item = self._entry(Path(entry.path), rel, root, findings)
            if item is not None:
                files.append(item)
        files.sort(key=lambda f: f.relpath.split("/"))
        return SourceListing(root=str(target), files=tuple(files), findings=tuple(findings))

    def _entry(self, full: Path, rel: str, root: Path, findings: list[Finding]) -> ArtifactFile | None:
        try:
            st = os.lstat(full)
        except OSError as exc:
            findings.append(codes.UNREADABLE.at(rel, f"cannot stat: {exc.strerror}"))
            return None
        if stat.S_ISLNK(st.st_mode):
            resolved = full.resolve()
            if not resolved.is_relative_to(root):
                findings.append(
                    codes.SYMLINK_ESCAPES.at(rel, "symlink points outside the model root", target=str(full.readlink()))
                )
                return None
            if not self.allow_symlinks:
                findings.append(codes.SYMLINK_REFUSED.at(rel, "symlink refused by policy", target=str(full.readlink())))
                return None
            if not resolved.is_file():
                return None  # a link to a directory inside the root: its files are walked there
            return self._listed(resolved, rel, findings)
        if not stat.S_ISREG(st.st_mode):
            findings.append(codes.SPECIAL_FILE.at(rel, "not a regular file"))
            return None
        return self._listed(full, rel, findings)

    @staticmethod
    def _listed(full: Path | str, rel: str, findings: list[Finding]) -> ArtifactFile | None:
        try:
            src = MappedFile(full)
        except NotRegularFileError:
            findings.append(codes.SPECIAL_FILE.at(rel, "not a regular file when opened (changed while listed)"))
            return None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENXIO):
                # Listed as a regular file, now a link or a socket: never followed or opened.
                findings.append(codes.SPECIAL_FILE.at(rel, "not a regular file when opened (changed while listed)"))
            else:
                findings.append(codes.UNREADABLE.at(rel, f"cannot read: {exc.strerror or exc}"))
            return None
        return ArtifactFile(rel, src.size, src)

    @staticmethod
    def _artifact(full: Path, rel: str) -> ArtifactFile:
        src = open_source(full)
        return ArtifactFile(rel, src.size, src)
