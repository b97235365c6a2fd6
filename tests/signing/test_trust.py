"""Policy-driven signature checks (weightguard.signing.trust and spec.signatures)."""

from __future__ import annotations

import logging

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError

from weightguard.policy.sections.signatures import SignaturesSpec
from weightguard.signing import codes
from weightguard.signing.interface import TrustMaterialError
from weightguard.signing.keys import public_pem
from weightguard.signing.model_signing import sign_model
from weightguard.signing.trust import check_signatures, options_for


def _spec(tmp_path, *keys, **extra) -> SignaturesSpec:
    signers = []
    for i, key in enumerate(keys):
        path = tmp_path / f"k{i}.pem"
        path.write_bytes(public_pem(key.public_key()))
        signers.append({"kind": "key", "public_key": path.name})
    return SignaturesSpec.model_validate({"required": True, "trusted_signers": signers, **extra})


def test_signature_from_the_second_trusted_key_satisfies_the_policy(tmp_path, model_dir, hasher, p256_key):
    (model_dir / "model.sig").write_bytes(
        sign_model(model_dir, p256_key, signature_path=model_dir / "model.sig", hasher=hasher)
    )
    spec = _spec(tmp_path, ec.generate_private_key(ec.SECP256R1()), p256_key)
    outcome = check_signatures(model_dir, spec, tmp_path, hasher=hasher)
    assert outcome.valid == 1
    assert not outcome.findings


def test_required_signature_absent_is_a_finding(tmp_path, model_dir, hasher, p256_key):
    outcome = check_signatures(model_dir, _spec(tmp_path, p256_key), tmp_path, hasher=hasher)
    assert [f.code for f in outcome.findings] == [codes.SIGNATURE_REQUIRED.code]


def test_signature_by_an_untrusted_key_does_not_count(tmp_path, model_dir, hasher, p256_key):
    sig = model_dir / "model.sig"
    sig.write_bytes(sign_model(model_dir, ec.generate_private_key(ec.SECP256R1()), signature_path=sig, hasher=hasher))
    outcome = check_signatures(model_dir, _spec(tmp_path, p256_key), tmp_path, hasher=hasher)
    assert outcome.valid == 0
    assert outcome.checks[0].failures[0].code == codes.UNTRUSTED_SIGNER.code


def test_signature_path_outside_the_model_is_refused(tmp_path, model_dir, hasher, p256_key):
    spec = _spec(tmp_path, p256_key, files=["../elsewhere.sig"])
    outcome = check_signatures(model_dir, spec, tmp_path, hasher=hasher)
    assert codes.UNSAFE_NAME.code in {f.code for f in outcome.findings}


def test_unreadable_trusted_key_is_a_trust_material_error(tmp_path, model_dir, hasher):
    spec = SignaturesSpec.model_validate({"trusted_signers": [{"kind": "key", "public_key": "missing.pem"}]})
    with pytest.raises(TrustMaterialError):
        check_signatures(model_dir, spec, tmp_path, hasher=hasher)


def test_permissive_switches_log_a_warning(caplog):
    spec = SignaturesSpec(unsafe_ignore_unsigned_files=True, allow_legacy_v01=True, allow_symlinks=True)
    with caplog.at_level(logging.WARNING):
        options = options_for(spec)
    assert options.ignore_unsigned_files
    assert options.allow_legacy
    assert options.allow_symlinks
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 3


@pytest.mark.parametrize(
    "body",
    [
        {"required": True},
        {"trusted_signers": [{"kind": "sigstore", "issuer": "https://i", "trusted_root": "r.json"}]},
        {"trusted_signers": [{"kind": "sigstore", "identity_regex": "(", "issuer": "https://i", "trusted_root": "r"}]},
        {"trusted_signers": [{"kind": "pgp", "key": "x"}]},
        {"unknown": 1},
    ],
    ids=["required-without-signers", "no-identity", "bad-regex", "unknown-kind", "unknown-key"],
)
def test_invalid_signature_sections_are_rejected(body):
    with pytest.raises(ValidationError):
        SignaturesSpec.model_validate(body)


def test_default_section_is_lenient_only_for_git_noise():
    spec = SignaturesSpec()
    assert not spec.required
    assert not spec.allow_legacy_v01
    assert not spec.unsafe_ignore_unsigned_files
    assert spec.allow_unsigned_files == [".git", ".gitattributes", ".github", ".gitignore"]
