"""Attaching an artifact to a manifest in an OCI registry as an OCI 1.1 referrer, and finding it again.

A referrer is an image manifest whose ``subject`` names the manifest it is about
(OCI image spec 1.1): here an empty config (``application/vnd.oci.empty.v1+json``,
the two bytes ``{}``), one layer holding the artifact, and an ``artifactType``
naming what it is. Pushing is the distribution spec's monolithic upload
(``POST …/blobs/uploads/`` then ``PUT <location>?digest=…``) and a ``PUT`` of
the manifest by its own digest, so no tag is moved.

A registry with the referrers API answers that ``PUT`` with an ``OCI-Subject``
header and lists referrers at ``GET /v2/<name>/referrers/<digest>``. For one
without it (the CNCF distribution registry 2.x, many mirrors) the spec's tag
schema is kept: the tag ``sha256-<hex>`` of the subject holds an image index of
its referrers, read, merged with the new descriptor and written back. That
read-merge-write can lose a descriptor when two clients attach to the same
subject at the same moment; the spec accepts this (there is no conditional PUT)
and the referrer manifest itself is never lost, only its listing.

Reading goes the same way round: the referrers API, and on its 404 the tag.
Whatever a listing names is only a hint: the caller checks the artifact's own
content (for attestations: the signature and the statement's subjects), never
the ``subject`` field, since anyone who may push can attach anything to anything.
Every read is capped and checked against its digest by :class:`RegistryClient`.
Not handled here: what the artifact means, deleting referrers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx

from weightguard.sources.oci_auth import load_credentials
from weightguard.sources.oci_registry import OciReference, RegistryClient, parse_oci_uri, read_capped
from weightguard.sources.oci_unpack import DIGEST, INDEX_TYPES, MANIFEST_TYPES, FetchError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_BLOB = b"{}"
MAX_REFERRERS = 256  # a listing longer than this is cut (the newest are appended last, so keep the tail)
MAX_ARTIFACT_BYTES = 4 * 1024 * 1024  # an attestation bundle is a few KiB


@dataclass(frozen=True, slots=True)
class Descriptor:
    """An OCI content descriptor."""

    media_type: str
    digest: str
    size: int
    artifact_type: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        """The descriptor as OCI JSON."""
        out: dict[str, object] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


@dataclass(frozen=True, slots=True)
class Attached:
    """A referrer that was pushed: its descriptor, its subject, and how it is listed."""

    referrer: Descriptor
    subject: Descriptor
    listing: str  # "referrers API" or "tag sha256-…"


def fallback_tag(digest: str) -> str:
    """The tag-schema tag that lists the referrers of ``digest``."""
    return digest.replace(":", "-", 1)


def digest_of(data: bytes) -> str:
    """The sha256 digest of ``data`` in OCI form."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def open_client(
    ref: OciReference,
    *,
    auth_file: Path | None = None,
    insecure_registries: Collection[str] = (),
    ca_bundle: Path | None = None,
) -> RegistryClient:
    """A client for ``ref``'s registry with the credentials the Docker config or ``auth_file`` hold.

    Raises:
        SourceError: unreadable credentials or CA bundle, or plain HTTP that was not allowed.
    """
    insecure = ref.host in {h.lower() for h in insecure_registries}
    credentials = load_credentials(ref.host, auth_file)
    return RegistryClient(ref.host, credentials=credentials, insecure=insecure, ca_bundle=ca_bundle)


def parse_pinned(uri: str) -> OciReference:
    """Parse ``oci://HOST/REPO@sha256:…``; a tag is refused (an approval concerns one digest).

    Raises:
        FetchError: malformed, or not pinned to a digest.
    """
    ref = parse_oci_uri(uri)
    if ref.digest is None:
        raise FetchError(f"{uri} is not pinned to a digest", hint="use oci://HOST/REPO@sha256:… (tags can move)")
    return ref


