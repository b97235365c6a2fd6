"""Policy section ``spec.signatures``: required signatures, trusted signers and tolerances.

Trusted signers are of three kinds: a public key (``kind: key``), a root CA
for certificate chains (``kind: certificate``, optionally restricted to SAN
identities), or a Sigstore keyless identity (``kind: sigstore``: exact
``identity`` or ``identity_regex``, the OIDC ``issuer`` and a pinned
``trusted_root`` file). File paths are relative to the policy file. Every
permissive switch is spelled ``allow_*``/``unsafe_*``. Not handled here:
reading keys or verifying anything (:mod:`weightguard.signing`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, PositiveInt, field_validator, model_validator

from weightguard.policy.base import StrictModel


class KeySigner(StrictModel):
    """A signer known by its public key (ECDSA P-256/384/521 or Ed25519, PEM)."""

    kind: Literal["key"]
    public_key: Path
    name: str = ""


class CertificateSigner(StrictModel):
    """Signers whose certificate chains to this root CA (never to web-PKI roots)."""

    kind: Literal["certificate"]
    root: Path
    identities: list[str] = Field(
        default_factory=list, description="accepted SAN values (e-mail, URI, DNS); empty: any"
    )
    validate_at: Literal["signing", "now"] = Field(
        default="signing", description="check validity at the leaf's notBefore (model-signing) or now"
    )
    name: str = ""


class SigstoreSigner(StrictModel):
    """A Sigstore keyless identity, verified offline against a pinned trusted root."""

    kind: Literal["sigstore"]
    identity: str | None = None
    identity_regex: str | None = None
    issuer: Annotated[str, Field(min_length=1)]
    trusted_root: Path
    name: str = ""

    @field_validator("identity_regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"identity_regex does not compile: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _one_identity(self) -> SigstoreSigner:
        if (self.identity is None) == (self.identity_regex is None):
            raise ValueError("give exactly one of identity or identity_regex")
        return self


TrustedSigner = Annotated[KeySigner | CertificateSigner | SigstoreSigner, Field(discriminator="kind")]


class SignaturesSpec(StrictModel):
    """Which signatures a model needs and how strictly they are checked."""

    required: bool = False
    min_valid: PositiveInt = 1
    files: list[str] = Field(
        default_factory=lambda: ["model.sig"], description="signature files, relative to the model"
    )
    trusted_signers: list[TrustedSigner] = Field(default_factory=list)
    allow_signer_ignore_paths: bool = Field(
        default=True, description="honour ignore_paths recorded by the signer (OMS behaviour); they are always reported"
    )
    allow_legacy_v01: bool = Field(
        default=False, description="accept the old https://model_signing/Digests/v0.1 predicate"
    )
    allow_unsigned_files: list[str] = Field(
        default_factory=lambda: [".git", ".gitattributes", ".github", ".gitignore"],
        description="extra files tolerated next to a signature (paths or globs)",
    )
    unsafe_ignore_unsigned_files: bool = Field(
        default=False,
        description="tolerate every file the signature does not cover (model-signing --ignore_unsigned_files)",
    )
    allow_symlinks: bool = Field(default=False, description="follow in-root symlinks when the signature allowed them")

    @model_validator(mode="after")
    def _enough_signers(self) -> SignaturesSpec:
        if self.required and not self.trusted_signers:
            raise ValueError("signatures.required needs at least one entry in trusted_signers")
        return self
