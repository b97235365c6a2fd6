"""Certificate-chain mode: the bundle's leaf certificate must chain to an explicit trust anchor.

The leaf and the intermediates come from the bundle
(``x509CertificateChain``, leaf first); the trust anchors come only from the
caller (a root CA file named in the policy or on the command line). There is
no fallback to operating-system or web-PKI roots, unlike model-signing 1.1.1
(which uses certifi when no chain is given). Path building and signature
checks along the chain use ``cryptography.x509.verification``: CA
certificates get the RFC 5280 / CA/B defaults (basicConstraints, keyUsage
keyCertSign, ...); the leaf gets no TLS-specific extension rules (that
builder's client defaults are for TLS), and instead must carry KeyUsage
digitalSignature or EKU codeSigning, the same rule model-signing applies.
Validity is checked at the leaf's notBefore by default (what model-signing
does, since OMS bundles carry no trusted timestamp) or at "now" when the
policy asks. Not handled here: revocation (no CRL/OCSP is fetched, ever).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder, Store, VerificationError

from weightguard.signing import codes
from weightguard.signing.bundle import ParsedBundle
from weightguard.signing.interface import SignatureRejected, SignerInfo, SignerKind, TrustMaterialError
from weightguard.signing.keys import PublicKey, verify_envelope

_MAX_CHAIN_DEPTH = 8


class ValidationTime(StrEnum):
    """When the chain's validity periods are checked."""

    SIGNING = "signing"  # the leaf's notBefore: an expired certificate still verifies an old signature
    NOW = "now"  # the injected clock: refuses expired (and not-yet-valid) certificates


def load_certificates(pem: bytes) -> list[x509.Certificate]:
    """Load one or more PEM certificates (a root CA file may hold several anchors).

    Raises:
        TrustMaterialError: no certificate could be read.
    """
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise TrustMaterialError(
            "not a PEM certificate file", hint="pass the root CA as PEM (-----BEGIN CERTIFICATE-----)"
        ) from exc
    return certs


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def san_values(cert: x509.Certificate) -> tuple[str, ...]:
    """E-mail, URI and DNS names of the certificate's subjectAltName, if any."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    names: list[str] = []
    for kind in (x509.RFC822Name, x509.UniformResourceIdentifier, x509.DNSName):
        names.extend(str(v) for v in san.get_values_for_type(kind))
    return tuple(names)


def _usable_for_signing(cert: x509.Certificate) -> bool:
    try:
        if cert.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature:
            return True
    except x509.ExtensionNotFound:
        pass
    try:
        return ExtendedKeyUsageOID.CODE_SIGNING in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False


@dataclass(frozen=True, slots=True)
class CertificateVerifier:
    """Certificate mode against explicit anchors, optionally restricted to SAN identities.

    Attributes:
        anchors: Trust anchors (root CAs). Required and never empty.
        identities: If set, the leaf's SAN (e-mail, URI or DNS) must contain one of them.
        validation_time: Check validity at the leaf's notBefore (default) or now.
        clock: Returns the current UTC time (injected for tests).
    """

    anchors: tuple[x509.Certificate, ...]
    identities: tuple[str, ...] = ()
    validation_time: ValidationTime = ValidationTime.SIGNING
    clock: Callable[[], dt.datetime] = field(default=_utcnow)

    def __post_init__(self) -> None:
        if not self.anchors:
            raise TrustMaterialError("certificate mode needs at least one explicit trust anchor")

    @property
    def kind(self) -> SignerKind:
        """Certificate mode."""
        return SignerKind.CERTIFICATE

    def _chain(self, bundle: ParsedBundle) -> list[x509.Certificate]:
        if bundle.key_hint is not None or not bundle.certificates:
            raise SignatureRejected(
                codes.UNSUPPORTED_BUNDLE, "bundle carries no certificate chain; verify it with a public key"
            )
        if bundle.tlog_entries:
            raise SignatureRejected(
                codes.UNSUPPORTED_BUNDLE, "bundle is a Sigstore keyless bundle; verify it with --identity/--issuer"
            )
        try:
            return [x509.load_der_x509_certificate(der) for der in bundle.certificates]
        except ValueError as exc:
            raise SignatureRejected(codes.MALFORMED_BUNDLE, "a bundle certificate is not valid DER") from exc

    def verify(self, bundle: ParsedBundle) -> None:
        """Build the chain to an anchor, check the leaf's usage and identity, then the DSSE signature.

        Raises:
            SignatureRejected: no path to an anchor, wrong usage or identity, or a bad signature.
        """
        leaf, *intermediates = self._chain(bundle)
        when = leaf.not_valid_before_utc if self.validation_time is ValidationTime.SIGNING else self.clock()
        verifier = (
            PolicyBuilder()
            .store(Store(list(self.anchors)))
            .time(when)
            .max_chain_depth(_MAX_CHAIN_DEPTH)
            .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ExtensionPolicy.permit_all())
            .build_client_verifier()
        )
        try:
            verifier.verify(leaf, intermediates)
        except VerificationError as exc:
            raise SignatureRejected(
                codes.UNTRUSTED_SIGNER,
                f"certificate chain does not lead to a trusted root at {when:%Y-%m-%dT%H:%M:%SZ}: {exc}",
            ) from exc
        if not _usable_for_signing(leaf):
            raise SignatureRejected(
                codes.UNTRUSTED_SIGNER, "signing certificate has neither KeyUsage digitalSignature nor EKU codeSigning"
            )
        if self.identities and not set(self.identities) & set(san_values(leaf)):
            raise SignatureRejected(
                codes.UNTRUSTED_SIGNER,
                f"certificate identities {list(san_values(leaf))} match none of {list(self.identities)}",
            )
        key = leaf.public_key()
        if not isinstance(key, PublicKey):
            raise SignatureRejected(codes.UNSUPPORTED_BUNDLE, f"unsupported certificate key type {type(key).__name__}")
        verify_envelope(key, bundle)

    def signer(self, bundle: ParsedBundle) -> SignerInfo:
        """Subject and issuer of the leaf certificate."""
        leaf = self._chain(bundle)[0]
        names = san_values(leaf)
        subject = leaf.subject.rfc4514_string() + (f" (SAN {', '.join(names)})" if names else "")
        return SignerInfo(
            kind=SignerKind.CERTIFICATE,
            subject=subject,
            issuer=leaf.issuer.rfc4514_string(),
            anchor=", ".join(a.subject.rfc4514_string() for a in self.anchors),
        )


def certificate_verifier(
    anchors_pem: bytes, identities: Sequence[str] = (), *, now: bool = False
) -> CertificateVerifier:
    """Convenience constructor used by the CLI and the policy wiring."""
    return CertificateVerifier(
        tuple(load_certificates(anchors_pem)),
        identities=tuple(identities),
        validation_time=ValidationTime.NOW if now else ValidationTime.SIGNING,
    )
