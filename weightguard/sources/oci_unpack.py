"""Unpacking an OCI image manifest's layers into a folder, safely: shared by every OCI fetcher.

Given a parsed image manifest and a way to open each blob as a digest-checked
stream, :func:`unpack_manifest` writes the layers in order into a fresh
folder: only regular files and folders are written (links, devices and FIFOs
are skipped and listed), names with ``..`` or absolute paths stop the fetch,
whiteouts delete what lower layers wrote, and member count and total bytes are
capped. ModelPack ``.raw`` weight layers are written to their
``org.cncf.model.filepath`` (ModelPack spec: weight, weight.config, doc,
code and dataset layers). ``+zstd`` layers are read with the ``zstandard``
library (the ``zstd`` extra; the standard library has no zstd before Python
3.14), with the decoder's window capped so a hostile frame cannot ask for
gigabytes; without the extra they are refused, never skipped. Used by the local OCI layout fetcher
(:mod:`weightguard.sidecar.fetch`) and the registry client
(:mod:`weightguard.sources.oci_registry`).
Not handled here: finding or downloading blobs, or deciding anything about the files.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import tarfile
import threading
import zlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from weightguard.errors import SourceError
from weightguard.sources.local import identity_of

INDEX_TYPES = frozenset(
    {"application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"}
)
MANIFEST_TYPES = frozenset(
    {"application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"}
)
TAR_TYPES = frozenset(
    {
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.cncf.model.weight.v1.tar",
        "application/vnd.cncf.model.weight.config.v1.tar",
        "application/vnd.cncf.model.doc.v1.tar",
        "application/vnd.cncf.model.code.v1.tar",
        "application/vnd.cncf.model.dataset.v1.tar",
        "application/vnd.kitops.modelkit.model.v1.tar",
    }
)
GZIP_TYPES = frozenset(
    {
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.cncf.model.weight.v1.tar+gzip",
        "application/vnd.cncf.model.weight.config.v1.tar+gzip",
        "application/vnd.cncf.model.doc.v1.tar+gzip",
        "application/vnd.cncf.model.code.v1.tar+gzip",
        "application/vnd.cncf.model.dataset.v1.tar+gzip",
        "application/vnd.kitops.modelkit.model.v1.tar+gzip",
    }
)
# The same layer kinds compressed with zstd (OCI image spec 1.1, ModelPack, KitOps).
ZSTD_TYPES = frozenset(t.replace("+gzip", "+zstd") for t in GZIP_TYPES if t.endswith("+gzip"))
# zstd's own default decoder limit (ZSTD_WINDOWLOG_LIMIT_DEFAULT = 27): frames asking more are refused.
ZSTD_MAX_WINDOW = 2**27
FILEPATH_ANNOTATION = "org.cncf.model.filepath"
DIGEST = re.compile(r"^sha256:([a-f0-9]{64})$")
# Each piece is received, hashed and written while it is still in the core's cache: with 1 MiB
# pieces a 1 GiB pull (4 layers, 2 cores) cost 2.5-2.7 s CPU, with 256 KiB ones 1.3-1.6 s (hashing
# alone is about 0.7 s); 128 KiB gained nothing more, and fewer pieces keep Python's per-piece work small.
CHUNK = 256 * 1024


class FetchError(SourceError):
    """The artifact could not be pulled or unpacked safely."""


@dataclass(frozen=True, slots=True)
class ArtifactRef:
    """What Harbor asks to scan: a repository and a manifest digest, plus a short-lived credential."""

    registry_url: str
    repository: str
    digest: str
    authorization: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class FetchLimits:
    """Caps on what one artifact may unpack to."""

    max_bytes: int = 8 * 1024**3
    max_members: int = 100_000
    max_manifest_bytes: int = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class WrittenFile:
    """A file as the unpacking left it: the sha256 of the bytes it wrote, and the file's identity then.

    ``identity`` is :func:`weightguard.sources.local.identity_of` (device, inode, size, mtime,
    ctime) taken after the last change the unpacking made; a file that still has it was not
    written since (see :mod:`weightguard.sources.oci_blobs` for when that may be relied on).
    """

    relpath: str
    size: int
    sha256: str
    identity: tuple[int, int, int, int, int]


@dataclass(frozen=True, slots=True)
class FetchedArtifact:
    """What was unpacked (``written``: only when the unpacking was asked to record it)."""

    manifest_digest: str
    layers: int
    files: int
    bytes: int
    skipped: tuple[str, ...] = ()
    written: tuple[WrittenFile, ...] = ()


class HashingReader:
    """A read-only stream that hashes and counts what passes through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        """Read up to ``n`` bytes, hashing them."""
        data = self._raw.read(n)
        self.hash.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        """Read to the end, so the whole blob is hashed."""
        while self.read(CHUNK):
            pass


BlobOpener = Callable[[str], AbstractContextManager[HashingReader]]
"""Opens the blob with a digest as a stream; raises :class:`FetchError` on exit if it did not match."""


