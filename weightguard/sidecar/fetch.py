"""Pulling an artifact for the Harbor adapter: the :class:`ArtifactFetcher` seam and a local OCI layout.

:class:`LocalOciLayoutFetcher` reads an OCI image layout on disk
(``oci-layout``, ``index.json``, ``blobs/sha256/...``; one layout per
repository under a root folder), finds the manifest by digest (never by tag),
checks every blob against its digest while streaming it, and unpacks
``tar`` / ``tar+gzip`` layers into a fresh folder: only regular files and
folders are written (links, devices and FIFOs are skipped and listed),
names with ``..`` or absolute paths stop the fetch, whiteouts delete what
lower layers wrote, and member count and total bytes are capped. ModelPack
``.raw`` weight layers are written to their ``org.cncf.model.filepath``.
Not handled here: talking to a registry over HTTP (a registry fetcher would
implement the same interface) or deciding anything about the files.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tarfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Protocol

from weightguard.errors import SourceError

INDEX_TYPES = frozenset(
    {"application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"}
)
TAR_TYPES = frozenset(
    {
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.cncf.model.weight.v1.tar",
        "application/vnd.kitops.modelkit.model.v1.tar",
    }
)
GZIP_TYPES = frozenset(
    {
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.cncf.model.weight.v1.tar+gzip",
        "application/vnd.kitops.modelkit.model.v1.tar+gzip",
    }
)
FILEPATH_ANNOTATION = "org.cncf.model.filepath"
_DIGEST = re.compile(r"^sha256:([a-f0-9]{64})$")
_REPOSITORY = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")
_CHUNK = 1024 * 1024


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
class FetchedArtifact:
    """What was unpacked."""

    manifest_digest: str
    layers: int
    files: int
    bytes: int
    skipped: tuple[str, ...] = ()


class ArtifactFetcher(Protocol):
    """Pulls an artifact's files into ``dest`` (an empty folder the caller removes afterwards)."""

    def fetch(self, ref: ArtifactRef, dest: Path) -> FetchedArtifact:
        """Unpack the artifact.

        Raises:
            FetchError: it cannot be found, does not match its digest, breaks a limit or is unsafe.
        """
        ...


