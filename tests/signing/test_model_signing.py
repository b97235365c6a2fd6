"""Round trips and hostile cases for OMS verification and signing (weightguard.signing.model_signing)."""

from __future__ import annotations

import base64
import json
import os

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from weightguard.signing import codes
from weightguard.signing.bundle import IN_TOTO_PAYLOAD_TYPE, statement_json
from weightguard.signing.interface import SigningError
from weightguard.signing.keys import KeyVerifier, public_pem
from weightguard.signing.model_signing import VerifyOptions, sign_model, verify_model_signature
from weightguard.signing.oms_sign import build_statement, envelope_bundle


def _verify(root, data, key, options=None, signature_path=None, hasher=None):
    verifier = KeyVerifier.from_pem(public_pem(key.public_key()))
    options = options or VerifyOptions()
    return verify_model_signature(root, data, verifier, options, signature_path=signature_path, hasher=hasher)


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1()], ids=["p256", "p384", "p521"])
def test_signature_made_with_a_generated_ecdsa_key_holds(model_dir, hasher, curve):
    key = ec.generate_private_key(curve)
    data = sign_model(model_dir, key, hasher=hasher)
    check = _verify(model_dir, data, key, hasher=hasher)
    assert check.holds, check.failures
    assert check.verified is not None
    assert set(check.verified.files) == {
        "1_Pooling/config.json",
        "README.md",
        "config.json",
        "empty.txt",
        "model.safetensors",
    }


def test_ed25519_signature_round_trips(model_dir, hasher):
    key = ed25519.Ed25519PrivateKey.generate()
    check = _verify(model_dir, sign_model(model_dir, key, hasher=hasher), key, hasher=hasher)
    assert check.holds


def test_flipped_byte_after_signing_is_a_digest_mismatch(model_dir, hasher, p256_key):
    data = sign_model(model_dir, p256_key, hasher=hasher)
    blob = bytearray((model_dir / "model.safetensors").read_bytes())
    blob[-1] ^= 1
    (model_dir / "model.safetensors").write_bytes(bytes(blob))
    check = _verify(model_dir, data, p256_key, hasher=hasher)
    assert not check.holds
    assert [(f.code, f.path) for f in check.failures] == [(codes.DIGEST_MISMATCH.code, "model.safetensors")]
    assert check.diff is not None
    assert check.diff.mismatched == ("model.safetensors",)


def test_signature_from_another_key_is_untrusted(model_dir, hasher, p256_key):
    data = sign_model(model_dir, p256_key, hasher=hasher)
    check = _verify(model_dir, data, ec.generate_private_key(ec.SECP256R1()), hasher=hasher)
    assert [f.code for f in check.failures] == [codes.UNTRUSTED_SIGNER.code]


def test_resources_follow_component_wise_order_and_git_paths_are_ignored(model_dir, hasher):
    (model_dir / "w").mkdir()
    (model_dir / "w" / "part.bin").write_bytes(b"p")
    (model_dir / "w-2.bin").write_bytes(b"2")
    (model_dir / "w.json").write_text("{}")
    statement = json.loads(build_statement(model_dir, hasher=hasher))
    names = [r["name"] for r in statement["predicate"]["resources"]]
    assert names.index("w/part.bin") < names.index("w-2.bin") < names.index("w.json")
    assert ".gitattributes" not in names
    assert statement["predicate"]["serialization"]["ignore_paths"][:4] == [
        ".git",
        ".gitattributes",
        ".github",
        ".gitignore",
    ]


def test_signature_file_inside_the_model_is_recorded_and_skipped(model_dir, hasher, p256_key):
    sig = model_dir / "model.sig"
    data = sign_model(model_dir, p256_key, signature_path=sig, hasher=hasher)
    sig.write_bytes(data)
    payload = json.loads(base64.b64decode(json.loads(data)["dsseEnvelope"]["payload"]))
    assert "model.sig" in payload["predicate"]["serialization"]["ignore_paths"]
    assert _verify(model_dir, data, p256_key, signature_path=sig, hasher=hasher).holds


