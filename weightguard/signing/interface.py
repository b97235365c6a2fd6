"""The signing stage's records, protocol and errors.

A :class:`SignatureVerifier` checks the cryptography of one parsed bundle
(who signed the DSSE envelope, and is that signer trusted) and raises
:class:`SignatureRejected` otherwise. A :class:`SignedManifest` is what the
signed in-toto statement says about the model; a :class:`VerifiedSignature`
ties a trusted signer to the files it covers. Not handled here: parsing
bundles (:mod:`weightguard.signing.bundle`), hashing the local model or
comparing it with the manifest (:mod:`weightguard.signing.model_signing`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from weightguard.errors import EXIT_INCOMPLETE, SignatureError
from weightguard.findings import Rule

if TYPE_CHECKING:
    from weightguard.signing.bundle import ParsedBundle


class SignatureRejected(SignatureError):  # noqa: N818 - it is a verdict about content, not a crash
    """The signature or its content is not acceptable; ``rule`` says which check refused it."""

    def __init__(self, rule: Rule, message: str) -> None:
        super().__init__(message, hint=rule.help or None)
        self.rule = rule


class TrustMaterialError(SignatureError):
    """Trust input (public key, root CA, trusted root) is unreadable or unusable: nothing could be checked."""

    exit_code = EXIT_INCOMPLETE


class SigningError(SignatureError):
    """A model could not be signed as asked (symlinks, no files, key and certificate disagree)."""

    exit_code = EXIT_INCOMPLETE


class SerializationMethod(StrEnum):
    """How the signed manifest cut the model into resources."""

    FILES = "files"
    SHARDS = "shards"


class SignerKind(StrEnum):
    """Which kind of verification material vouched for a bundle."""

    KEY = "key"
    CERTIFICATE = "certificate"
    SIGSTORE = "sigstore"


@dataclass(frozen=True, slots=True)
class SignedResource:
    """One ``predicate.resources`` entry: a file (or shard) name, its algorithm and lowercase hex digest."""

    name: str
    algorithm: str
    digest: str


@dataclass(frozen=True, slots=True)
class SignedManifest:
    """What a signed statement claims about the model.

    Attributes:
        predicate_type: The statement's ``predicateType``.
        method: ``files`` or ``shards``.
        hash_type: ``sha256``, ``blake2b`` or ``blake3``.
        shard_size: Shard size in bytes (shards only).
        allow_symlinks: Whether the signer allowed symbolic links.
        ignore_paths: Paths the signer excluded (relative to the model root), as recorded.
        resources: The signed resources, in the listed order.
        root_digest: Subject sha256 (hex) over the resource digests.
        model_name: Subject name (informational only).
        legacy: True for the old ``Digests/v0.1`` predicate (one subject per file).
    """

    predicate_type: str
    method: SerializationMethod
    hash_type: str
    shard_size: int | None
    allow_symlinks: bool
    ignore_paths: tuple[str, ...]
    resources: tuple[SignedResource, ...]
    root_digest: str
    model_name: str
    legacy: bool = False


@dataclass(frozen=True, slots=True)
class SignerInfo:
    """Who signed, as the verifier established it.

    Attributes:
        kind: Key, certificate chain or Sigstore keyless.
        key_hint: sha256 hex of the signer's public key (SPKI PEM text), when known.
        subject: Certificate subject DN (certificate mode) or Sigstore identity (SAN).
        issuer: Certificate issuer DN (certificate mode) or OIDC issuer (Sigstore).
        anchor: The trust anchor the chain led to (certificate mode), or the trusted root file.
    """

    kind: SignerKind
    key_hint: str = ""
    subject: str = ""
    issuer: str = ""
    anchor: str = ""

    @property
    def description(self) -> str:
        """One line naming the signer for people."""
        if self.kind is SignerKind.KEY:
            return f"public key {self.key_hint[:16]}…"
        if self.kind is SignerKind.CERTIFICATE:
            return f"certificate {self.subject} (issuer {self.issuer})"
        return f"sigstore identity {self.subject} (issuer {self.issuer})"


@dataclass(frozen=True, slots=True)
class VerifiedSignature:
    """A trusted signer and the files its signature covers (and that matched on disk)."""

    signer: SignerInfo
    manifest: SignedManifest
    files: tuple[str, ...]


class SignatureVerifier(Protocol):
    """Checks the signature of one bundle against one piece of trust material."""

    @property
    def kind(self) -> SignerKind:
        """Which verification material this verifier accepts."""
        ...

    def verify(self, bundle: ParsedBundle) -> None:
        """Verify ``signatures[0]`` of the bundle's DSSE envelope.

        Raises:
            SignatureRejected: the signature is invalid or the signer is not trusted.
            TrustMaterialError: the trust material itself cannot be used.
        """
        ...

    def signer(self, bundle: ParsedBundle) -> SignerInfo:
        """Describe the signer of ``bundle`` (call after :meth:`verify` succeeded)."""
        ...


__all__ = [
    "SerializationMethod",
    "SignatureRejected",
    "SignatureVerifier",
    "SignedManifest",
    "SignedResource",
    "SignerInfo",
    "SignerKind",
    "SigningError",
    "TrustMaterialError",
    "VerifiedSignature",
]
