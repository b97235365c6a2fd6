"""Public and private keys for OMS signatures, and the key-mode verifier.

ECDSA keys on P-256, P-384 and P-521 sign with the curve's own hash
(SHA-256/384/512), DER-encoded, as model-signing 1.1.1 does. Ed25519 is also
accepted for weightguard's own signatures; model-signing 1.1.1 cannot verify
those. The key hint that OMS bundles carry is the sha256 (hex) of the public
key's SubjectPublicKeyInfo PEM text. Not handled here: certificates
(:mod:`weightguard.signing.certificates`) and Sigstore keyless signatures.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from weightguard.signing import codes
from weightguard.signing.bundle import ParsedBundle, pae
from weightguard.signing.interface import SignatureRejected, SignerInfo, SignerKind, TrustMaterialError

PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

_CURVE_HASH: dict[str, type[hashes.HashAlgorithm]] = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}


def _check_curve(curve: ec.EllipticCurve) -> hashes.HashAlgorithm:
    hash_cls = _CURVE_HASH.get(curve.name)
    if hash_cls is None:
        raise TrustMaterialError(f"unsupported elliptic curve {curve.name}; use P-256, P-384 or P-521")
    return hash_cls()


def load_public_key(pem: bytes) -> PublicKey:
    """Load a PEM public key (SPKI): ECDSA P-256/384/521 or Ed25519.

    Raises:
        TrustMaterialError: not a PEM public key, or an unsupported key type or curve.
    """
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise TrustMaterialError(
            "not a PEM public key", hint="pass the signer's public key (-----BEGIN PUBLIC KEY-----)"
        ) from exc
    if isinstance(key, ec.EllipticCurvePublicKey):
        _check_curve(key.curve)
        return key
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    raise TrustMaterialError(f"unsupported public key type {type(key).__name__}; use ECDSA (P-256/384/521) or Ed25519")


def load_private_key(pem: bytes, password: bytes | None = None) -> PrivateKey:
    """Load a PEM private key (SEC1 or PKCS#8): ECDSA P-256/384/521 or Ed25519.

    Raises:
        TrustMaterialError: unreadable, wrong password, or unsupported type.
    """
    try:
        key = serialization.load_pem_private_key(pem, password=password)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise TrustMaterialError(f"cannot load the private key: {exc}") from exc
    if isinstance(key, ec.EllipticCurvePrivateKey):
        _check_curve(key.curve)
        return key
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    raise TrustMaterialError(f"unsupported private key type {type(key).__name__}; use ECDSA (P-256/384/521) or Ed25519")


def public_pem(key: PublicKey) -> bytes:
    """The key as SPKI PEM text (64-character lines, trailing newline)."""
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_hint(key: PublicKey) -> str:
    """OMS key hint: lowercase hex sha256 of the SPKI PEM text (not of the DER)."""
    return hashlib.sha256(public_pem(key)).hexdigest()


def sign_bytes(key: PrivateKey, data: bytes) -> bytes:
    """Sign ``data``: DER ECDSA with the curve's hash, or raw Ed25519."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    return key.sign(data, ec.ECDSA(_check_curve(key.curve)))


def verify_bytes(key: PublicKey, signature: bytes, data: bytes) -> None:
    """Verify ``signature`` over ``data`` with ``key``.

    Raises:
        SignatureRejected: the signature does not verify (``BAD_SIGNATURE``).
    """
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        else:
            key.verify(signature, data, ec.ECDSA(_check_curve(key.curve)))
    except InvalidSignature as exc:
        raise SignatureRejected(
            codes.BAD_SIGNATURE, "the DSSE signature does not verify with the signer's key"
        ) from exc


def verify_envelope(key: PublicKey, bundle: ParsedBundle) -> None:
    """Verify ``signatures[0]`` of the bundle's DSSE envelope over its PAE.

    Raises:
        SignatureRejected: no signature, or it does not verify.
    """
    if not bundle.signatures:
        raise SignatureRejected(codes.NO_SIGNATURE, "the DSSE envelope has no signature")
    # model-signing checks only signatures[0]; extra signatures are neither trusted nor required
    verify_bytes(key, bundle.signatures[0], pae(bundle.payload_type, bundle.payload))


@dataclass(frozen=True, slots=True)
class KeyVerifier:
    """Key mode: the bundle's ``publicKey.hint`` must name this key, and the signature must verify with it."""

    public_key: PublicKey

    @classmethod
    def from_pem(cls, pem: bytes) -> KeyVerifier:
        """Build from PEM public key bytes."""
        return cls(load_public_key(pem))

    @property
    def kind(self) -> SignerKind:
        """Key mode."""
        return SignerKind.KEY

    @property
    def hint(self) -> str:
        """The key hint of the trusted key."""
        return key_hint(self.public_key)

    def verify(self, bundle: ParsedBundle) -> None:
        """Verify the bundle against the trusted key.

        Raises:
            SignatureRejected: key material of another kind, a hint naming another key, or a bad signature.
        """
        if bundle.key_hint is None:
            raise SignatureRejected(
                codes.UNSUPPORTED_BUNDLE,
                "bundle carries certificate material, not a public key hint; verify it with a CA or Sigstore",
            )
        # An empty hint is the older format (model-signing only warns): the signature check below still binds the key.
        if bundle.key_hint and bundle.key_hint != self.hint:
            raise SignatureRejected(
                codes.UNTRUSTED_SIGNER,
                f"key mismatch: the bundle names key {bundle.key_hint[:16]}…, the trusted key is {self.hint[:16]}…",
            )
        verify_envelope(self.public_key, bundle)

    def signer(self, bundle: ParsedBundle) -> SignerInfo:
        """The trusted key, by its hint."""
        return SignerInfo(kind=SignerKind.KEY, key_hint=self.hint)
