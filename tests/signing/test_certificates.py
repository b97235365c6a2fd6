"""Certificate-chain mode against explicit anchors (weightguard.signing.certificates)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from weightguard.signing import codes
from weightguard.signing.bundle import parse_bundle
from weightguard.signing.certificates import CertificateVerifier, ValidationTime
from weightguard.signing.interface import SignatureRejected, TrustMaterialError
from weightguard.signing.oms_sign import envelope_bundle

T0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject, key, issuer, issuer_key, *, ca, days=365, start=T0, usage=True, eku=True, san="bot@example.test"):
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    )
    if ca:
        b = b.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
    else:
        if usage:
            b = b.add_extension(
                x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
            )
        if eku:
            b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        if san:
            b = b.add_extension(x509.SubjectAlternativeName([x509.RFC822Name(san)]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki():
    root_key, inter_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _cert("root", root_key, "root", root_key, ca=True, days=3650, start=T0 - dt.timedelta(days=1))
    inter = _cert("inter", inter_key, "root", root_key, ca=True, days=3000, start=T0 - dt.timedelta(days=1))
    return {"root": root, "inter": inter, "inter_key": inter_key, "leaf_key": leaf_key, "root_key": root_key}


def _bundle(pki, **leaf_options):
    leaf = _cert("signer", pki["leaf_key"], "inter", pki["inter_key"], ca=False, **leaf_options)
    data = envelope_bundle(json.dumps({"x": 1}).encode(), pki["leaf_key"], [leaf, pki["inter"]])
    return parse_bundle(data)


def test_chain_to_the_explicit_root_verifies_and_names_the_signer(pki):
    verifier = CertificateVerifier((pki["root"],))
    bundle = _bundle(pki)
    verifier.verify(bundle)
    signer = verifier.signer(bundle)
    assert "CN=signer" in signer.subject
    assert "bot@example.test" in signer.subject
    assert signer.issuer == "CN=inter"


def test_unrelated_root_is_not_trusted(pki):
    other_key = ec.generate_private_key(ec.SECP256R1())
    other = _cert("other", other_key, "other", other_key, ca=True, start=T0 - dt.timedelta(days=1))
    with pytest.raises(SignatureRejected) as info:
        CertificateVerifier((other,)).verify(_bundle(pki))
    assert info.value.rule is codes.UNTRUSTED_SIGNER


def test_no_anchor_means_no_certificate_mode():
    with pytest.raises(TrustMaterialError):
        CertificateVerifier(())


def test_expired_leaf_verifies_at_signing_time_but_not_when_now_is_required(pki):
    bundle = _bundle(pki, days=1)
    CertificateVerifier((pki["root"],)).verify(bundle)
    late = CertificateVerifier(
        (pki["root"],), validation_time=ValidationTime.NOW, clock=lambda: T0 + dt.timedelta(days=30)
    )
    with pytest.raises(SignatureRejected) as info:
        late.verify(bundle)
    assert info.value.rule is codes.UNTRUSTED_SIGNER


def test_leaf_needs_digital_signature_or_code_signing(pki):
    CertificateVerifier((pki["root"],)).verify(_bundle(pki, usage=False))  # EKU codeSigning alone is enough
    CertificateVerifier((pki["root"],)).verify(_bundle(pki, eku=False))  # KeyUsage digitalSignature alone is enough
    with pytest.raises(SignatureRejected, match="digitalSignature"):
        CertificateVerifier((pki["root"],)).verify(_bundle(pki, usage=False, eku=False))


def test_identity_restriction_matches_the_san(pki):
    CertificateVerifier((pki["root"],), identities=("bot@example.test",)).verify(_bundle(pki))
    with pytest.raises(SignatureRejected, match="match none"):
        CertificateVerifier((pki["root"],), identities=("someone@else.test",)).verify(_bundle(pki))


def test_key_bundle_is_not_accepted_in_certificate_mode(pki):
    data = envelope_bundle(b"{}", pki["leaf_key"])
    with pytest.raises(SignatureRejected) as info:
        CertificateVerifier((pki["root"],)).verify(parse_bundle(data))
    assert info.value.rule is codes.UNSUPPORTED_BUNDLE


def test_leaf_signed_directly_by_a_non_ca_is_refused(pki):
    # the "intermediate" here is a leaf (basicConstraints ca=false): nothing may chain through it
    fake_key = ec.generate_private_key(ec.SECP256R1())
    fake_inter = _cert("inter", fake_key, "root", pki["root_key"], ca=False)
    leaf = _cert("signer", pki["leaf_key"], "inter", fake_key, ca=False)
    data = envelope_bundle(b"{}", pki["leaf_key"], [leaf, fake_inter])
    with pytest.raises(SignatureRejected):
        CertificateVerifier((pki["root"],)).verify(parse_bundle(data))


def test_leaf_without_san_is_accepted_when_no_identity_is_required(pki):
    CertificateVerifier((pki["root"],)).verify(_bundle(pki, san=None))
