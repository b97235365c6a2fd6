"""Sigstore keyless bundles, verified offline with the ``sigstore`` library (extra ``[sigstore]``).

The verifier is built from a trusted-root file that the policy pins (a
``TrustedRoot`` JSON, or a ``ClientTrustConfig`` JSON that embeds one); it is
never refreshed over TUF and no network call is made: sigstore-python's
``Verifier.verify_dsse`` checks the Fulcio chain at the verified log time,
the SCT, the Rekor inclusion proof and SET, the DSSE signature and the log
entry's consistency with the envelope, all from the bundle and the root.
The signer must match the policy: exact identity (SAN) or a regular
expression over it, plus the exact OIDC issuer. Not handled here: parsing
the in-toto statement (done by the caller on the verified payload), GitHub
workflow claims, or fetching trusted roots.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from weightguard.errors import MissingExtraError
from weightguard.signing import codes
from weightguard.signing.bundle import ParsedBundle
from weightguard.signing.interface import SignatureRejected, SignerInfo, SignerKind, TrustMaterialError

if TYPE_CHECKING:
    from cryptography.x509 import Certificate
    from sigstore.models import TrustedRoot

_CLIENT_TRUST_CONFIG = "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json"


def _require_sigstore() -> None:
    try:
        import sigstore  # noqa: F401, PLC0415 - optional extra, imported only when keyless verification is asked for
    except ImportError as exc:
        raise MissingExtraError("sigstore", "Sigstore keyless verification") from exc


def load_trusted_root(path: Path) -> TrustedRoot:
    """Load a pinned trusted root (``TrustedRoot`` or ``ClientTrustConfig`` JSON) without any network.

    Raises:
        MissingExtraError: the ``sigstore`` package is not installed.
        TrustMaterialError: the file is unreadable or not a trusted root.
    """
    _require_sigstore()
    from sigstore.errors import Error as SigstoreError  # noqa: PLC0415
    from sigstore.models import ClientTrustConfig, TrustedRoot  # noqa: PLC0415

    try:
        text = path.read_text(encoding="utf-8")
        media_type = json.loads(text).get("mediaType", "") if text.lstrip().startswith("{") else ""
        if media_type == _CLIENT_TRUST_CONFIG:
            return ClientTrustConfig.from_json(text).trusted_root
        return TrustedRoot.from_file(str(path))
    except OSError as exc:
        raise TrustMaterialError(f"cannot read the Sigstore trusted root {path}: {exc.strerror or exc}") from exc
    except (SigstoreError, ValueError, AttributeError) as exc:
        # betterproto/pydantic parse errors are ValueErrors; AttributeError: JSON that is not an object
        raise TrustMaterialError(
            f"{path} is not a Sigstore trusted root: {exc}",
            hint="pass a trusted_root.json (mediaType application/vnd.dev.sigstore.trustedroot+json;version=0.1)",
        ) from exc


def _sans(cert: Certificate) -> set[str]:
    from cryptography import x509  # noqa: PLC0415

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    values = set(san.get_values_for_type(x509.RFC822Name)) | set(
        san.get_values_for_type(x509.UniformResourceIdentifier)
    )
    # Sigstore's own OtherName (1.3.6.1.4.1.57264.1.7) carries e.g. usernames; its value is a DER UTF8String
    for other in san.get_values_for_type(x509.OtherName):
        if other.type_id.dotted_string == "1.3.6.1.4.1.57264.1.7" and len(other.value) > 2:  # noqa: PLR2004
            values.add(other.value[2:].decode("utf-8", "replace"))
    return values


@dataclass(frozen=True, slots=True)
class _RegexIdentity:
    """A sigstore ``VerificationPolicy``: issuer exact, identity by full regex match over the SANs."""

    pattern: str
    issuer: str

    def verify(self, cert: Certificate) -> None:
        from sigstore.errors import VerificationError  # noqa: PLC0415
        from sigstore.verify.policy import OIDCIssuer  # noqa: PLC0415

        OIDCIssuer(self.issuer).verify(cert)
        if not any(re.fullmatch(self.pattern, s) for s in _sans(cert)):
            raise VerificationError(f"certificate SANs {sorted(_sans(cert))} do not match /{self.pattern}/")


@dataclass(frozen=True, slots=True)
class SigstoreVerifier:
    """Keyless mode against a pinned trusted root and an identity policy.

    Attributes:
        trusted_root: Path of the trusted-root file (read when verifying).
        issuer: Expected OIDC issuer (exact).
        identity: Expected identity (exact SAN match), or
        identity_regex: a regular expression that must fully match one SAN.
    """

    trusted_root: Path
    issuer: str
    identity: str | None = None
    identity_regex: str | None = None

    def __post_init__(self) -> None:
        if (self.identity is None) == (self.identity_regex is None):
            raise TrustMaterialError("Sigstore verification needs exactly one of identity or identity_regex")
        if not self.issuer:
            raise TrustMaterialError("Sigstore verification needs the expected OIDC issuer")

    @property
    def kind(self) -> SignerKind:
        """Sigstore keyless mode."""
        return SignerKind.SIGSTORE

    def verify(self, bundle: ParsedBundle) -> None:
        """Verify the bundle offline; the verified payload must be the envelope's payload.

        Raises:
            MissingExtraError: ``sigstore`` is not installed.
            TrustMaterialError: the trusted root is unusable.
            SignatureRejected: the bundle fails any Sigstore check or the identity policy.
        """
        root = load_trusted_root(self.trusted_root)
        from sigstore.errors import Error as SigstoreError  # noqa: PLC0415
        from sigstore.models import Bundle  # noqa: PLC0415
        from sigstore.verify import Verifier  # noqa: PLC0415
        from sigstore.verify.policy import Identity, VerificationPolicy  # noqa: PLC0415

        if not bundle.certificates or not bundle.tlog_entries:
            raise SignatureRejected(
                codes.UNSUPPORTED_BUNDLE,
                "bundle is not a Sigstore keyless bundle (needs a certificate and a log entry)",
            )
        policy: VerificationPolicy
        if self.identity is not None:
            policy = Identity(identity=self.identity, issuer=self.issuer)
        else:
            policy = _RegexIdentity(str(self.identity_regex), self.issuer)
        try:
            parsed = Bundle.from_json(bundle.raw)
        except (SigstoreError, ValueError) as exc:
            raise SignatureRejected(codes.MALFORMED_BUNDLE, f"sigstore could not parse the bundle: {exc}") from exc
        try:
            verifier = Verifier(trusted_root=root)
            payload_type, payload = verifier.verify_dsse(parsed, policy)
        except SigstoreError as exc:
            raise SignatureRejected(codes.UNTRUSTED_SIGNER, f"Sigstore verification failed: {exc}") from exc
        except ValueError as exc:
            raise SignatureRejected(codes.BAD_SIGNATURE, f"Sigstore verification failed: {exc}") from exc
        if payload_type != bundle.payload_type or payload != bundle.payload:
            raise SignatureRejected(codes.BAD_SIGNATURE, "the verified payload differs from the envelope's payload")

    def signer(self, bundle: ParsedBundle) -> SignerInfo:
        """The identity and issuer the policy accepted."""
        identity = self.identity if self.identity is not None else f"/{self.identity_regex}/"
        if self.identity is None and bundle.certificates:
            from cryptography import x509  # noqa: PLC0415

            matched = sorted(
                s
                for s in _sans(x509.load_der_x509_certificate(bundle.certificates[0]))
                if re.fullmatch(str(self.identity_regex), s)
            )
            identity = ", ".join(matched) or identity
        return SignerInfo(kind=SignerKind.SIGSTORE, subject=identity, issuer=self.issuer, anchor=str(self.trusted_root))
