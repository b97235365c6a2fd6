"""Sigstore keyless verification offline (weightguard.signing.sigstore_keyless).

No real keyless bundle can be made offline (Fulcio and Rekor are needed), so these tests cover
what can be tested honestly: a bundle whose certificate does not chain to the pinned trusted root
is refused with a clear SignatureRejected, bad trust material is a TrustMaterialError, and the
missing extra gives its install hint. A positive keyless verification is NOT exercised here.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from weightguard.errors import MissingExtraError
from weightguard.signing.bundle import parse_bundle
from weightguard.signing.interface import SignatureRejected, TrustMaterialError
from weightguard.signing.sigstore_keyless import SigstoreVerifier, load_trusted_root

pytest.importorskip("sigstore", reason="the [sigstore] extra is not installed")

NOW = dt.datetime.now(dt.UTC)


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _self_signed(cn: str, key: ec.EllipticCurvePrivateKey, *, ca: bool) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    b = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        b = b.add_extension(x509.SubjectAlternativeName([x509.RFC822Name("dev@example.test")]), critical=False)
    return b.sign(key, hashes.SHA256())


def _spki(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _trusted_root(path, ca_key, log_key):
    log = {
        "baseUrl": "https://log.invalid",
        "hashAlgorithm": "SHA2_256",
        "publicKey": {
            "rawBytes": _b64(_spki(log_key)),
            "keyDetails": "PKIX_ECDSA_P256_SHA_256",
            "validFor": {"start": "2020-01-01T00:00:00Z"},
        },
        "logId": {"keyId": _b64(hashlib.sha256(_spki(log_key)).digest())},
    }
    ca = _self_signed("pinned fulcio", ca_key, ca=True)
    doc = {
        "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
        "tlogs": [log],
        "certificateAuthorities": [
            {
                "subject": {"organization": "test", "commonName": "pinned fulcio"},
                "uri": "https://ca.invalid",
                "certChain": {"certificates": [{"rawBytes": _b64(ca.public_bytes(serialization.Encoding.DER))}]},
                "validFor": {"start": "2020-01-01T00:00:00Z"},
            }
        ],
        "ctlogs": [log],
        "timestampAuthorities": [],
    }
    path.write_text(json.dumps(doc))
    return path


def _keyless_bundle(signer_key, log_key) -> bytes:
    leaf = _self_signed("someone else's CA", signer_key, ca=False)
    payload = b'{"_type": "https://in-toto.io/Statement/v1"}'
    body = _b64(json.dumps({"kind": "dsse", "apiVersion": "0.0.1", "spec": {}}).encode())
    entry = {
        "logIndex": "1",
        "logId": {"keyId": _b64(hashlib.sha256(_spki(log_key)).digest())},
        "kindVersion": {"kind": "dsse", "version": "0.0.1"},
        "integratedTime": str(int(NOW.timestamp())),
        "inclusionPromise": {"signedEntryTimestamp": _b64(b"\x30\x00")},
        "inclusionProof": {
            "logIndex": "1",
            "rootHash": _b64(b"\x00" * 32),
            "treeSize": "2",
            "hashes": [_b64(b"\x01" * 32)],
            "checkpoint": {"envelope": "log.invalid - 1\n2\nAAAA\n\n— log.invalid AAAA\n"},
        },
        "canonicalizedBody": body,
    }
    return json.dumps(
        {
            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": {
                "certificate": {"rawBytes": _b64(leaf.public_bytes(serialization.Encoding.DER))},
                "tlogEntries": [entry],
            },
            "dsseEnvelope": {
                "payload": _b64(payload),
                "payloadType": "application/vnd.in-toto+json",
                "signatures": [{"sig": _b64(b"\x30\x00")}],
            },
        }
    ).encode()


def test_bundle_not_chaining_to_the_pinned_root_is_refused_clearly(tmp_path):
    log_key = ec.generate_private_key(ec.SECP256R1())
    root = _trusted_root(tmp_path / "trusted_root.json", ec.generate_private_key(ec.SECP256R1()), log_key)
    bundle = parse_bundle(_keyless_bundle(ec.generate_private_key(ec.SECP256R1()), log_key))
    verifier = SigstoreVerifier(root, "https://issuer.example.test", identity="dev@example.test")
    with pytest.raises(SignatureRejected) as info:
        verifier.verify(bundle)
    assert info.value.rule.code == "WG-SIG-005"
    assert "chain" in str(info.value)


def test_trusted_root_that_is_not_one_is_a_trust_material_error(tmp_path):
    bad = tmp_path / "root.json"
    bad.write_text('{"mediaType": "application/x-not-a-root"}')
    with pytest.raises(TrustMaterialError):
        load_trusted_root(bad)
    with pytest.raises(TrustMaterialError):
        load_trusted_root(tmp_path / "missing.json")


def test_key_bundle_is_not_a_keyless_bundle(tmp_path):
    from weightguard.signing.oms_sign import envelope_bundle

    log_key = ec.generate_private_key(ec.SECP256R1())
    root = _trusted_root(tmp_path / "trusted_root.json", ec.generate_private_key(ec.SECP256R1()), log_key)
    bundle = parse_bundle(envelope_bundle(b"{}", ec.generate_private_key(ec.SECP256R1())))
    with pytest.raises(SignatureRejected):
        SigstoreVerifier(root, "https://issuer", identity="x").verify(bundle)


def test_identity_and_regex_are_mutually_exclusive(tmp_path):
    with pytest.raises(TrustMaterialError):
        SigstoreVerifier(tmp_path, "https://issuer")
    with pytest.raises(TrustMaterialError):
        SigstoreVerifier(tmp_path, "https://issuer", identity="a", identity_regex="a")


def test_missing_sigstore_extra_names_the_extra(tmp_path, monkeypatch):
    # patching sys.modules is the only way to simulate an uninstalled optional package in-process
    monkeypatch.setitem(sys.modules, "sigstore", None)
    with pytest.raises(MissingExtraError, match=r"\[sigstore\]"):
        load_trusted_root(tmp_path / "trusted_root.json")
