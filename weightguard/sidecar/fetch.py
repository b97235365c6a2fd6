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
The unpacking rules live in :mod:`weightguard.sources.oci_unpack` (shared with
the registry client, :mod:`weightguard.sources.oci_registry`).
Not handled here: talking to a registry over HTTP or deciding anything about the files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from weightguard.sources.oci_unpack import (
    DIGEST,
    ArtifactRef,
    FetchedArtifact,
    FetchError,
    FetchLimits,
    HashingReader,
    unpack_manifest,
)

_DEFAULT_LIMITS = FetchLimits()
_REPOSITORY = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")


class ArtifactFetcher(Protocol):
    """Pulls an artifact's files into ``dest`` (an empty folder the caller removes afterwards)."""

    def fetch(self, ref: ArtifactRef, dest: Path) -> FetchedArtifact:
        """Unpack the artifact.

        Raises:
            FetchError: it cannot be found, does not match its digest, breaks a limit or is unsafe.
        """
        ...


class LocalOciLayoutFetcher:
    """Reads artifacts from OCI image layouts at ``root/<repository>``."""

    def __init__(self, root: Path, limits: FetchLimits = _DEFAULT_LIMITS) -> None:
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
        return unpack_manifest(manifest, ref.digest, lambda digest: self._blob(layout, digest), dest, self.limits)

    def _check_layout(self, layout: Path) -> None:
        try:
            marker = json.loads((layout / "oci-layout").read_bytes())
            index = json.loads((layout / "index.json").read_bytes())
        except (OSError, ValueError, RecursionError) as exc:
            raise FetchError(f"no readable OCI image layout at {layout}") from exc
        if not isinstance(marker, dict) or marker.get("imageLayoutVersion") != "1.0.0" or not isinstance(index, dict):
            raise FetchError(f"{layout} is not an OCI image layout 1.0.0")

    @contextmanager
    def _blob(self, layout: Path, digest: str) -> Iterator[HashingReader]:
        match = DIGEST.match(digest)
        if match is None:
            raise FetchError(f"unsupported or malformed digest {digest!r}")
        try:
            with (layout / "blobs" / "sha256" / match.group(1)).open("rb") as raw:
                reader = HashingReader(raw)
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


__all__ = ["ArtifactFetcher", "ArtifactRef", "FetchError", "FetchLimits", "FetchedArtifact", "LocalOciLayoutFetcher"]
