"""Confinement of local targets to the model roots by directory descriptors (issue 16).

A local target is never read by its path name. Its path is first matched
*lexically* against the model roots (``..`` collapsed, nothing followed), then
opened component by component relative to a descriptor of the root, each
step ``openat(parent, name, O_DIRECTORY | O_NOFOLLOW)``; the last component
is opened ``O_PATH | O_NOFOLLOW`` and must be a folder or a regular file.
A symbolic link anywhere below the root (the target itself or any parent)
is refused, not followed.

The verification then reads the pinned folder through its descriptor, as
``/proc/self/fd/N`` (a folder) or ``/proc/self/fd/P/NAME`` (a file in the
pinned folder ``P``): the kernel resolves that from the open descriptor, so a
folder swapped for a link after it was pinned is never read. When the job
ends the path is walked again and must still lead to the same inode
(:meth:`Pinned.check_unchanged`); a swap during the job fails the job.
Hand-written because no maintained library offers an ``openat`` walk
(``openat2``'s ``RESOLVE_BENEATH`` is not exposed by Python).
Not handled here: links or swaps *inside* the target folder (the local
source's own walk, :mod:`weightguard.sources.local`, judges those) and
systems without ``/proc/self/fd`` (refused, never read by name).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from weightguard.errors import SourceError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FD_DIR = "/proc/self/fd"


class TargetRefused(SourceError):  # noqa: N818 - a decision about the request
    """The target may not be verified by this sidecar; ``status`` is the HTTP answer (403 or 422)."""

    def __init__(self, message: str, status: int, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


class TargetReplaced(SourceError):  # noqa: N818 - a state of the target, like TargetRefused
    """The target (or a folder above it) was replaced while it was being verified; nothing is approved."""


def locate(target: str, roots: Sequence[Path]) -> tuple[Path, tuple[str, ...]]:
    """The root holding ``target`` (by name alone) and the components below it.

    Raises:
        TargetRefused: 422 for a relative path, 403 for a path outside every root.
    """
    if not target.startswith("/"):
        raise TargetRefused(f"local target {target!r} must be an absolute path", 422)
    path = os.path.normpath(target)
    for root in roots:
        # The root as configured and as resolved: the operator's own links above the root are trusted.
        for base in dict.fromkeys((os.path.normpath(Path(root).absolute()), os.path.realpath(root))):
            if path == base or path.startswith(base.rstrip("/") + "/"):
                rest = path[len(base) :].strip("/")
                return Path(os.path.realpath(root)), tuple(p for p in rest.split("/") if p)
    raise TargetRefused(
        f"{target} is outside the sidecar's model roots", 403, hint="configure --model-root / WEIGHTGUARD_MODEL_ROOTS"
    )


@dataclass(slots=True)
class Pinned:
    """A target held open: ``folder`` is its descriptor (a folder target) or its parent's (a file target)."""

    target: str
    root: Path
    parts: tuple[str, ...]
    folder: int
    name: str | None
    identity: tuple[int, int]

    @property
    def path(self) -> str:
        """The target as a path the kernel resolves from the descriptor, never from the name."""
        base = f"{_FD_DIR}/{self.folder}"
        return base if self.name is None else f"{base}/{self.name}"

    @property
    def base(self) -> str:
        """The pinned folder's descriptor path (the target, or a file target's parent)."""
        return f"{_FD_DIR}/{self.folder}"

    def check_unchanged(self) -> None:
        """Walk the path again; it must lead to the same inode as the pinned one.

        Raises:
            TargetReplaced: the target or a folder above it is now a link, gone, or another inode.
        """
        try:
            again = pin_parts(self.target, self.root, self.parts)
        except TargetRefused as exc:
            raise TargetReplaced(
                f"{self.target} changed while it was verified ({exc.message}); the result is discarded"
            ) from exc
        try:
            if again.identity != self.identity:
                raise TargetReplaced(
                    f"{self.target} was replaced by another file or folder while it was verified;"
                    " the result is discarded"
                )
        finally:
            again.close()

    def close(self) -> None:
        """Release the descriptor (idempotent)."""
        if self.folder >= 0:
            os.close(self.folder)
            self.folder = -1

    def __enter__(self) -> Pinned:
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _exc: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()


