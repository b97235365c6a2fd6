"""Write OMS v1.0 signatures that stock ``model_signing verify`` accepts.

The bundle is a Sigstore bundle v0.3 with a DSSE envelope over an in-toto
Statement v1 (predicate ``https://model_signing/signature/v1.0``):
``files`` serialization with sha256, resources in model-signing's order
(path components compared as strings), the exact root digest, and the
effective ``ignore_paths`` (git paths by default, the caller's, and the
signature file itself when it lies inside the model). The signer key is
ECDSA P-256/P-384/P-521 (OMS-compatible) or Ed25519 (weightguard's own
signatures only: model-signing 1.1.1 cannot verify Ed25519). With a
certificate chain the bundle carries ``x509CertificateChain`` (leaf first),
otherwise the public key hint. Not handled here: writing the file (the CLI
does that atomically) or Sigstore keyless signing (needs an OIDC identity
and the network).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from weightguard.signing.bundle import (
    BUNDLE_V03,
    IN_TOTO_PAYLOAD_TYPE,
    OMS_V1_PREDICATE,
    STATEMENT_V1,
    pae,
    root_digest,
    statement_json,
)
from weightguard.signing.interface import SerializationMethod, SignedResource, SigningError
from weightguard.signing.keys import PrivateKey, key_hint, sign_bytes
from weightguard.signing.local import Hasher, default_hasher, hash_resources
from weightguard.signing.paths import DEFAULT_GIT_IGNORES, is_under, normalize_ignore, relative_inside, unsafe_reason
from weightguard.sources.local import LocalSource


def _ignore_list(
    root: Path, ignore_paths: Sequence[str], ignore_git_paths: bool, signature_path: Path | None
) -> list[str]:
    ignores = list(DEFAULT_GIT_IGNORES) if ignore_git_paths else []
    for raw in ignore_paths:
        clean = normalize_ignore(raw)
        if clean is None:
            raise SigningError(f"ignore path {raw!r} must be a relative path inside the model")
        ignores.append(clean)
    if signature_path is not None:
        own = relative_inside(root, signature_path)
        if own is not None:
            ignores.append(own)
    return list(dict.fromkeys(ignores))


def build_statement(
    root: Path,
    *,
    ignore_paths: Sequence[str] = (),
    ignore_git_paths: bool = True,
    signature_path: Path | None = None,
    hasher: Hasher = default_hasher,
) -> bytes:
    """Hash the model directory and return the OMS v1.0 statement JSON (the DSSE payload).

    Raises:
        SigningError: the target is not a directory, or holds entries OMS cannot sign
            (symlinks, special files, names weightguard would refuse when verifying).
    """
    if not root.is_dir():
        raise SigningError(f"{root} is not a directory; weightguard signs model directories")
    ignores = _ignore_list(root, ignore_paths, ignore_git_paths, signature_path)
    listing = LocalSource(root, allow_symlinks=False).collect()
    refused = [f for f in listing.findings if not is_under(f.path, ignores)]
    if refused:
        raise SigningError(
            "cannot sign: " + "; ".join(f"{f.path}: {f.message}" for f in refused[:5]),
            hint="replace symlinks and special files by regular files, or ignore them",
        )
    files = [f for f in listing.files if not is_under(f.relpath, ignores)]
    bad = [f.relpath for f in files if unsafe_reason(f.relpath) is not None]
    if bad:
        raise SigningError(f"cannot sign file names that verifiers must refuse: {bad[:5]!r}")
    if not files:
        raise SigningError(f"{root} holds no file to sign")
    digests = hash_resources(
        files, method=SerializationMethod.FILES, hash_type="sha256", shard_size=None, hasher=hasher
    )
    # model-signing orders resources by PurePosixPath (component-wise), not by plain string order
    resources = tuple(SignedResource(n, *digests[n]) for n in sorted(digests, key=lambda n: PurePosixPath(n).parts))
    name = root.name or root.resolve().name
    statement: dict[str, object] = {
        "_type": STATEMENT_V1,
        "subject": [{"name": name, "digest": {"sha256": root_digest(resources)}}],
        "predicateType": OMS_V1_PREDICATE,
        "predicate": {
            "serialization": {
                "method": "files",
                "hash_type": "sha256",
                "allow_symlinks": False,
                "ignore_paths": ignores,
            },
            "resources": [{"name": r.name, "algorithm": r.algorithm, "digest": r.digest} for r in resources],
        },
    }
    return statement_json(statement)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def envelope_bundle(
    payload: bytes, private_key: PrivateKey, certificate_chain: Sequence[x509.Certificate] = ()
) -> bytes:
    """Sign ``payload`` as an in-toto DSSE envelope and wrap it in a Sigstore bundle v0.3.

    Raises:
        SigningError: the leaf certificate does not hold the private key's public key.
    """
    public = private_key.public_key()
    material: dict[str, object]
    if certificate_chain:
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        der = serialization.Encoding.DER
        if certificate_chain[0].public_key().public_bytes(der, spki) != public.public_bytes(der, spki):
            raise SigningError("the signing certificate (first in the chain) does not match the private key")
        certs = [{"rawBytes": _b64(c.public_bytes(serialization.Encoding.DER))} for c in certificate_chain]
        material = {"x509CertificateChain": {"certificates": certs}, "tlogEntries": []}
    else:
        material = {"publicKey": {"hint": key_hint(public)}, "tlogEntries": []}
    signature = sign_bytes(private_key, pae(IN_TOTO_PAYLOAD_TYPE, payload))
    bundle = {
        "mediaType": BUNDLE_V03,
        "verificationMaterial": material,
        "dsseEnvelope": {
            "payload": _b64(payload),
            "payloadType": IN_TOTO_PAYLOAD_TYPE,
            "signatures": [{"sig": _b64(signature), "keyid": ""}],
        },
    }
    return json.dumps(bundle, separators=(",", ":")).encode()


def sign_model(
    root: Path,
    private_key: PrivateKey,
    certificate_chain: Sequence[x509.Certificate] | None = None,
    *,
    signature_path: Path | None = None,
    ignore_paths: Sequence[str] = (),
    ignore_git_paths: bool = True,
    hasher: Hasher = default_hasher,
) -> bytes:
    """Sign the model directory ``root``; return the bundle JSON bytes (OMS v1.0, files + sha256).

    Args:
        root: Model directory.
        private_key: ECDSA P-256/384/521 (OMS-compatible) or Ed25519 (weightguard only).
        certificate_chain: Signing certificate first, then intermediates; None for key mode.
        signature_path: Where the bundle will be written; ignored in the manifest when inside ``root``.
        ignore_paths: Extra paths (relative to ``root``) to leave out, recorded in the signature.
        ignore_git_paths: Leave out ``.git``, ``.gitattributes``, ``.github``, ``.gitignore``.
        hasher: Hashing function (the integrity stage's ``hash_files`` by default).

    Raises:
        SigningError: the model cannot be signed as it is.
        IntegrityError: hashing failed.
    """
    payload = build_statement(
        root, ignore_paths=ignore_paths, ignore_git_paths=ignore_git_paths, signature_path=signature_path, hasher=hasher
    )
    return envelope_bundle(payload, private_key, certificate_chain or ())