def manifest_layers(manifest: object, digest: str) -> list[dict[str, object]]:
    """The layer descriptors of the parsed image ``manifest``.

    Raises:
        FetchError: the manifest is an index or malformed.
    """
    media_type = manifest.get("mediaType") if isinstance(manifest, dict) else None
    if not isinstance(manifest, dict) or media_type in INDEX_TYPES or not isinstance(manifest.get("layers"), list):
        raise FetchError(f"{digest} is not a single image manifest (indexes are not scanned)")
    if not all(isinstance(layer, dict) for layer in manifest["layers"]):
        raise FetchError("malformed layer descriptor")
    return list(manifest["layers"])


def unpack_manifest(
    manifest: object, digest: str, open_blob: BlobOpener, dest: Path, limits: FetchLimits
) -> FetchedArtifact:
    """Unpack the layers of the parsed image ``manifest`` (whose digest is ``digest``) into ``dest``.

    Raises:
        FetchError: the manifest is an index or malformed, a layer is unsafe, unreadable or over a limit.
    """
    layers = manifest_layers(manifest, digest)
    dest.mkdir(parents=True, exist_ok=True)
    state = Unpack(dest, limits)
    for layer in layers:
        unpack_layer(open_blob, layer, state)
    return FetchedArtifact(digest, len(layers), state.files, state.bytes, tuple(state.skipped))


def raw_filepath(layer: dict[str, object]) -> str | None:
    """Where a ModelPack ``.raw`` layer's one file goes; None for any other layer."""
    annotations = layer.get("annotations")
    filepath = annotations.get(FILEPATH_ANNOTATION) if isinstance(annotations, dict) else None
    return filepath if str(layer.get("mediaType", "")).endswith(".raw") and isinstance(filepath, str) else None


def unpack_layer(open_blob: BlobOpener, layer: dict[str, object], state: Unpack) -> None:
    """Unpack one layer into ``state``'s folder (see the module docstring for the rules).

    Raises:
        FetchError: the layer is unsafe, unreadable, of a type not unpacked, or over a limit.
    """
    media_type, digest = str(layer.get("mediaType", "")), str(layer.get("digest", ""))
    filepath = raw_filepath(layer)
    if filepath is not None:
        with open_blob(digest) as reader:
            state.write(filepath, reader)
        return
    if media_type not in TAR_TYPES | GZIP_TYPES | ZSTD_TYPES:
        # Fail closed: an unread layer could hold the weights that matter.
        raise FetchError(f"layer {digest} has media type {media_type!r}, which this fetcher cannot unpack")
    decoder, errors = _zstd(digest) if media_type in ZSTD_TYPES else (None, ())
    mode = "r|gz" if media_type in GZIP_TYPES else "r|"
    unreadable: tuple[type[BaseException], ...] = (tarfile.TarError, EOFError, zlib.error, OSError, *errors)
    with open_blob(digest) as reader:
        try:
            stream = decoder.stream_reader(reader, read_across_frames=True) if decoder is not None else reader
            with tarfile.open(fileobj=stream, mode=mode) as archive:  # type: ignore[call-overload]
                for member in archive:
                    state.member(archive, member)
        except unreadable as exc:
            raise FetchError(f"layer {digest} is not a readable tar archive: {exc}") from exc


def _zstd(digest: str) -> tuple[Any, tuple[type[Exception], ...]]:
    """A zstd decoder with a capped window and its error type; a :class:`FetchError` without the extra."""
    try:
        import zstandard
    except ImportError as exc:
        raise FetchError(
            f"layer {digest} is zstd-compressed; install weightguard's 'zstd' extra (the zstandard library) to read it"
        ) from exc
    return zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW), (zstandard.ZstdError,)


