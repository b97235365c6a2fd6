"""Approval attestations: a signed SLSA Verification Summary of a weightguard verdict.

The attestation is an in-toto Statement v1 in a DSSE envelope inside a
Sigstore bundle v0.3, the same container as OMS signatures, so one verifier
stack reads both. Its subjects are the model's OMS root digest (named after
the model), the OCI manifest's digest when the model was pulled from a registry,
plus one subject per weight file with its sha256; its predicate is
a SLSA Verification Summary (``https://slsa.dev/verification_summary/v1``)
with a ``weightguard`` section (checks run, verdict, probe scores). It is
kept outside the signed file set, so attestations accumulate without
invalidating the model's own signature.
Not handled here: computing digests (integrity) or deciding the verdict.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from weightguard.errors import SignatureError
from weightguard.signing.bundle import BUNDLE_V03, IN_TOTO_PAYLOAD_TYPE, STATEMENT_V1, pae, parse_bundle
from weightguard.signing.interface import SignatureRejected, TrustMaterialError
from weightguard.signing.keys import PrivateKey, PublicKey, key_hint, load_private_key, sign_bytes, verify_envelope
from weightguard.verdict import codes

VSA_PREDICATE = "https://slsa.dev/verification_summary/v1"
VERIFIER_ID = "https://github.com/weightguard/weightguard"


@dataclass(frozen=True, slots=True)
class AttestationInput:
    """Everything an approval attestation states."""

    model_name: str
    root_digest: str  # OMS root digest (sha256 hex) of the approved model
    files: Mapping[str, str]  # weight file relpath -> sha256 hex
    resource_uri: str
    policy_uri: str
    policy_sha256: str
    verdict: str  # approved | rejected | incomplete
    checks: Mapping[str, str]  # check name -> PASSED | FAILED | SKIPPED
    time_verified: dt.datetime
    version: str
    input_attestations: Sequence[tuple[str, str]] = ()  # (uri, sha256) of e.g. the OMS signature
    probe_scores: Mapping[str, str] | None = None
    policy_layers: Sequence[tuple[str, str]] = ()  # (origin, sha256) of each --policy layer when there are several


@dataclass(frozen=True, slots=True)
class VerifiedAttestation:
    """A checked attestation: what it says, and who signed it."""

    root_digest: str
    verdict: str
    result: str
    checks: Mapping[str, str]
    policy_sha256: str
    resource_uri: str
    signer_hint: str
    sha256: str  # of the bundle file


def load_attestation_key(path: Path) -> PrivateKey:
    """Read the PEM private key that signs attestations, before any work is done (issue 16).

    A key that cannot be used means the run cannot complete as asked: exit 2, never the
    "rejected" exit 1 that a late failure after an approval used to give.

    Raises:
        TrustMaterialError: the key file is missing, unreadable, or not a usable private key.
    """
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise TrustMaterialError(
            f"cannot read the attestation key {path}: {exc.strerror or exc}",
            hint="--attest (or the policy's rollout.attestation.signing_key) must name a readable PEM private key",
        ) from exc
    try:
        return load_private_key(pem)
    except TrustMaterialError as exc:
        raise TrustMaterialError(f"attestation key {path}: {exc.message}") from exc


def build_statement(data: AttestationInput) -> bytes:
    """Return the in-toto statement's JSON bytes."""
    subjects: list[dict[str, object]] = [{"name": data.model_name, "digest": {"sha256": data.root_digest}}]
    repository, _, manifest_hex = data.resource_uri.removeprefix("oci://").partition("@sha256:")
    if data.resource_uri.startswith("oci://") and manifest_hex:
        # The manifest is a subject too: admission controllers match an image's digest against the
        # subjects, and `attestation verify oci://` refuses a statement that does not name the manifest.
        subjects.append({"name": repository, "digest": {"sha256": manifest_hex}})
    subjects += [{"name": path, "digest": {"sha256": digest}} for path, digest in sorted(data.files.items())]
    extension: dict[str, object] = {
        "verdict": data.verdict,
        "checks": [{"name": k, "result": v} for k, v in sorted(data.checks.items())],
        "probes": dict(data.probe_scores or {}),
    }
    if len(data.policy_layers) > 1:
        # policy.digest covers the merged policy; the layers say which files it was composed from.
        extension["policyLayers"] = [{"uri": uri, "digest": {"sha256": sha}} for uri, sha in data.policy_layers]
    predicate: dict[str, object] = {
        "verifier": {"id": VERIFIER_ID, "version": {"weightguard": data.version}},
        "timeVerified": data.time_verified.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        "resourceUri": data.resource_uri,
        "policy": {"uri": data.policy_uri, "digest": {"sha256": data.policy_sha256}},
        "inputAttestations": [{"uri": uri, "digest": {"sha256": sha}} for uri, sha in data.input_attestations],
        "verificationResult": "PASSED" if data.verdict == "approved" else "FAILED",
        "verifiedLevels": [],
        "weightguard": extension,
    }
    statement = {"_type": STATEMENT_V1, "subject": subjects, "predicateType": VSA_PREDICATE, "predicate": predicate}
    return json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()


