"""Staging and publishing the converted model: all or nothing where the file system allows it.

A missing or empty output directory is built beside it, under its own name,
and published with one ``rename`` (POSIX replaces an empty directory
atomically): readers see no output or the whole output. A directory that
already holds other files gets each new file linked in whole; no existing
file is ever overwritten, even one created while the conversion ran.

Each staging folder holds an owner marker (host, boot, pid) beside the staged
files, never among them. A run killed before it could clean up (SIGKILL, a
power cut; SIGTERM/SIGINT are handled by :mod:`weightguard.convert.interrupt`)
leaves its folder behind; the next run's :func:`sweep_stale_staging` removes
such folders, but only those whose marker proves them weightguard's and stale:
written on this host, by a process that no longer runs (same boot) or before
the last reboot. A folder without a readable marker, of another user or another
host, is never touched (issue 16).
Not handled here: producing the files.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import socket
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path

from weightguard.errors import ConversionError

_HELD_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})

STAGING_PREFIX = ".weightguard-staging-"
OWNER_MARKER = ".weightguard-owner.json"
_FILES = "files"  # the staged files of a run into a folder that already holds files, beside the marker


def make_staging(out_dir: Path, produced: Sequence[str]) -> tuple[Path, Path, bool]:
    """Return ``(folder to remove at the end, staging folder, whether out_dir is published whole)``.

    A missing or empty output directory is staged beside it under its own name and published
    with one rename (all or nothing); a directory that already holds other files is staged
    inside it and each file is renamed in (each file whole, never overwriting). Stale staging
    folders of earlier, killed runs are swept from where the new one goes first.

    SIGTERM/SIGINT are held back while the folder is made (see :mod:`weightguard.convert.interrupt`):
    a signal that lands between creating the folder and handing it to the caller's clean-up would
    otherwise leave it behind. Held signals are delivered inside this function's clean-up scope.
    """
    held = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD_SIGNALS)
    holder: Path | None = None
    try:
        holder, staging, fresh = _make_staging(out_dir, produced)
        signal.pthread_sigmask(signal.SIG_SETMASK, held)  # a held signal's handler runs here, inside the try
    except BaseException:  # noqa: BLE001 - a signal's SystemExit too: remove what was made, then re-raise
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        if holder is not None:
            shutil.rmtree(holder, ignore_errors=True)
        raise
    return holder, staging, fresh


def _make_staging(out_dir: Path, produced: Sequence[str]) -> tuple[Path, Path, bool]:
    try:
        fresh = not out_dir.exists() or (out_dir.is_dir() and not any(out_dir.iterdir()))
        if fresh:
            out_dir.parent.mkdir(parents=True, exist_ok=True)
            sweep_stale_staging(out_dir.parent)
            holder = _new_holder(out_dir.parent)
            staging = holder / out_dir.name
            staging.mkdir()
            return holder, staging, True
        sweep_stale_staging(out_dir)
        clashes = [p for p in produced if (out_dir / p).exists()]
        if clashes:
            raise ConversionError(f"{out_dir} already holds {clashes[:5]}", hint="choose an empty output directory")
        holder = _new_holder(out_dir)
        staging = holder / _FILES
        staging.mkdir()
    except OSError as exc:
        raise ConversionError(f"cannot use the output directory {out_dir}: {exc.strerror or exc}") from exc
    return holder, staging, False


def _new_holder(parent: Path) -> Path:
    holder = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=parent))
    owner = {"host": socket.gethostname(), "boot": _boot_id(), "pid": os.getpid()}
    fd = os.open(holder / OWNER_MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(owner, fh)
    return holder


def _boot_id() -> str:
    # Linux names each boot; elsewhere "" (then only a missing pid proves a folder stale).
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def sweep_stale_staging(directory: Path) -> list[Path]:
    """Remove the staging folders in ``directory`` that a dead weightguard run left behind.

    A folder is removed only when all of this holds: its name has the staging prefix, it is a
    real directory (not a link) of this user, its marker is a regular file naming this host,
    and the process named there is gone: the boot differs, or the pid no longer exists. A
    live pid is kept even if it might be reused (fail safe: never remove another run's work).

    Returns:
        The folders removed.
    """
    removed: list[Path] = []
    try:
        candidates = [p for p in directory.iterdir() if p.name.startswith(STAGING_PREFIX)]
    except OSError:
        return removed
    for folder in candidates:
        if _provably_stale(folder):
            shutil.rmtree(folder, ignore_errors=True)  # rmtree never follows links out of the folder
            removed.append(folder)
    return removed


def _provably_stale(folder: Path) -> bool:
    try:
        info = folder.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            return False
        fd = os.open(folder / OWNER_MARKER, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as fh:
            owner = json.loads(fh.read(4096))
    except (OSError, ValueError):
        return False
    if not isinstance(owner, dict) or owner.get("host") != socket.gethostname():
        return False
    pid, boot = owner.get("pid"), owner.get("boot")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0 or not isinstance(boot, str):
        return False
    if boot and _boot_id() and boot != _boot_id():
        return True  # written before the last reboot: its process is gone
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # exists (another user's process, EPERM): not provably gone
    return False


def publish_folder(staging: Path, out_dir: Path) -> None:
    """Rename the staged folder to ``out_dir`` (missing or empty) in one step.

    Raises:
        ConversionError: the rename failed (``out_dir`` appeared or filled meanwhile).
    """
    # The staged folder was made with mkdir's usual mode (see make_staging), not mkdtemp's 0700.
    try:
        staging.replace(out_dir)  # POSIX rename(2) also replaces an empty directory, atomically
    except OSError as exc:
        raise ConversionError(f"cannot publish the output into {out_dir}: {exc.strerror or exc}") from exc
    sync_directory(out_dir.parent)


def publish_files(staging: Path, out_dir: Path) -> None:
    """Move each staged file into ``out_dir`` under its name, never replacing a file there.

    The clashes were checked when staging began, but another writer may have taken a name
    since: each file is hard-linked in (``link(2)`` fails rather than replace, and the file
    appears whole), then its staged name dropped. A name taken meanwhile refuses the
    publication, and the files this call already placed are removed again.

    Raises:
        ConversionError: a name was taken meanwhile, or a file could not be placed.
    """
    placed: list[Path] = []
    try:
        for item in sorted(p for p in staging.rglob("*") if p.is_file()):
            target = out_dir / item.relative_to(staging)
            target.parent.mkdir(parents=True, exist_ok=True)
            _place(item, target)
            placed.append(target)
            item.unlink(missing_ok=True)  # the staged name (gone already after a rename)
    except OSError as exc:
        for target in placed:
            with contextlib.suppress(OSError):
                target.unlink()
        if isinstance(exc, FileExistsError):
            raise ConversionError(
                f"{exc.filename or out_dir} appeared while the conversion ran; nothing was overwritten",
                hint="choose an empty output directory",
            ) from exc
        raise ConversionError(f"cannot publish the output into {out_dir}: {exc.strerror or exc}") from exc
    sync_directory(out_dir)


# link(2) errors meaning "this file system has no hard links here", not "the name is taken".
# EXDEV is not one: a rename across file systems fails as well.
_NO_LINKS = frozenset({errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS})


def _place(item: Path, target: Path) -> None:
    """Give ``item``'s file also the name ``target``, which must not exist (FileExistsError otherwise)."""
    try:
        os.link(item, target, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
        # Without hard links: claim the name exclusively, then rename over the claim.
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
        try:
            item.replace(target)
        except BaseException:  # noqa: BLE001 - drop the empty claim on anything, then re-raise
            with contextlib.suppress(OSError):  # the rename's error is the one to report
                target.unlink(missing_ok=True)
            raise


def sync_directory(path: Path) -> None:
    """Flush a directory's entries so that the renames into it survive a crash."""
    # The renames are durable once the directory itself is flushed (POSIX; a no-op where unsupported).
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on directories; the files themselves are synced
    finally:
        os.close(fd)
