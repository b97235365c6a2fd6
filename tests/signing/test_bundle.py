"""Bundle, DSSE and statement parsing (weightguard.signing.bundle)."""

from __future__ import annotations

import base64
import json

import pytest

from weightguard.signing import codes
from weightguard.signing.bundle import b64decode, pae, parse_bundle, parse_statement, root_digest
from weightguard.signing.interface import SerializationMethod, SignatureRejected, SignedResource

DIGEST = "ab" * 32


def _statement(**predicate_overrides: object) -> dict[str, object]:
    resources = [{"name": "a.bin", "algorithm": "sha256", "digest": DIGEST}]
    predicate: dict[str, object] = {"serialization": {"method": "files", "hash_type": "sha256"}, "resources": resources}
    predicate.update(predicate_overrides)
    root = root_digest(tuple(SignedResource(**r) for r in predicate["resources"]))  # type: ignore[arg-type]
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "m", "digest": {"sha256": root}}],
        "predicateType": "https://model_signing/signature/v1.0",
        "predicate": predicate,
    }


def _parse(st: dict[str, object], *, allow_legacy: bool = False):
    return parse_statement(json.dumps(st).encode(), allow_legacy=allow_legacy)


def test_pae_matches_the_dsse_v1_definition():
    assert pae("application/vnd.in-toto+json", b"{}") == b"DSSEv1 28 application/vnd.in-toto+json 2 {}"


def test_base64_accepts_urlsafe_and_unpadded_forms():
    raw = bytes(range(250))
    assert b64decode(base64.urlsafe_b64encode(raw).decode().rstrip("="), "x") == raw
    assert b64decode(base64.b64encode(raw).decode(), "x") == raw
    with pytest.raises(SignatureRejected):
        b64decode("***", "x")


def test_bundle_with_unknown_keys_and_omitted_defaults_parses():
    payload = base64.b64encode(b"{}").decode()
    doc = {
        "extra": {"future": True},
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "dsseEnvelope": {"signatures": [{"sig": "AA=="}], "payloadType": "t", "payload": payload, "new": 1},
        "verificationMaterial": {"publicKey": {"hint": "ABCD"}},
    }
    bundle = parse_bundle(json.dumps(doc).encode())
    assert bundle.key_hint == "abcd"
    assert bundle.tlog_entries == 0
    assert bundle.payload == b"{}"


def test_unknown_media_type_is_unsupported():
    doc = {
        "mediaType": "application/x",
        "verificationMaterial": {},
        "dsseEnvelope": {"payload": "", "payloadType": "t"},
    }
    with pytest.raises(SignatureRejected) as info:
        parse_bundle(json.dumps(doc).encode())
    assert info.value.rule is codes.UNSUPPORTED_BUNDLE


def test_oversized_bundle_is_refused_before_parsing():
    with pytest.raises(SignatureRejected):
        parse_bundle(b" " * 100, max_bytes=10)


def test_float_shard_size_from_protobuf_json_is_read_as_an_integer():
    resources = [{"name": "a.bin:0:8192", "algorithm": "sha256-sharded-8192", "digest": DIGEST}]
    ser = {"method": "shards", "hash_type": "sha256", "shard_size": 8192.0, "ignore_paths": [".git"]}
    manifest = _parse(_statement(serialization=ser, resources=resources))
    assert manifest.method is SerializationMethod.SHARDS
    assert manifest.shard_size == 8192
    assert manifest.ignore_paths == (".git",)


@pytest.mark.parametrize("size", [8192.5, 0, -1, True, "8192", None])
def test_shard_size_that_is_not_a_positive_whole_number_is_refused(size):
    with pytest.raises(SignatureRejected) as info:
        _parse(_statement(serialization={"method": "shards", "hash_type": "sha256", "shard_size": size}))
    assert info.value.rule is codes.BAD_STATEMENT


def test_unknown_predicate_fields_are_ignored():
    assert _parse(_statement(comment="future field")).resources[0].name == "a.bin"


def test_statement_needs_exactly_one_subject():
    st = _statement()
    st["subject"] = [*st["subject"], *st["subject"]]  # type: ignore[misc]
    with pytest.raises(SignatureRejected) as info:
        _parse(st)
    assert info.value.rule is codes.BAD_STATEMENT


@pytest.mark.parametrize(
    ("field", "value"),
    [("_type", "https://in-toto.io/Statement/v0.1"), ("predicateType", "https://example.com/other")],
)
def test_other_statement_types_are_refused(field, value):
    st = _statement()
    st[field] = value
    with pytest.raises(SignatureRejected) as info:
        _parse(st)
    assert info.value.rule is codes.BAD_STATEMENT


def test_unknown_hash_type_is_refused():
    with pytest.raises(SignatureRejected):
        _parse(_statement(serialization={"method": "files", "hash_type": "md5"}))


def test_root_digest_mismatch_is_its_own_rule():
    st = _statement()
    st["subject"][0]["digest"]["sha256"] = "00" * 32  # type: ignore[index]
    with pytest.raises(SignatureRejected) as info:
        _parse(st)
    assert info.value.rule is codes.ROOT_MISMATCH


def test_non_hex_digest_is_refused():
    st = _statement()
    st["predicate"]["resources"][0]["digest"] = "zz"  # type: ignore[index]
    with pytest.raises(SignatureRejected) as info:
        _parse(st)
    assert info.value.rule is codes.BAD_STATEMENT


def test_legacy_predicate_needs_the_switch():
    st = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [
            {"name": "a.bin", "digest": {"sha256": DIGEST}, "annotations": {"actual_hash_algorithm": "file-sha256"}}
        ],
        "predicateType": "https://model_signing/Digests/v0.1",
        "predicate": {"unused": "x"},
    }
    with pytest.raises(SignatureRejected) as info:
        _parse(st)
    assert info.value.rule is codes.LEGACY_REFUSED
    manifest = _parse(st, allow_legacy=True)
    assert manifest.legacy
    assert manifest.resources == (SignedResource("a.bin", "sha256", DIGEST),)