class _HashingReader:
    """A read-only stream that hashes and counts what passes through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self.hash.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass


class LocalOciLayoutFetcher:
    """Reads artifacts from OCI image layouts at ``root/<repository>``."""

    def __init__(self, root: Path, limits: FetchLimits = FetchLimits()) -> None:
        """Serve layouts below ``root``."""
        self.root = root
        self.limits = limits

    def fetch(self, ref: ArtifactRef, dest: Path) -> FetchedArtifact:
        """Unpack the image manifest ``ref.digest`` of ``ref.repository`` into ``dest``.

        Raises:
            FetchError: see :class:`ArtifactFetcher`.
        """
        if not _REPOSITORY.match(ref.repository):
            raise FetchError(f"malformed repository name {ref.repository!r}")
        layout = self.root / ref.repository
        self._check_layout(layout)
        try:
            manifest = json.loads(self._blob_bytes(layout, ref.digest))
        except (ValueError, RecursionError) as exc:  # RecursionError: nested past the parser's stack
            raise FetchError(f"manifest {ref.digest} is not readable JSON") from exc
        media_type = manifest.get("mediaType") if isinstance(manifest, dict) else None
        if not isinstance(manifest, dict) or media_type in INDEX_TYPES or not isinstance(manifest.get("layers"), list):
            raise FetchError(f"{ref.digest} is not a single image manifest (indexes are not scanned)")
        dest.mkdir(parents=True, exist_ok=True)
        state = _Unpack(dest, self.limits)
        for layer in manifest["layers"]:
            if not isinstance(layer, dict):
                raise FetchError("malformed layer descriptor")
            self._layer(layout, layer, state)
        return FetchedArtifact(ref.digest, len(manifest["layers"]), state.files, state.bytes, tuple(state.skipped))

    def _check_layout(self, layout: Path) -> None:
        try:
            marker = json.loads((layout / "oci-layout").read_bytes())
            index = json.loads((layout / "index.json").read_bytes())
        except (OSError, ValueError, RecursionError) as exc:
            raise FetchError(f"no readable OCI image layout at {layout}") from exc
        if not isinstance(marker, dict) or marker.get("imageLayoutVersion") != "1.0.0" or not isinstance(index, dict):
            raise FetchError(f"{layout} is not an OCI image layout 1.0.0")

    @contextmanager
    def _blob(self, layout: Path, digest: str) -> Iterator[_HashingReader]:
        match = _DIGEST.match(digest)
        if match is None:
            raise FetchError(f"unsupported or malformed digest {digest!r}")
        try:
            with (layout / "blobs" / "sha256" / match.group(1)).open("rb") as raw:
                reader = _HashingReader(raw)
                yield reader
                reader.drain()
        except OSError as exc:
            raise FetchError(f"blob {digest} is missing or unreadable in {layout}") from exc
        if f"sha256:{reader.hash.hexdigest()}" != digest:
            raise FetchError(f"blob {digest} does not match its digest")

    def _blob_bytes(self, layout: Path, digest: str) -> bytes:
        with self._blob(layout, digest) as reader:
            data = reader.read(self.limits.max_manifest_bytes + 1)
            if len(data) > self.limits.max_manifest_bytes:
                raise FetchError(f"manifest {digest} is over {self.limits.max_manifest_bytes} bytes")
        return data

    def _layer(self, layout: Path, layer: dict[str, object], state: _Unpack) -> None:
        media_type, digest = str(layer.get("mediaType", "")), str(layer.get("digest", ""))
        annotations = layer.get("annotations") if isinstance(layer.get("annotations"), dict) else {}
        assert isinstance(annotations, dict)
        if media_type.endswith(".raw") and isinstance(annotations.get(FILEPATH_ANNOTATION), str):
            with self._blob(layout, digest) as reader:
                state.write(str(annotations[FILEPATH_ANNOTATION]), reader)
            return
        if media_type not in TAR_TYPES | GZIP_TYPES:
            # Fail closed: an unread layer could hold the weights that matter.
            raise FetchError(f"layer {digest} has media type {media_type!r}, which this fetcher cannot unpack")
        mode = "r|gz" if media_type in GZIP_TYPES else "r|"
        with self._blob(layout, digest) as reader:
            try:
                with tarfile.open(fileobj=reader, mode=mode) as archive:  # type: ignore[call-overload]
                    for member in archive:
                        state.member(archive, member)
            except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
                raise FetchError(f"layer {digest} is not a readable tar archive: {exc}") from exc


class _Unpack:
    """Writes layer members into ``dest`` under the limits (internal, one per fetch)."""

    def __init__(self, dest: Path, limits: FetchLimits) -> None:
        self.dest = dest
        self.limits = limits
        self.files = 0
        self.bytes = 0
        self.members = 0
        self.skipped: list[str] = []

    def _path(self, name: str) -> Path:
        parts = [p for p in PurePosixPath(name.lstrip("/")).parts if p not in ("", ".")]
        if not parts or ".." in parts or "\\" in name:
            raise FetchError(f"unsafe member name {name!r} in a layer")
        return self.dest.joinpath(*parts)

    def member(self, archive: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        self.members += 1
        if self.members > self.limits.max_members:
            raise FetchError(f"the artifact has more than {self.limits.max_members} layer members")
        path = self._path(member.name)
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

    def write(self, name: str, stream: IO[bytes] | _HashingReader) -> None:
        path = self._path(name)
        for parent in reversed(path.relative_to(self.dest).parents):
            folder = self.dest / parent
            if folder.is_file():
                folder.unlink()
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            shutil.rmtree(path)
        with path.open("wb") as out:
            while chunk := stream.read(_CHUNK):
                self.bytes += len(chunk)
                if self.bytes > self.limits.max_bytes:
                    raise FetchError(f"the artifact unpacks to more than {self.limits.max_bytes} bytes")
                out.write(chunk)
        path.chmod(0o644)  # never keep set-uid or executable bits from a layer
        self.files += 1


__all__ = ["ArtifactFetcher", "ArtifactRef", "FetchError", "FetchLimits", "FetchedArtifact", "LocalOciLayoutFetcher"]
