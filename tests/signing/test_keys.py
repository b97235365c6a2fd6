"""Key loading, key hints and key-mode verification (weightguard.signing.keys)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from weightguard.signing.interface import TrustMaterialError
from weightguard.signing.keys import key_hint, load_private_key, load_public_key, sign_bytes, verify_bytes

OMS = Path(__file__).resolve().parents[1] / "data" / "interop" / "oms"  # copied from ../shared/interop/oms


@pytest.mark.skipif(not OMS.is_dir(), reason="OMS interop vectors not found")
def test_key_hint_is_sha256_of_the_spki_pem_text_as_model_signing_writes_it():
    key = load_public_key((OMS / "keys" / "p256-public.pem").read_bytes())
    bundle = json.loads((OMS / "sigs" / "key-p256.sig").read_text())
    assert key_hint(key) == bundle["verificationMaterial"]["publicKey"]["hint"]


@pytest.mark.parametrize(
    "key",
    [ec.generate_private_key(ec.SECP384R1()), ed25519.Ed25519PrivateKey.generate()],
    ids=["p384", "ed25519"],
)
def test_signatures_verify_and_a_changed_message_does_not(key):
    sig = sign_bytes(key, b"message")
    verify_bytes(key.public_key(), sig, b"message")
    from weightguard.signing.interface import SignatureRejected

    with pytest.raises(SignatureRejected):
        verify_bytes(key.public_key(), sig, b"messagf")


def test_unsupported_curve_and_rsa_keys_are_refused():
    k1 = ec.generate_private_key(ec.SECP256K1()).public_key()
    with pytest.raises(TrustMaterialError, match="curve"):
        load_public_key(k1.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    k2 = rsa.generate_private_key(65537, 2048).public_key()
    with pytest.raises(TrustMaterialError, match="unsupported"):
        load_public_key(k2.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def test_garbage_is_not_a_key():
    with pytest.raises(TrustMaterialError):
        load_public_key(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    with pytest.raises(TrustMaterialError):
        load_private_key(b"nope")


def test_encrypted_private_key_needs_its_password():
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")
    )
    with pytest.raises(TrustMaterialError):
        load_private_key(pem)
    assert isinstance(load_private_key(pem, b"pw"), ec.EllipticCurvePrivateKey)
