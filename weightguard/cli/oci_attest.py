"""Approval attestations in OCI registries: ``verify --attach`` and ``attestation verify oci://…``.

The CLI side only orders the steps: registry work is in :mod:`weightguard.sources.oci_push`,
the checks in :mod:`weightguard.verdict.oci_attestation`. ``attestation verify`` lists
and checks the referrers (signature and manifest digest) before it pulls the model,
so an artifact without a usable attestation costs no download; only then are the files
pulled again and hashed, and the statement must name their OMS root digest too.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

from weightguard.errors import SignatureError, UsageError
from weightguard.policy.load import LoadedPolicy
from weightguard.report.model import Report
from weightguard.signing.interface import SignatureRejected
from weightguard.signing.keys import PublicKey, load_public_key
from weightguard.sources.oci_push import Attached, attach, open_client, parse_pinned, referrer_artifact, referrers
from weightguard.sources.oci_registry import parse_oci_uri
from weightguard.sources.oci_unpack import FetchError
from weightguard.verdict import codes
from weightguard.verdict.attestation import VerifiedAttestation
from weightguard.verdict.oci_attestation import (
    ATTESTATION_ANNOTATION,
    SIGSTORE_BUNDLE_TYPE,
    names_manifest,
    verify_oci_attestation,
)


@dataclass(frozen=True, slots=True)
class RegistryAccess:
    """How to reach the registry: the options ``verify`` and ``attestation verify`` share."""

    auth_file: Path | None = None
    insecure_registries: tuple[str, ...] = ()
    ca_bundle: Path | None = None


@dataclass(frozen=True, slots=True)
class RegistryAttestation:
    """An attestation found in the registry that holds for the artifact there now."""

    manifest_digest: str
    root_digest: str
    referrer: str
    checked: VerifiedAttestation


def check_attach_usage(target: str, attest_key: Path | None) -> None:
    """Refuse ``--attach`` where it cannot work, before any work is done.

    Raises:
        UsageError: the target is not in a registry, or nothing signs an attestation.
    """
    if not target.startswith("oci://"):
        raise UsageError("--attach needs an oci:// target: the attestation is pushed next to the model manifest")
    if attest_key is None:
        raise UsageError("--attach needs --attest KEY (or rollout.attestation.signing_key in the policy)")


def attach_approval(report: Report, access: RegistryAccess) -> Attached | None:
    """Push the report's approval attestation as a referrer of the judged manifest; None when it is not approved.

    Raises:
        FetchError: the registry refuses the push.
        SourceError: the attestation written by this run cannot be read back unchanged.
    """
    ref = report.attestation
    if report.verdict != "approved" or ref is None or report.subject is None:
        return None
    try:
        bundle = Path(ref.path).read_bytes()
    except OSError as exc:
        raise FetchError(f"cannot read back the attestation {ref.path}: {exc.strerror or exc}") from exc
    if hashlib.sha256(bundle).hexdigest() != ref.sha256:  # changed since this run wrote it: never push it
        raise FetchError(f"the attestation {ref.path} changed after it was written; nothing was attached")
    target = parse_pinned(report.subject.uri)  # the manifest actually judged (an index's model manifest)
    assert target.digest is not None  # parse_pinned refuses tags
    with open_client(
        target,
        auth_file=access.auth_file,
        insecure_registries=access.insecure_registries,
        ca_bundle=access.ca_bundle,
    ) as client:
        annotations = {ATTESTATION_ANNOTATION: "approval"}
        return attach(client, target.repository, target.digest, SIGSTORE_BUNDLE_TYPE, bundle, annotations)


def _load_key(path: Path) -> PublicKey:
    try:
        return load_public_key(path.read_bytes())
    except OSError as exc:
        raise UsageError(f"cannot read public key {path}: {exc.strerror or exc}") from exc


def _candidates(
    target: str, keys: list[Path], access: RegistryAccess
) -> tuple[str, list[tuple[str, bytes, PublicKey]]]:
    """The model manifest's digest, and the referrer bundles that name it with the trusted key that signed each."""
    ref = parse_pinned(target)
    assert ref.digest is not None
    public_keys = [_load_key(k) for k in keys]
    last: SignatureError = SignatureRejected(
        codes.ATTESTATION_NOT_FOUND, f"no approval attestation is attached to {target}"
    )
    found: list[tuple[str, bytes, PublicKey]] = []
    with open_client(
        ref, auth_file=access.auth_file, insecure_registries=access.insecure_registries, ca_bundle=access.ca_bundle
    ) as client:
        manifest_digest, _ = client.model_manifest(ref.repository, ref.digest)
        for listed in referrers(client, ref.repository, manifest_digest, SIGSTORE_BUNDLE_TYPE):
            try:
                bundle = referrer_artifact(client, ref.repository, listed, SIGSTORE_BUNDLE_TYPE)
            except FetchError as exc:  # one broken referrer does not hide the others
                last = SignatureRejected(codes.ATTESTATION_MALFORMED, f"referrer {listed.digest}: {exc.message}")
                continue
            for key in public_keys:
                try:
                    names_manifest(bundle, key, manifest_digest)
                except SignatureError as exc:
                    last = exc
                    continue
                found.append((listed.digest, bundle, key))
                break
    if not found:
        raise last
    return manifest_digest, found


def verify_in_registry(
    target: str, loaded: LoadedPolicy, keys: list[Path], access: RegistryAccess
) -> RegistryAttestation:
    """Find the attestations attached to ``target`` and check one against the artifact pulled and hashed now.

    An attestation that holds and says PASSED is preferred over one that holds and says FAILED.

    Raises:
        SignatureError: none holds (the last refusal says why).
        SourceError: the registry cannot be read or the model cannot be pulled.
    """
    from weightguard.pipeline import VerifyOptions, model_digest  # noqa: PLC0415 - heavy

    manifest_digest, found = _candidates(target, keys, access)
    with tempfile.TemporaryDirectory(prefix="weightguard-oci-") as work:
        options = VerifyOptions(
            registry_auth_file=access.auth_file,
            insecure_registries=access.insecure_registries,
            registry_ca_bundle=access.ca_bundle,
            oci_dir=Path(work) / "model",
        )
        resolved, root = model_digest(target, loaded, options=options)
    pulled = parse_oci_uri(resolved.uri).digest
    if pulled != manifest_digest:  # content-addressed, so only a registry that lies gets here
        raise FetchError(f"the registry served manifest {pulled} for {target}, not {manifest_digest}")
    holding: list[RegistryAttestation] = []
    last: SignatureError | None = None
    for referrer, bundle, key in found:
        try:
            checked = verify_oci_attestation(
                bundle, key, manifest_digest=manifest_digest, root_digest=root, policy_sha256=loaded.sha256
            )
        except SignatureError as exc:
            last = exc
            continue
        holding.append(RegistryAttestation(manifest_digest, root, referrer, checked))
    if not holding:
        assert last is not None  # found is never empty
        raise last
    return next((h for h in holding if h.checked.result == "PASSED"), holding[0])


__all__ = ["RegistryAccess", "RegistryAttestation", "attach_approval", "check_attach_usage", "verify_in_registry"]