class Unpack:
    """Writes layer members into ``dest`` under the limits (one per fetch).

    Several threads may write different files at once (:mod:`weightguard.sources.oci_blobs`):
    the byte count is shared under a lock, and :attr:`stop` ends every write in progress.
    With ``record``, each file's sha256 (of the bytes written) and identity are kept in
    :attr:`written`; a file written from a whole blob takes the blob's own hash, not a second one.
    """

    def __init__(self, dest: Path, limits: FetchLimits, *, record: bool = False) -> None:
        self.dest = dest
        self.limits = limits
        self.record = record
        self.files = 0
        self.bytes = 0
        self.members = 0
        self.skipped: list[str] = []
        self.written: dict[str, WrittenFile] = {}
        self.stop = threading.Event()
        self._lock = threading.Lock()

    def path(self, name: str) -> Path:
        """Where member ``name`` goes inside the destination.

        Raises:
            FetchError: the name is empty, climbs with ``..`` or holds a backslash.
        """
        parts = [p for p in PurePosixPath(name.lstrip("/")).parts if p not in ("", ".")]
        if not parts or ".." in parts or "\\" in name:
            raise FetchError(f"unsafe member name {name!r} in a layer")
        return self.dest.joinpath(*parts)

    def member(self, archive: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        """Apply one tar member: a whiteout, a folder, a regular file (written), or skipped and listed."""
        self.members += 1
        if self.members > self.limits.max_members:
            raise FetchError(f"the artifact has more than {self.limits.max_members} layer members")
        path = self.path(member.name)
        if path.name.startswith(".wh."):
            self._whiteout(path)
        elif member.isdir():
            if path.is_file():
                path.unlink()
            path.mkdir(parents=True, exist_ok=True)
        elif member.isreg():
            stream = archive.extractfile(member)
            if stream is None:
                raise FetchError(f"cannot read layer member {member.name!r}")
            self.write(member.name, stream)
        elif len(self.skipped) < 1000:
            self.skipped.append(member.name)

    def _whiteout(self, path: Path) -> None:
        # OCI image spec, layer whiteouts: ".wh..wh..opq" empties the folder, ".wh.NAME" removes NAME.
        target = path.parent if path.name == ".wh..wh..opq" else path.with_name(path.name[4:])
        if path.name == ".wh..wh..opq":
            for child in target.iterdir() if target.is_dir() else ():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        elif target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()

    def _clear(self, name: str) -> Path:
        """The path for member ``name``, with files in the way of its folders and a folder at it removed."""
        path = self.path(name)
        for parent in reversed(path.relative_to(self.dest).parents):
            folder = self.dest / parent
            if folder.is_file():
                folder.unlink()
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            shutil.rmtree(path)
        return path

    def receive(self, stream: IO[bytes] | HashingReader, path: Path) -> WrittenFile:
        """Write all of ``stream`` to a new file at ``path`` (mode 0644); its sha256 when recording.

        Raises:
            FetchError: the artifact's bytes went over the cap, or :attr:`stop` was set.
        """
        # A HashingReader read from its start hashes exactly what is written: its hash is the file's.
        own = self.record and not (isinstance(stream, HashingReader) and stream.size == 0)
        hasher = hashlib.sha256() if own else None
        size = 0
        with path.open("wb") as out:
            while chunk := stream.read(CHUNK):
                if self.stop.is_set():
                    raise FetchError("the pull stopped (another layer failed)")
                with self._lock:
                    self.bytes += len(chunk)
                    over = self.bytes > self.limits.max_bytes
                if over:
                    raise FetchError(f"the artifact unpacks to more than {self.limits.max_bytes} bytes")
                out.write(chunk)
                if hasher is not None:
                    hasher.update(chunk)
                size += len(chunk)
            out.flush()  # every byte in the file before its identity is taken
            os.fchmod(out.fileno(), 0o644)  # never keep set-uid or executable bits from a layer
            st = os.fstat(out.fileno())  # after the last change this makes: the identity it leaves
        identity = identity_of(st)
        if not self.record:
            return WrittenFile("", size, "", identity)
        digest = hasher.hexdigest() if hasher is not None else stream.hash.hexdigest()  # type: ignore[union-attr]
        return WrittenFile("", size, digest, identity)

    def write(self, name: str, stream: IO[bytes] | HashingReader) -> None:
        """Write all of ``stream`` to member ``name``."""
        path = self._clear(name)
        self.keep(path, self.receive(stream, path))

    def place(self, name: str, staged: Path, written: WrittenFile) -> None:
        """Move a file :meth:`receive` wrote elsewhere (on this file system) to member ``name``.

        Raises:
            FetchError: what landed is not the file that was written (another inode, or written since).
        """
        path = self._clear(name)
        staged.replace(path)
        # The very inode received, unchanged (a rename changes only the ctime): a staging folder
        # swapped by whoever can write beside it is refused, never unpacked as the layer.
        st = os.lstat(path)
        identity = identity_of(st)
        if not stat.S_ISREG(st.st_mode) or identity[:4] != written.identity[:4]:
            raise FetchError(f"{name}: the staged layer file was replaced before it was unpacked")
        self.keep(path, WrittenFile("", written.size, written.sha256, identity))

    def keep(self, path: Path, written: WrittenFile) -> None:
        """Count the file now at ``path`` and, when recording, keep what was written to it."""
        with self._lock:
            self.files += 1
            if self.record:
                relpath = path.relative_to(self.dest).as_posix()
                self.written[relpath] = WrittenFile(relpath, written.size, written.sha256, written.identity)


__all__ = [
    "DIGEST",
    "FILEPATH_ANNOTATION",
    "INDEX_TYPES",
    "MANIFEST_TYPES",
    "ZSTD_TYPES",
    "ArtifactRef",
    "BlobOpener",
    "FetchError",
    "FetchLimits",
    "FetchedArtifact",
    "HashingReader",
    "Unpack",
    "manifest_layers",
    "raw_filepath",
    "unpack_layer",
    "WrittenFile",
    "unpack_manifest",
]
