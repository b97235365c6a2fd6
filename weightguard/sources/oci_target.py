"""``oci://`` targets and Harbor's artifacts pulled into local folders, through :mod:`weightguard.sources.oci_registry`.

:func:`pull_oci_target` turns ``oci://HOST[:PORT]/REPO@sha256:…`` into a local
folder, the manifest digest and (for a folder it made private) what it wrote, so
the pipeline can take the files' sha256 from the pull instead of hashing them
again (:mod:`weightguard.sources.oci_blobs` says when that is sound);

:class:`RegistryFetcher` is the registry client behind the sidecar's
``ArtifactFetcher`` seam.
Not handled here: HTTP, authentication and unpacking.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from weightguard.integrity.hashing import FileHashes
from weightguard.sources.interface import SourceListing
from weightguard.sources.local import LocalSource
from weightguard.sources.oci_auth import load_credentials
from weightguard.sources.oci_blobs import vouched_hashes
from weightguard.sources.oci_registry import RegistryClient, parse_oci_uri
from weightguard.sources.oci_unpack import ArtifactRef, FetchedArtifact, FetchError, FetchLimits, WrittenFile

_DEFAULT_LIMITS = FetchLimits()


@dataclass(frozen=True, slots=True)
class PulledTarget:
    """An ``oci://`` target pulled: the folder, the manifest digest, and what the pull wrote.

    ``written`` is empty unless the pull made ``folder`` itself, private (0700): only then may
    its digests stand for the files' (:func:`~weightguard.sources.oci_blobs.vouched_hashes`).
    """

    folder: Path
    manifest_digest: str
    written: tuple[WrittenFile, ...] = ()


def pull_oci_target(
    uri: str,
    dest: Path | None = None,
    *,
    auth_file: Path | None = None,
    insecure_registries: Collection[str] = (),
    ca_bundle: Path | None = None,
    allow_tag: bool = False,
    limits: FetchLimits = _DEFAULT_LIMITS,
    transport: httpx.BaseTransport | None = None,
) -> PulledTarget:
    """Pull ``oci://HOST[:PORT]/REPO@sha256:…`` into ``dest`` (default: a new private temporary folder).

    Returns the folder holding the model files and the digest of the manifest that was unpacked
    (for an index, the model manifest it lists). The caller removes the folder.

    Raises:
        FetchError: malformed URI, a tag without ``allow_tag``, or any failure of :meth:`RegistryClient.pull`.
        SourceError: unreadable credentials.
    """
    ref = parse_oci_uri(uri)
    insecure = ref.host in {h.lower() for h in insecure_registries}
    credentials = load_credentials(ref.host, auth_file)
    if ref.digest is None and not allow_tag:
        raise FetchError(f"{uri} is not pinned to a digest", hint="use oci://HOST/REPO@sha256:… (tags can move)")
    folder = dest if dest is not None else Path(tempfile.mkdtemp(prefix="weightguard-oci-"))
    private = dest is None  # mkdtemp: made here, 0700
    if dest is not None and not dest.exists():
        try:
            dest.mkdir(mode=0o700)  # fails if someone else made it first: then it is not private
            private = True
        except OSError:
            private = False
    pulled = False
    try:
        with RegistryClient(
            ref.host,
            credentials=credentials,
            insecure=insecure,
            ca_bundle=ca_bundle,
            limits=limits,
            transport=transport,
        ) as client:
            digest = ref.digest or client.resolve_tag(ref.repository, str(ref.tag))
            fetched = client.pull(ref.repository, digest, folder, record=private)
            pulled = True
    finally:
        if not pulled and (dest is None or private):  # a folder this call made is not left behind half-written
            shutil.rmtree(folder, ignore_errors=True)
    return PulledTarget(folder, fetched.manifest_digest, fetched.written if private else ())


class RegistryFetcher:
    """The sidecar's ``ArtifactFetcher`` over a live registry (Harbor passes its URL and a credential)."""

    def __init__(
        self,
        limits: FetchLimits = _DEFAULT_LIMITS,
        *,
        insecure_registries: Collection[str] = (),
        ca_bundle: Path | None = None,
    ) -> None:
        """Pull under ``limits``; plain HTTP only to the hosts named in ``insecure_registries``."""
        self.limits = limits
        self.insecure = {h.lower() for h in insecure_registries}
        self.ca_bundle = ca_bundle

    def fetch(self, ref: ArtifactRef, dest: Path) -> FetchedArtifact:
        """Unpack ``ref.repository@ref.digest`` from ``ref.registry_url`` into ``dest``.

        Raises:
            FetchError: see :meth:`RegistryClient.pull`.
        """
        host = ref.registry_url.split("://", 1)[-1].rstrip("/").lower()
        with RegistryClient(
            ref.registry_url,
            authorization=ref.authorization,
            insecure=host in self.insecure,
            ca_bundle=self.ca_bundle,
            limits=self.limits,
        ) as client:
            return client.pull(ref.repository, ref.digest, dest)


@dataclass(frozen=True, slots=True)
class ListedTarget:
    """A pulled ``oci://`` target listed as a local folder, with the digests the pull vouches for."""

    uri: str  # pinned to the manifest that was unpacked
    name: str
    folder: Path
    listing: SourceListing
    known: Mapping[str, FileHashes]


def list_oci_target(
    uri: str,
    dest: Path | None,
    *,
    auth_file: Path | None,
    insecure_registries: Collection[str],
    ca_bundle: Path | None,
    allow_tag: bool,
) -> ListedTarget:
    """Pull ``uri`` (:func:`pull_oci_target`) and list the folder as ``verify`` lists one (no links).

    Raises:
        FetchError: see :func:`pull_oci_target`.
        SourceError: unreadable credentials, or the folder cannot be listed.
    """
    pulled = pull_oci_target(
        uri,
        dest,
        auth_file=auth_file,
        insecure_registries=insecure_registries,
        ca_bundle=ca_bundle,
        allow_tag=allow_tag,
    )
    ref = parse_oci_uri(uri)
    return list_pulled(f"oci://{ref.host}/{ref.repository}@{pulled.manifest_digest}", pulled.folder, pulled.written)


def list_pulled(pinned: str, folder: Path, written: Sequence[WrittenFile] = ()) -> ListedTarget:
    """List ``folder``, where ``pinned`` (``oci://HOST/REPO@sha256:…``) was pulled earlier, as ``verify`` lists one.

    verify-many pulls a target once and judges the folder later in a worker: the listing is
    the same as :func:`list_oci_target`'s, without a second pull.

    Raises:
        FetchError: ``pinned`` is not an ``oci://`` URI.
        SourceError: the folder cannot be listed.
    """
    ref = parse_oci_uri(pinned)
    listing = LocalSource(folder, allow_symlinks=False).collect()
    return ListedTarget(
        pinned, ref.repository.rsplit("/", 1)[-1], folder, listing, vouched_hashes(written, listing.files)
    )


__all__ = [
    "ListedTarget",
    "PulledTarget",
    "list_oci_target",
    "list_pulled",
    "RegistryFetcher",
    "pull_oci_target",
]