_LINK = "a symbolic link below the model root is not followed"
_LINK_HINT = "name the real folder; links are refused so that a swap cannot lead outside the root"


def _refusal(target: str, exc: OSError) -> tuple[str, int]:
    """The message and HTTP status refusing ``target`` for an error of ``open``."""
    if exc.errno in (errno.ELOOP, errno.EMLINK):
        return f"{target}: {_LINK}", 403
    if exc.errno == errno.ENOENT:
        return f"{target} does not exist", 422
    if exc.errno == errno.ENOTDIR:
        return f"{target}: a component of the path is not a folder", 422
    return f"{target} cannot be opened: {exc.strerror or exc}", 422


def _open_folder(target: str, name: str, parent: int) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except OSError as exc:
        # Linux answers ENOTDIR, not ELOOP, for a link opened O_DIRECTORY | O_NOFOLLOW: tell them apart.
        try:
            is_link = stat.S_ISLNK(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode)
        except OSError:
            is_link = False
        if is_link:
            raise TargetRefused(f"{target}: {_LINK}", 403, hint=_LINK_HINT) from exc
        raise TargetRefused(*_refusal(target, exc)) from exc


def _open_leaf(target: str, name: str, parent: int) -> tuple[int, os.stat_result]:
    """An ``O_PATH`` descriptor of the last component and its stat (the caller closes it)."""
    try:
        # O_PATH: nothing is really opened (a FIFO cannot block, a device sees no open);
        # with O_NOFOLLOW a final link gives the link itself, which fstat shows as one.
        leaf = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
    except OSError as exc:
        raise TargetRefused(*_refusal(target, exc)) from exc
    st = os.fstat(leaf)
    if stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode):
        return leaf, st
    os.close(leaf)
    if stat.S_ISLNK(st.st_mode):
        raise TargetRefused(f"{target}: {_LINK}", 403, hint=_LINK_HINT)
    raise TargetRefused(f"{target} is not a regular file or folder", 422)


def pin_parts(target: str, root: Path, parts: tuple[str, ...]) -> Pinned:
    """Open ``root/parts...`` without following any link below ``root``.

    Raises:
        TargetRefused: 403 for a link on the way, 422 for anything missing or not a folder/regular file.
    """
    if not Path(_FD_DIR).is_dir() or not hasattr(os, "O_PATH"):
        raise TargetRefused("local targets need /proc/self/fd (Linux) to be read by descriptor", 422)
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise TargetRefused(f"the model root {root} cannot be opened: {exc.strerror or exc}", 422) from exc
    try:
        for part in parts[:-1]:
            child = _open_folder(target, part, fd)
            os.close(fd)
            fd = child
        if not parts:
            st = os.fstat(fd)
            return Pinned(target, root, parts, fd, None, (st.st_dev, st.st_ino))
        leaf, st = _open_leaf(target, parts[-1], fd)
    except BaseException:
        os.close(fd)
        raise
    if stat.S_ISDIR(st.st_mode):
        os.close(fd)
        return Pinned(target, root, parts, leaf, None, (st.st_dev, st.st_ino))
    os.close(leaf)
    return Pinned(target, root, parts, fd, parts[-1], (st.st_dev, st.st_ino))


def pin(target: str, roots: Sequence[Path]) -> Pinned:
    """Locate ``target`` in the roots and open it by descriptor (the caller closes it).

    Raises:
        TargetRefused: see :func:`locate` and :func:`pin_parts`.
    """
    root, parts = locate(target, roots)
    canonical = "/".join((str(root).rstrip("/"), *parts)) if parts else str(root)
    return pin_parts(canonical, root, parts)


__all__ = ["Pinned", "TargetRefused", "TargetReplaced", "locate", "pin", "pin_parts"]