def test_refusing_signer_ignore_paths_turns_an_ignored_file_into_an_unsigned_one(model_dir, hasher, p256_key):
    data = sign_model(model_dir, p256_key, ignore_paths=["README.md"], hasher=hasher)
    (model_dir / "README.md").write_text("changed\n")
    assert _verify(model_dir, data, p256_key, hasher=hasher).holds
    strict = VerifyOptions(allow_signer_ignore_paths=False, allow_unsigned_files=(".gitattributes",))
    check = _verify(model_dir, data, p256_key, strict, hasher=hasher)
    assert [(f.code, f.path) for f in check.failures] == [(codes.UNSIGNED_FILE.code, "README.md")]
    assert any(f.code == codes.SIGNER_IGNORES_REFUSED.code for f in check.findings)


def test_policy_tolerated_extra_is_a_note_and_others_still_fail(model_dir, hasher, p256_key):
    data = sign_model(model_dir, p256_key, hasher=hasher)
    (model_dir / "NOTES.md").write_text("n")
    (model_dir / "evil.py").write_text("import os")
    check = _verify(model_dir, data, p256_key, VerifyOptions(allow_unsigned_files=("*.md",)), hasher=hasher)
    assert [f.path for f in check.failures] == ["evil.py"]
    assert check.diff is not None
    assert check.diff.tolerated == ("NOTES.md",)


def test_symlink_pointing_outside_is_never_followed_even_with_ignore_unsigned(tmp_path, model_dir, hasher, p256_key):
    data = sign_model(model_dir, p256_key, hasher=hasher)
    outside = tmp_path / "secret.txt"
    outside.write_text("outside")
    (model_dir / "config.json").unlink()
    (model_dir / "config.json").symlink_to(outside)
    options = VerifyOptions(ignore_unsigned_files=True, allow_symlinks=True)
    check = _verify(model_dir, data, p256_key, options, hasher=hasher)
    assert not check.holds
    assert codes.UNSAFE_NAME.code in {f.code for f in check.failures}


def _craft(key, statement: dict[str, object], payload_type: str = IN_TOTO_PAYLOAD_TYPE) -> bytes:
    bundle = json.loads(envelope_bundle(statement_json(statement), key))
    if payload_type != IN_TOTO_PAYLOAD_TYPE:
        from weightguard.signing.bundle import pae
        from weightguard.signing.keys import sign_bytes

        payload = base64.b64decode(bundle["dsseEnvelope"]["payload"])
        bundle["dsseEnvelope"]["payloadType"] = payload_type
        bundle["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(
            sign_bytes(key, pae(payload_type, payload))
        ).decode()
    return json.dumps(bundle).encode()


def _statement(model_dir, hasher) -> dict[str, object]:
    return json.loads(build_statement(model_dir, hasher=hasher))


@pytest.mark.parametrize("bad_name", ["/etc/passwd", "a/../../x", "a\x00b", "a//b", "./config.json", "a\\..\\x", ""])
def test_validly_signed_unsafe_resource_names_fail_in_every_mode(model_dir, hasher, p256_key, bad_name):
    from weightguard.signing.bundle import root_digest
    from weightguard.signing.interface import SignedResource

    st = _statement(model_dir, hasher)
    resources = st["predicate"]["resources"] + [{"name": bad_name, "algorithm": "sha256", "digest": "00" * 32}]
    st["predicate"]["resources"] = resources
    st["subject"][0]["digest"]["sha256"] = root_digest(tuple(SignedResource(**r) for r in resources))
    data = _craft(p256_key, st)
    for options in (VerifyOptions(), VerifyOptions(ignore_unsigned_files=True)):
        check = _verify(model_dir, data, p256_key, options, hasher=hasher)
        assert codes.UNSAFE_NAME.code in {f.code for f in check.failures}
        assert not check.holds