def sign_statement(statement: bytes, key: PrivateKey) -> bytes:
    """Wrap and sign ``statement`` as a Sigstore bundle v0.3 (key mode); return its JSON bytes."""
    signature = sign_bytes(key, pae(IN_TOTO_PAYLOAD_TYPE, statement))
    bundle = {
        "mediaType": BUNDLE_V03,
        "verificationMaterial": {"publicKey": {"hint": key_hint(key.public_key())}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": base64.b64encode(statement).decode(),
            "payloadType": IN_TOTO_PAYLOAD_TYPE,
            "signatures": [{"sig": base64.b64encode(signature).decode(), "keyid": ""}],
        },
    }
    return (json.dumps(bundle, indent=2) + "\n").encode()


def verify_attestation(
    data: bytes,
    key: PublicKey,
    *,
    expected_root_digest: str,
    expected_policy_sha256: str | None = None,
) -> VerifiedAttestation:
    """Check an attestation bundle: signer, subject digest, policy digest.

    Raises:
        SignatureRejected: the attestation does not hold (rule says which check).
    """
    bundle = parse_bundle(data)
    if bundle.key_hint is not None and bundle.key_hint != key_hint(key):
        raise SignatureRejected(codes.ATTESTATION_WRONG_SIGNER, "the attestation was not signed by the given key")
    verify_envelope(key, bundle)
    if bundle.payload_type != IN_TOTO_PAYLOAD_TYPE:
        raise SignatureRejected(codes.ATTESTATION_MALFORMED, f"payload type {bundle.payload_type!r} is not in-toto")
    try:
        statement = json.loads(bundle.payload)
        subject = statement["subject"][0]["digest"]["sha256"]
        predicate = statement["predicate"]
        kind = statement["predicateType"]
        wg = predicate["weightguard"]
        checks = {c["name"]: c["result"] for c in wg["checks"]}
        result = predicate["verificationResult"]
        policy_sha = predicate["policy"]["digest"]["sha256"]
        resource = predicate["resourceUri"]
        verdict = wg["verdict"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise SignatureRejected(
            codes.ATTESTATION_MALFORMED, f"the attestation statement is malformed: {exc!r}"
        ) from exc
    if statement.get("_type") != STATEMENT_V1 or kind != VSA_PREDICATE:
        raise SignatureRejected(codes.ATTESTATION_MALFORMED, f"not a weightguard verification summary ({kind!r})")
    if subject != expected_root_digest:
        raise SignatureRejected(
            codes.ATTESTATION_SUBJECT_MISMATCH,
            f"the attested model digest {subject} is not the model on disk now ({expected_root_digest})",
        )
    if expected_policy_sha256 is not None and policy_sha != expected_policy_sha256:
        raise SignatureRejected(
            codes.ATTESTATION_POLICY_MISMATCH, f"attested under policy {policy_sha}, expected {expected_policy_sha256}"
        )
    return VerifiedAttestation(
        root_digest=subject,
        verdict=str(verdict),
        result=str(result),
        checks={str(k): str(v) for k, v in checks.items()},
        policy_sha256=str(policy_sha),
        resource_uri=str(resource),
        signer_hint=key_hint(key),
        sha256=hashlib.sha256(data).hexdigest(),
    )


__all__ = [
    "AttestationInput",
    "SignatureError",
    "VerifiedAttestation",
    "build_statement",
    "sign_statement",
    "verify_attestation",
]