def subject_descriptor(client: RegistryClient, repository: str, digest: str) -> Descriptor:
    """The descriptor (media type, size) of the manifest ``digest``, read and checked.

    Raises:
        FetchError: missing, oversized, not matching its digest, or not a manifest/index.
    """
    with client.request(
        "GET", f"/v2/{repository}/manifests/{digest}", repository, OCI_MANIFEST + ", " + OCI_INDEX
    ) as r:
        body = read_capped(r, client.limits.max_manifest_bytes, f"manifest {digest}")
        header_type = r.headers.get("content-type", "").split(";")[0].strip()
    if digest_of(body) != digest:
        raise FetchError(f"manifest {digest} from {client.base} does not match its digest")
    try:
        declared = json.loads(body).get("mediaType")
    except (ValueError, RecursionError, AttributeError) as exc:
        raise FetchError(f"manifest {digest} is not a JSON object") from exc
    media_type = declared if isinstance(declared, str) and declared else header_type
    if media_type not in MANIFEST_TYPES | INDEX_TYPES:
        raise FetchError(f"{digest} is a {media_type!r}, not a manifest or index a referrer can name")
    return Descriptor(media_type, digest, len(body))


def push_blob(client: RegistryClient, repository: str, data: bytes) -> str:
    """Upload ``data`` in one request (monolithic upload); return its digest.

    Raises:
        FetchError: the registry refuses the upload or sends it elsewhere.
    """
    digest = digest_of(data)
    with client.request("POST", f"/v2/{repository}/blobs/uploads/", repository, push=True, expect=(202,)) as r:
        location = r.headers.get("location", "")
    target = httpx.URL(client.base + "/").join(location)
    if not location or f"{target.scheme}://{target.netloc.decode('ascii')}" != client.base:
        # The upload URL is where the credentials go next: only to the registry they belong to.
        raise FetchError(f"the registry {client.base} sent the upload to {location[:200]!r}, not to itself")
    path = target.copy_merge_params({"digest": digest}).raw_path.decode("ascii")
    headers = {"Content-Type": "application/octet-stream"}
    with client.request("PUT", path, repository, push=True, content=data, headers=headers, expect=(201,)):
        pass
    return digest


def put_manifest(
    client: RegistryClient, repository: str, reference: str, body: bytes, media_type: str
) -> httpx.Headers:
    """PUT a manifest or index under ``reference`` (a digest or tag); return the answer's headers.

    Raises:
        FetchError: the registry refuses it.
    """
    headers = {"Content-Type": media_type}
    path = f"/v2/{repository}/manifests/{reference}"
    with client.request("PUT", path, repository, push=True, content=body, headers=headers, expect=(201,)) as r:
        return r.headers


def referrer_manifest(
    subject: Descriptor, artifact_type: str, layer: Descriptor, annotations: Mapping[str, str]
) -> bytes:
    """An image manifest that attaches ``layer`` to ``subject`` (OCI 1.1 artifact guidance)."""
    manifest: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": Descriptor(EMPTY_TYPE, digest_of(EMPTY_BLOB), len(EMPTY_BLOB)).to_json(),
        "layers": [layer.to_json()],
        "subject": subject.to_json(),
    }
    if annotations:
        manifest["annotations"] = dict(annotations)
    return json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode()


def merge_index(existing: bytes | None, descriptor: Descriptor, tag: str) -> bytes:
    """The tag-schema index ``existing`` (or a new one) with ``descriptor`` added once.

    Raises:
        FetchError: the tag holds something other than an index (it is not overwritten).
    """
    entries: list[object] = []
    if existing is not None:
        try:
            index = json.loads(existing)
        except (ValueError, RecursionError) as exc:
            raise FetchError(f"the referrers tag {tag} holds something that is not JSON") from exc
        if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
            raise FetchError(f"the tag {tag} holds something other than a referrers index; it is left as it is")
        entries = [m for m in index["manifests"] if not (isinstance(m, dict) and m.get("digest") == descriptor.digest)]
    entries.append(descriptor.to_json())
    index_body = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    return json.dumps(index_body, separators=(",", ":"), sort_keys=True).encode()


def _get_optional(client: RegistryClient, repository: str, path: str, accept: str) -> bytes | None:
    """The body at ``path``, or None on 404."""
    with client.request("GET", path, repository, accept, expect=(200, 404)) as r:
        if r.status_code == 404:
            return None
        return read_capped(r, client.limits.max_manifest_bytes, path)


