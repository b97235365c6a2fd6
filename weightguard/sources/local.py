"""Local files and directories as a :class:`ModelSource`.

Files are read with ``pread`` through a descriptor (:class:`FileSource`), never
memory-mapped: a mapped file truncated under the reader kills the process with
SIGBUS, a descriptor just reads short. Analysis reads only the ranges it needs;
descriptors are opened lazily and closed when a file's work is done. Files of a
folder are opened relative to a descriptor of the root, without following a link
at any component (:class:`RootDir`), so a folder swapped for a link mid-run is
refused, not followed.
Symbolic links are refused by default; with ``allow_symlinks`` a link is
followed only if it stays inside the root. Special files are never opened.
Not handled here: anything about the content of the files.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from weightguard.errors import SourceError
from weightguard.findings import Finding
from weightguard.sources import codes
from weightguard.sources.interface import ArtifactFile, ModelSource, SourceListing


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


# The most descriptors FileSources hold at once: the least recently used idle ones beyond it are
# closed (and opened again, checked, on their next read).
MAX_OPEN_FILES = 128
# Flags of every open of a model file: never follow a final link, never block on a FIFO.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# Flags of every folder on the way from the root to a file: a folder swapped for a link is refused.
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def identity_of(st: os.stat_result) -> tuple[int, int, int, int, int]:
    """What says "the same file, unchanged": device, inode, size, mtime and ctime (ns)."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class RootDir:
    """A descriptor of a model's root folder; files under it are opened relative to it.

    Every folder between the root and a file is opened with ``O_NOFOLLOW``, one component
    at a time, so a folder swapped for a symlink at any level during the run is refused
    (``ELOOP``/``ENOTDIR``), never followed. One descriptor per target, closed with it.
    """

    def __init__(self, path: Path | str) -> None:
        """Open the folder ``path`` (a link naming the target itself is followed, as the user named it).

        Raises:
            OSError: it cannot be opened as a folder.
        """
        self.path = str(path)
        self.fd: int | None = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def open_file(self, relpath: str) -> int:
        """Open ``relpath`` (POSIX, relative) without following a link at any component.

        Raises:
            OSError: a component is missing, is a link (``ELOOP``) or is not a folder (``ENOTDIR``).
            SourceError: the root was closed.
        """
        if self.fd is None:
            raise SourceError(f"{self.path}: the model root's descriptor was closed")
        *folders, name = relpath.split("/")
        here = self.fd
        try:
            for folder in folders:
                nxt = os.open(folder, _DIR_FLAGS, dir_fd=here)
                if here != self.fd:
                    os.close(here)
                here = nxt
            return os.open(name, _FILE_FLAGS, dir_fd=here)
        finally:
            if here != self.fd:
                os.close(here)

    def close(self) -> None:
        """Close the root's descriptor (files opened later fail with ``EBADF``)."""
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)

    def __del__(self) -> None:
        with contextlib.suppress(OSError):
            self.close()