def test_wrong_payload_type_is_a_finding(model_dir, hasher, p256_key):
    data = _craft(p256_key, _statement(model_dir, hasher), payload_type="application/json")
    check = _verify(model_dir, data, p256_key, hasher=hasher)
    assert [f.code for f in check.failures] == [codes.WRONG_PAYLOAD_TYPE.code]


def test_bundle_with_zero_signatures_fails(model_dir, hasher, p256_key):
    bundle = json.loads(sign_model(model_dir, p256_key, hasher=hasher))
    bundle["dsseEnvelope"]["signatures"] = []
    check = _verify(model_dir, json.dumps(bundle).encode(), p256_key, hasher=hasher)
    assert [f.code for f in check.failures] == [codes.NO_SIGNATURE.code]


def test_only_the_first_signature_is_checked(model_dir, hasher, p256_key):
    bundle = json.loads(sign_model(model_dir, p256_key, hasher=hasher))
    sigs = bundle["dsseEnvelope"]["signatures"]
    bundle["dsseEnvelope"]["signatures"] = [{"sig": base64.b64encode(b"\x30\x00").decode()}, *sigs]
    check = _verify(model_dir, json.dumps(bundle).encode(), p256_key, hasher=hasher)
    assert [f.code for f in check.failures] == [codes.BAD_SIGNATURE.code]


@pytest.mark.parametrize(
    "data",
    [b"", b"not json", b"[]", b'{"mediaType": "x"}', b"\xff\xfe", json.dumps({"mediaType": 3}).encode()],
    ids=["empty", "text", "list", "no-material", "binary", "wrong-type"],
)
def test_malformed_bundles_are_findings_not_tracebacks(model_dir, hasher, p256_key, data):
    check = _verify(model_dir, data, p256_key, hasher=hasher)
    assert not check.holds
    assert check.failures[0].code in {codes.MALFORMED_BUNDLE.code, codes.UNSUPPORTED_BUNDLE.code}


def test_statement_without_resources_does_not_hold(model_dir, hasher, p256_key):
    st = _statement(model_dir, hasher)
    st["predicate"]["resources"] = []
    st["subject"][0]["digest"]["sha256"] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    check = _verify(model_dir, _craft(p256_key, st), p256_key, hasher=hasher)
    assert not check.holds


def test_signing_refuses_symlinks_and_empty_directories(tmp_path, model_dir, hasher, p256_key):
    (model_dir / "link").symlink_to(model_dir / "config.json")
    with pytest.raises(SigningError):
        sign_model(model_dir, p256_key, hasher=hasher)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SigningError):
        sign_model(empty, p256_key, hasher=hasher)


def test_missing_model_path_is_an_error_not_a_verdict(tmp_path, p256_key, hasher):
    from weightguard.errors import SourceError

    with pytest.raises(SourceError):
        _verify(tmp_path / "nope", b"{}", p256_key, hasher=hasher)


def test_single_file_model_uses_the_dot_name(tmp_path, hasher, p256_key):
    f = tmp_path / "weights.bin"
    f.write_bytes(os.urandom(0) + b"abc" * 100)
    st = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "weights.bin", "digest": {"sha256": ""}}],
        "predicateType": "https://model_signing/signature/v1.0",
        "predicate": {"serialization": {"method": "files", "hash_type": "sha256"}, "resources": []},
    }
    import hashlib

    digest = hashlib.sha256(b"abc" * 100).hexdigest()
    st["predicate"]["resources"] = [{"name": ".", "algorithm": "sha256", "digest": digest}]
    st["subject"][0]["digest"]["sha256"] = hashlib.sha256(bytes.fromhex(digest)).hexdigest()
    check = _verify(f, _craft(p256_key, st), p256_key, hasher=hasher)
    assert check.holds, check.failures
