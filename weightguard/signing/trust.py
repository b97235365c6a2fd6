"""Turn ``spec.signatures`` into verifiers and check a model's signature files against them.

Each signature file is parsed once, then tried against the trusted signers of
the matching kind (key bundles: keys whose hint matches; certificate chains:
root CAs; Sigstore bundles: keyless identities) until one holds. The policy
decides how many valid signatures are needed. Not handled here: the
verification steps themselves (:mod:`weightguard.signing.model_signing`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from weightguard.findings import Finding
from weightguard.policy.sections.signatures import CertificateSigner, KeySigner, SignaturesSpec, SigstoreSigner
from weightguard.signing import codes
from weightguard.signing.bundle import MAX_BUNDLE_BYTES, ParsedBundle, parse_bundle
from weightguard.signing.certificates import certificate_verifier
from weightguard.signing.interface import SignatureRejected, SignatureVerifier, SignerKind, TrustMaterialError
from weightguard.signing.keys import KeyVerifier
from weightguard.signing.local import Hasher, default_hasher
from weightguard.signing.model_signing import SignatureCheck, VerifyOptions, verify_model_signature
from weightguard.signing.paths import escapes_root, relative_inside
from weightguard.signing.sigstore_keyless import SigstoreVerifier

log = logging.getLogger(__name__)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TrustMaterialError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc


def verifiers_for(spec: SignaturesSpec, base_dir: Path) -> tuple[SignatureVerifier, ...]:
    """Build one verifier per trusted signer; relative paths are taken from ``base_dir`` (the policy's folder).

    Raises:
        TrustMaterialError: a key or root CA file is unreadable or invalid.
    """
    out: list[SignatureVerifier] = []
    for s in spec.trusted_signers:
        if isinstance(s, KeySigner):
            out.append(KeyVerifier.from_pem(_read(base_dir / s.public_key, "public key")))
        elif isinstance(s, CertificateSigner):
            pem = _read(base_dir / s.root, "root CA")
            out.append(certificate_verifier(pem, s.identities, now=s.validate_at == "now"))
        elif isinstance(s, SigstoreSigner):
            out.append(SigstoreVerifier(base_dir / s.trusted_root, s.issuer, s.identity, s.identity_regex))
    return tuple(out)


def options_for(spec: SignaturesSpec) -> VerifyOptions:
    """Verification tolerances from the policy; permissive switches are logged as warnings."""
    if spec.unsafe_ignore_unsigned_files:
        log.warning("policy: unsafe_ignore_unsigned_files is on: files not covered by a signature are tolerated")
    if spec.allow_legacy_v01:
        log.warning("policy: allow_legacy_v01 is on: legacy Digests/v0.1 signatures are accepted")
    if spec.allow_symlinks:
        log.warning("policy: allow_symlinks is on: in-root symlinks are followed when the signature allowed them")
    return VerifyOptions(
        allow_legacy=spec.allow_legacy_v01,
        ignore_unsigned_files=spec.unsafe_ignore_unsigned_files,
        allow_signer_ignore_paths=spec.allow_signer_ignore_paths,
        allow_unsigned_files=tuple(spec.allow_unsigned_files),
        allow_symlinks=spec.allow_symlinks,
    )


def _candidates(bundle: ParsedBundle, verifiers: Sequence[SignatureVerifier]) -> list[SignatureVerifier]:
    if bundle.key_hint is not None:
        return [
            v for v in verifiers if isinstance(v, KeyVerifier) and (not bundle.key_hint or v.hint == bundle.key_hint)
        ]
    kind = SignerKind.SIGSTORE if bundle.tlog_entries else SignerKind.CERTIFICATE
    return [v for v in verifiers if v.kind is kind]


def check_with_any(
    root: Path,
    signature_path: Path,
    data: bytes,
    verifiers: Sequence[SignatureVerifier],
    options: VerifyOptions,
    *,
    hasher: Hasher = default_hasher,
) -> SignatureCheck:
    """Check one signature against every matching trusted signer; return the first that holds, else the last failure."""
    name = signature_path.name
    try:
        bundle = parse_bundle(data)
    except SignatureRejected as exc:
        return SignatureCheck(name, (exc.rule.at(name, exc.message),))
    candidates = _candidates(bundle, verifiers)
    if not candidates:
        return SignatureCheck(
            name, (codes.UNTRUSTED_SIGNER.at(name, "no trusted signer in the policy matches this signature"),)
        )
    last: SignatureCheck | None = None
    for verifier in candidates:
        last = verify_model_signature(root, data, verifier, options, signature_path=signature_path, hasher=hasher)
        if last.holds:
            return last
    assert last is not None  # candidates is not empty
    return last


@dataclass(frozen=True, slots=True)
class SignaturesOutcome:
    """Every signature file's check, and the policy's conclusion (``findings``)."""

    checks: tuple[SignatureCheck, ...]
    findings: tuple[Finding, ...]

    @property
    def valid(self) -> int:
        """How many signature files hold."""
        return sum(1 for c in self.checks if c.holds)


def check_signatures(
    root: Path, spec: SignaturesSpec, base_dir: Path, *, hasher: Hasher = default_hasher
) -> SignaturesOutcome:
    """Check the signature files listed in the policy (relative to the model directory).

    Raises:
        TrustMaterialError, MissingExtraError: trust material cannot be used.
        IntegrityError: hashing failed.
    """
    verifiers = verifiers_for(spec, base_dir)
    options = options_for(spec)
    checks: list[SignatureCheck] = []
    findings: list[Finding] = []
    for rel in spec.files:
        path = root / rel
        if relative_inside(root, path) is None or escapes_root(root, rel):
            findings.append(codes.UNSAFE_NAME.at(rel, "signature path is outside the model root"))
            continue
        if not path.is_file():
            continue
        if path.stat().st_size > MAX_BUNDLE_BYTES:
            findings.append(codes.MALFORMED_BUNDLE.at(rel, f"signature file is larger than {MAX_BUNDLE_BYTES} bytes"))
            continue
        checks.append(check_with_any(root, path, _read(path, "signature"), verifiers, options, hasher=hasher))
    valid = sum(1 for c in checks if c.holds)
    if spec.required and valid < spec.min_valid:
        findings.append(
            codes.SIGNATURE_REQUIRED.at(
                ".",
                f"{valid} valid signature(s) from trusted signers, the policy needs {spec.min_valid}",
                checked=len(checks),
            )
        )
    return SignaturesOutcome(tuple(checks), tuple(findings))