class FileSource:
    """A regular file read through a descriptor with ``pread``, as a :class:`ByteSource`.

    No memory map: a mapped file that shrinks under the reader kills the process with
    SIGBUS, while ``pread`` just returns fewer bytes. A short read or a read error is
    recorded in :attr:`changed` and :meth:`read_at` fills the rest with zeros, as a map
    of a shrunk file's last page did (analysers may rely on a source being as long as
    it says); the hashing refuses a changed file. It never raises and never crashes.

    The descriptor is opened lazily, on the first read, and :meth:`close` releases it
    when the file's work is done, so a run holds a bounded number of descriptors, not
    one per file. Every (re)open checks the file's identity (device, inode, size,
    mtime, ctime) against the one taken when it was listed: a file replaced or
    rewritten since is :attr:`changed`, and its reads return zeros. At most
    :data:`MAX_OPEN_FILES` descriptors are held by all sources together.
    """

    def __init__(self, path: Path | str, *, root: RootDir | None = None, relpath: str = "") -> None:
        """Check that ``path`` (or ``relpath`` under ``root``) is a regular file and take its identity.

        Raises:
            OSError: it cannot be opened.
            NotRegularFileError: it is not a regular file.
        """
        self.path = str(path)
        self._root = root
        self._relpath = relpath
        self._fd: int | None = None
        self._busy = 0
        fd, st = self._open_checked()
        os.close(fd)  # reopened lazily: listing 100,000 files must not hold 100,000 descriptors
        self.identity = identity_of(st)
        self._size = st.st_size
        self.changed = ""  # why the bytes are not the listed file's, once they are not

    def _open_checked(self) -> tuple[int, os.stat_result]:
        if self._root is None:
            return open_regular(self.path)
        fd = self._root.open_file(self._relpath)
        try:
            st = os.fstat(fd)
        except BaseException:  # noqa: BLE001 - close the descriptor on anything, then re-raise
            os.close(fd)
            raise
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise NotRegularFileError(f"{self.path} is not a regular file")
        return fd, st

    @property
    def size(self) -> int:
        """Total number of bytes (when listed)."""
        return self._size

    def _descriptor(self) -> int | None:
        """The open descriptor, opened (and checked) if need be; call with :data:`_OPEN_LOCK` held."""
        if self._fd is not None:
            _OPEN.move_to_end(self)
            return self._fd
        if self.changed:
            return None
        try:
            fd, st = self._open_checked()
        except (OSError, SourceError) as exc:
            self.changed = f"cannot open it again: {getattr(exc, 'strerror', None) or exc}"
            return None
        if identity_of(st) != self.identity:
            os.close(fd)
            self.changed = "replaced or rewritten since it was listed"
            return None
        self._fd = fd
        _OPEN[self] = None
        _evict(keep=self)
        return fd

    def _acquire(self) -> int | None:
        with _OPEN_LOCK:
            fd = self._descriptor()
            if fd is not None:
                self._busy += 1  # never evicted while a read uses it (its number could be reused)
            return fd

    def _release(self) -> None:
        with _OPEN_LOCK:
            self._busy -= 1

    def read_at(self, offset: int, length: int) -> bytes:
        """Return up to ``length`` bytes from ``offset`` (fewer only at the end; zeros once it changed)."""
        if offset < 0 or length <= 0 or offset >= self._size:
            return b""
        length = min(length, self._size - offset)
        fd = self._acquire()
        if fd is None:
            return bytes(length)
        try:
            data = os.pread(fd, length, offset)
        except OSError as exc:
            self.changed = f"read failed at byte {offset}: {exc.strerror or exc}"
            return bytes(length)
        finally:
            self._release()
        if len(data) < length:  # pread returns less only at the end of file: the file shrank
            self.changed = f"short read at byte {offset + len(data)} of {self._size}"
            # Analysers trust a source to be as long as it says (as a map was); zeros keep them on
            # their feet, and the file is already refused: hashing never accepts a changed source.
            data += bytes(length - len(data))
        return data

    def readinto_at(self, offset: int, buffer: memoryview) -> int:
        """Fill ``buffer`` from ``offset``; returns the byte count (short only when the file shrank)."""
        want = min(len(buffer), max(0, self._size - offset))
        if want == 0:
            return 0
        fd = self._acquire()
        if fd is None:
            return 0
        try:
            got = os.preadv(fd, [buffer[:want]], offset)
        except OSError as exc:
            self.changed = f"read failed at byte {offset}: {exc.strerror or exc}"
            return 0
        finally:
            self._release()
        if got < want:
            self.changed = f"short read at byte {offset + got} of {self._size}"
        return got

    def check_unchanged(self) -> str:
        """Why the file is not the listed one now (``fstat`` of its descriptor), or "" when it is."""
        if self.changed:
            return self.changed  # the first thing that went wrong says the most
        fd = self._acquire()
        if fd is None:
            return self.changed
        try:
            now = identity_of(os.fstat(fd))
        except OSError as exc:
            self.changed = f"cannot stat: {exc.strerror or exc}"
        else:
            if now != self.identity:
                self.changed = "rewritten while it was verified"
        finally:
            self._release()
        return self.changed

    def close(self) -> None:
        """Release the descriptor; a later read opens (and checks) the file again."""
        with _OPEN_LOCK:
            self._close_locked()

    def _close_locked(self) -> None:
        fd, self._fd = self._fd, None
        _OPEN.pop(self, None)
        if fd is not None:
            os.close(fd)

    def __del__(self) -> None:
        with contextlib.suppress(OSError, AttributeError):
            self.close()


