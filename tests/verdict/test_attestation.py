"""Approval attestations: signed VSA statements that bind a verdict to the exact model digest."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from weightguard.signing.interface import SignatureRejected
from weightguard.verdict.attestation import (
    VSA_PREDICATE,
    AttestationInput,
    build_statement,
    sign_statement,
    verify_attestation,
)

ROOT = "ab" * 32
POLICY = "ef" * 32


def make_input(verdict: str = "approved") -> AttestationInput:
    return AttestationInput(
        model_name="tiny-bert",
        root_digest=ROOT,
        files={"model.safetensors": "cd" * 32},
        resource_uri="hf://acme/tiny-bert@" + "1" * 40,
        policy_uri="policies/default.yaml",
        policy_sha256=POLICY,
        verdict=verdict,
        checks={"scan": "PASSED", "integrity": "PASSED", "probes": "SKIPPED"},
        time_verified=dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC),
        version="0.1.0",
        input_attestations=(("model.sig", "12" * 32),),
    )


@pytest.fixture(params=["p256", "ed25519"])
def key(request):
    return ec.generate_private_key(ec.SECP256R1()) if request.param == "p256" else ed25519.Ed25519PrivateKey.generate()


def test_statement_is_a_slsa_verification_summary_about_the_model_digest() -> None:
    statement = json.loads(build_statement(make_input()))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == VSA_PREDICATE
    assert statement["subject"][0] == {"name": "tiny-bert", "digest": {"sha256": ROOT}}
    assert statement["subject"][1]["name"] == "model.safetensors"
    predicate = statement["predicate"]
    assert predicate["verificationResult"] == "PASSED"
    assert predicate["policy"]["digest"]["sha256"] == POLICY
    assert predicate["timeVerified"] == "2026-11-24T12:00:00Z"
    assert predicate["inputAttestations"] == [{"uri": "model.sig", "digest": {"sha256": "12" * 32}}]


def test_a_rejected_run_attests_failed() -> None:
    assert json.loads(build_statement(make_input("rejected")))["predicate"]["verificationResult"] == "FAILED"


def test_signed_attestation_verifies_with_its_key(key) -> None:
    bundle = sign_statement(build_statement(make_input()), key)
    checked = verify_attestation(bundle, key.public_key(), expected_root_digest=ROOT, expected_policy_sha256=POLICY)
    assert (checked.verdict, checked.result, checked.checks["scan"]) == ("approved", "PASSED", "PASSED")
    assert json.loads(bundle)["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"


def test_another_key_is_refused(key) -> None:
    bundle = sign_statement(build_statement(make_input()), key)
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(SignatureRejected) as err:
        verify_attestation(bundle, other, expected_root_digest=ROOT)
    assert err.value.rule.code == "WG-ATT-002"


def test_a_changed_model_is_refused(key) -> None:
    bundle = sign_statement(build_statement(make_input()), key)
    with pytest.raises(SignatureRejected) as err:
        verify_attestation(bundle, key.public_key(), expected_root_digest="00" * 32)
    assert err.value.rule.code == "WG-ATT-003"


def test_another_policy_is_refused(key) -> None:
    bundle = sign_statement(build_statement(make_input()), key)
    with pytest.raises(SignatureRejected) as err:
        verify_attestation(bundle, key.public_key(), expected_root_digest=ROOT, expected_policy_sha256="00" * 32)
    assert err.value.rule.code == "WG-ATT-004"


def test_an_edited_payload_fails_the_signature(key) -> None:
    bundle = json.loads(sign_statement(build_statement(make_input("rejected")), key))
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    statement["predicate"]["verificationResult"] = "PASSED"
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    with pytest.raises(SignatureRejected):
        verify_attestation(json.dumps(bundle).encode(), key.public_key(), expected_root_digest=ROOT)


@pytest.mark.parametrize("garbage", [b"", b"{}", b"not json", b'{"mediaType": 5}'])
def test_garbage_is_a_clear_rejection_not_a_crash(garbage: bytes, key) -> None:
    with pytest.raises(SignatureRejected):
        verify_attestation(garbage, key.public_key(), expected_root_digest=ROOT)
