"""Approval attestations found in an OCI registry: which ones name this manifest, and do they hold.

An attestation pushed by ``verify --attach`` is a referrer of the model manifest
(see :mod:`weightguard.sources.oci_push`). The referrer's ``subject`` field and
its place in a listing are not evidence: anyone who may push can attach an old,
validly signed bundle to a new manifest. What binds an attestation to the
artifact is its signed in-toto statement, which must name both the manifest
digest and the OMS root digest of the files the manifest holds *now*.

The check is split in two so that a registry full of unrelated referrers costs
no model download: :func:`names_manifest` (signature, and a subject equal to the
manifest digest) runs on each bundle before the pull, and
:func:`verify_oci_attestation` (the full :func:`verify_attestation`, root digest
and policy included) after the files were pulled and hashed again.
Bytes and keys in, records out: no I/O here.
"""

from __future__ import annotations

import json

from weightguard.signing.bundle import parse_bundle
from weightguard.signing.interface import SignatureRejected
from weightguard.signing.keys import PublicKey, key_hint, verify_envelope
from weightguard.verdict import codes
from weightguard.verdict.attestation import VerifiedAttestation, verify_attestation

SIGSTORE_BUNDLE_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
ATTESTATION_ANNOTATION = "dev.weightguard.attestation"  # "approval": lets a listing say what it holds


def _subject_digests(payload: bytes) -> set[str]:
    try:
        statement = json.loads(payload)
        subjects = statement["subject"]
        return {"sha256:" + str(s["digest"]["sha256"]) for s in subjects if isinstance(s, dict)}
    except (ValueError, RecursionError, KeyError, TypeError) as exc:
        raise SignatureRejected(
            codes.ATTESTATION_MALFORMED, f"the attestation statement is malformed: {exc!r}"
        ) from exc


def names_manifest(data: bytes, key: PublicKey, manifest_digest: str) -> None:
    """Check that ``data`` is signed by ``key`` and that its statement names ``manifest_digest``.

    Raises:
        SignatureRejected: another signer, a bad signature, or a statement about another manifest.
    """
    bundle = parse_bundle(data)
    if bundle.key_hint is not None and bundle.key_hint != key_hint(key):
        raise SignatureRejected(codes.ATTESTATION_WRONG_SIGNER, "the attestation was not signed by the given key")
    verify_envelope(key, bundle)
    if manifest_digest not in _subject_digests(bundle.payload):
        raise SignatureRejected(
            codes.ATTESTATION_SUBJECT_MISMATCH,
            f"the attestation does not name the manifest {manifest_digest}: it was made for another artifact",
        )


def verify_oci_attestation(
    data: bytes,
    key: PublicKey,
    *,
    manifest_digest: str,
    root_digest: str,
    policy_sha256: str | None = None,
) -> VerifiedAttestation:
    """Check an attestation against the artifact in the registry now: signer, manifest digest, OMS root digest, policy.

    Raises:
        SignatureRejected: the attestation does not hold (its rule says which check).
    """
    names_manifest(data, key, manifest_digest)
    return verify_attestation(data, key, expected_root_digest=root_digest, expected_policy_sha256=policy_sha256)


__all__ = ["ATTESTATION_ANNOTATION", "SIGSTORE_BUNDLE_TYPE", "names_manifest", "verify_oci_attestation"]