# Every FileSource holding a descriptor, least recently used first. Callers close a file when its
# work is done; this bound holds whatever they forget (a scan of 100,000 files through the API).
_OPEN: OrderedDict[FileSource, None] = OrderedDict()
_OPEN_LOCK = threading.RLock()


def _after_fork_in_child() -> None:
    # A lock held by another thread at fork time would never be released in the child.
    global _OPEN_LOCK  # noqa: PLW0603 - the registry's lock is module state by design
    _OPEN_LOCK = threading.RLock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _evict(keep: FileSource) -> None:
    """Close the least recently used idle descriptors beyond :data:`MAX_OPEN_FILES` (lock held)."""
    if len(_OPEN) <= MAX_OPEN_FILES:
        return
    for source in list(_OPEN):
        if len(_OPEN) <= MAX_OPEN_FILES:
            return
        if source is not keep and not source._busy:  # noqa: SLF001 - the registry is this module's
            source._close_locked()  # noqa: SLF001


# The name earlier releases used; the file is no longer mapped.
MappedFile = FileSource


def open_source(path: Path) -> FileSource:
    """Open ``path`` for reading (see :class:`FileSource`); an empty file gives an empty source."""
    try:
        return FileSource(path)
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
        try:
            anchor = RootDir(target)
        except OSError as exc:
            raise SourceError(f"cannot read {target}: {exc.strerror or exc}") from exc
        files: list[ArtifactFile] = []
        findings: list[Finding] = []
        root: Path | None = None  # resolved only when a link needs it: realpath costs a stat per component
        for rel, entry in walk(str(target)):
            if isinstance(entry, OSError):
                findings.append(codes.UNREADABLE.at(rel or ".", f"cannot list the directory: {entry.strerror}"))
                continue
            # The common case, a regular file, needs no stat of its own: the open checks it.
            if _is_plain_file(entry):
                item = self._listed(entry.path, rel, findings, anchor)
            else:
                root = root or target.resolve()
                item = self._entry(Path(entry.path), rel, root, findings, anchor)
            if item is not None:
                files.append(item)
        files.sort(key=lambda f: f.relpath.split("/"))
        return SourceListing(root=str(target), files=tuple(files), findings=tuple(findings))

    def _entry(self, full: Path, rel: str, root: Path, findings: list[Finding], anchor: RootDir) -> ArtifactFile | None:
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
        return self._listed(full, rel, findings, anchor)

    @staticmethod
    def _listed(
        full: Path | str, rel: str, findings: list[Finding], anchor: RootDir | None = None
    ) -> ArtifactFile | None:
        try:
            src = FileSource(full, root=anchor, relpath=rel) if anchor is not None else FileSource(full)
        except NotRegularFileError:
            findings.append(codes.SPECIAL_FILE.at(rel, "not a regular file when opened (changed while listed)"))
            return None
        except OSError as exc:
            if anchor is not None and exc.errno == errno.ENOTDIR:
                # A folder on the way was swapped for a link or a file after it was listed.
                findings.append(codes.CHANGED_WHILE_VERIFIED.at(rel, "a folder on its path is no longer a folder"))
            elif exc.errno in (errno.ELOOP, errno.ENXIO):
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