def attach(
    client: RegistryClient,
    repository: str,
    subject_digest: str,
    artifact_type: str,
    artifact: bytes,
    annotations: Mapping[str, str] = {},  # noqa: B006 - read only
) -> Attached:
    """Push ``artifact`` as a referrer of ``subject_digest`` (see the module docstring).

    Raises:
        FetchError: the subject is missing, or the registry refuses a push.
    """
    subject = subject_descriptor(client, repository, subject_digest)
    push_blob(client, repository, EMPTY_BLOB)
    layer = Descriptor(artifact_type, push_blob(client, repository, artifact), len(artifact))
    body = referrer_manifest(subject, artifact_type, layer, annotations)
    referrer = Descriptor(OCI_MANIFEST, digest_of(body), len(body), artifact_type, dict(annotations))
    headers = put_manifest(client, repository, referrer.digest, body, OCI_MANIFEST)
    if headers.get("oci-subject") == subject.digest:
        return Attached(referrer, subject, "referrers API")
    tag = fallback_tag(subject.digest)
    existing = _get_optional(client, repository, f"/v2/{repository}/manifests/{tag}", OCI_INDEX)
    put_manifest(client, repository, tag, merge_index(existing, referrer, tag), OCI_INDEX)
    return Attached(referrer, subject, f"tag {tag}")


def referrers(client: RegistryClient, repository: str, digest: str, artifact_type: str) -> list[Descriptor]:
    """The referrers of ``digest`` with ``artifact_type``: from the referrers API, else from the fallback tag.

    Raises:
        FetchError: the registry fails, or a listing is malformed.
    """
    if not DIGEST.match(digest):
        raise FetchError(f"unsupported or malformed digest {digest!r}")
    path = f"/v2/{repository}/referrers/{digest}?artifactType={quote(artifact_type, safe='')}"
    body = _get_optional(client, repository, path, OCI_INDEX)
    if body is None:
        tag = fallback_tag(digest)
        body = _get_optional(client, repository, f"/v2/{repository}/manifests/{tag}", OCI_INDEX)
        if body is None:
            return []
    try:
        listed = json.loads(body).get("manifests")
    except (ValueError, RecursionError, AttributeError) as exc:
        raise FetchError(f"the referrers listing of {digest} is not a JSON object") from exc
    found = []
    for entry in listed if isinstance(listed, list) else []:
        if not isinstance(entry, dict) or entry.get("artifactType") != artifact_type:
            continue  # the API may ignore the filter (OCI-Filters-Applied is optional)
        media, sha, size = entry.get("mediaType"), entry.get("digest"), entry.get("size")
        if media in MANIFEST_TYPES and isinstance(sha, str) and DIGEST.match(sha) and isinstance(size, int):
            found.append(Descriptor(str(media), sha, size, artifact_type))
    return found[-MAX_REFERRERS:]


def referrer_artifact(client: RegistryClient, repository: str, referrer: Descriptor, artifact_type: str) -> bytes:
    """The one layer of type ``artifact_type`` in the referrer manifest, read whole and checked.

    Raises:
        FetchError: the referrer is not such an artifact, the layer is oversized or does not match its digest.
    """
    manifest = client.manifest(repository, referrer.digest)
    layers = manifest.get("layers")
    chosen = [
        layer
        for layer in (layers if isinstance(layers, list) else [])
        if isinstance(layer, dict) and layer.get("mediaType") == artifact_type
    ]
    if len(chosen) != 1 or not DIGEST.match(str(chosen[0].get("digest", ""))):
        raise FetchError(f"referrer {referrer.digest} does not hold exactly one {artifact_type} layer")
    blob = str(chosen[0]["digest"])
    with client.request("GET", f"/v2/{repository}/blobs/{blob}", repository) as r:
        data = read_capped(r, MAX_ARTIFACT_BYTES, f"referrer layer {blob}")
    if digest_of(data) != blob:
        raise FetchError(f"referrer layer {blob} from {client.base} does not match its digest")
    return data


__all__ = [
    "Attached",
    "Descriptor",
    "attach",
    "fallback_tag",
    "merge_index",
    "open_client",
    "parse_pinned",
    "push_blob",
    "referrer_artifact",
    "referrer_manifest",
    "referrers",
]
