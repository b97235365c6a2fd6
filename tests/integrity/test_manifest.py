"""Manifests: OMS order and root digest (checked against model-signing's own vectors), diffs, path safety."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from weightguard.errors import IntegrityError
from weightguard.integrity.hashing import HashRequest, hash_files
from weightguard.integrity.manifest import (
    Manifest,
    ManifestDiff,
    Mismatch,
    Resource,
    compare,
    oms_root_digest,
    oms_sort_key,
    path_findings,
)
from weightguard.sources.local import LocalSource

OMS = Path(__file__).resolve().parents[1] / "data" / "interop" / "oms"  # copied from ../shared/interop/oms
needs_vectors = pytest.mark.skipif(not OMS.is_dir(), reason="OMS interop vectors not present")


def _statement(sig: str) -> dict[str, Any]:
    bundle = json.loads((OMS / "sigs" / sig).read_text())
    statement: dict[str, Any] = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    return statement


def _model(name: str, request: HashRequest) -> Manifest:
    files = [f for f in LocalSource(OMS / name).collect().files if f.relpath != ".gitattributes"]
    return Manifest.of(hash_files(files, request))


def test_oms_order_compares_path_components_not_strings() -> None:
    names = ["é.txt", "w.json", "w-2.bin", "w/part.bin", "W.bin"]
    assert sorted(names, key=oms_sort_key) == ["W.bin", "w/part.bin", "w-2.bin", "w.json", "é.txt"]
    assert sorted(names) != sorted(names, key=oms_sort_key)  # a plain string sort would differ


@needs_vectors
def test_ordering_vector_gets_model_signings_order_and_root_digest() -> None:
    statement = _statement("ordering-key-p256.sig")
    manifest = _model("model-ordering", HashRequest())
    signed = [(r["name"], r["digest"]) for r in statement["predicate"]["resources"]]
    assert [(r.name, r.digest) for r in manifest.files()] == signed
    assert manifest.root_digest() == statement["subject"][0]["digest"]["sha256"]


@needs_vectors
@pytest.mark.parametrize(
    ("sig", "algorithm"),
    [("key-p256.sig", "sha256"), ("key-p256-blake2.sig", "blake2b"), ("key-p256-blake3.sig", "blake3")],
)
def test_files_vectors_give_the_signed_resources_and_root_digest(sig: str, algorithm: str) -> None:
    statement = _statement(sig)
    manifest = _model("model", HashRequest(frozenset({algorithm})))
    resources = manifest.files(algorithm)
    assert [(r.name, r.algorithm, r.digest) for r in resources] == [
        (r["name"], r["algorithm"], r["digest"]) for r in statement["predicate"]["resources"]
    ]
    assert oms_root_digest(resources) == statement["subject"][0]["digest"]["sha256"]


@needs_vectors
def test_shards_vector_gives_the_signed_shard_resources_and_root_digest() -> None:
    statement = _statement("key-p256-shards.sig")
    manifest = _model("model", HashRequest(shard_size=8192))
    resources = manifest.shards("sha256", 8192)
    assert [(r.name, r.algorithm, r.digest) for r in resources] == [
        (r["name"], r["algorithm"], r["digest"]) for r in statement["predicate"]["resources"]
    ]
    assert oms_root_digest(resources) == statement["subject"][0]["digest"]["sha256"]


def test_root_digest_hashes_raw_digest_bytes_in_listed_order() -> None:
    a, b = "00" * 32, "ff" * 32
    forward = oms_root_digest([Resource("a", "sha256", a), Resource("b", "sha256", b)])
    backward = oms_root_digest([Resource("b", "sha256", b), Resource("a", "sha256", a)])
    assert forward != backward
    assert forward == hashlib.sha256(bytes.fromhex(a + b)).hexdigest()
    with pytest.raises(IntegrityError, match="non-hex"):
        oms_root_digest([Resource("x", "sha256", "zz")])


def test_compare_lists_mismatched_missing_and_extra_explicitly() -> None:
    expected = Manifest.from_digests({"a": {"sha256": "11" * 32}, "b": {"sha256": "22" * 32}, "c": {"sha256": "33"}})
    actual = Manifest.from_digests({"a": {"sha256": "11" * 32}, "b": {"sha256": "44" * 32}, "d": {"sha256": "55"}})
    diff = compare(expected, actual)
    assert diff == ManifestDiff(
        mismatched=(Mismatch("b", "sha256", "22" * 32, "44" * 32),), missing=("c",), extra=("d",), matched=("a",)
    )
    assert not diff.clean
    assert compare(actual, actual).clean


def test_compare_refuses_to_guess_when_the_pinned_algorithm_was_not_computed() -> None:
    with pytest.raises(IntegrityError, match="blake3 was not computed"):
        compare(Manifest.from_digests({"a": {"blake3": "00"}}), Manifest.from_digests({"a": {"sha256": "00"}}))


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("/etc/passwd", "absolute path"),
        ("../outside.txt", "'..'"),
        ("a/../../b", "'..'"),
        ("a\x00b", "NUL"),
        ("a\\..\\b", "backslash"),
        ("a//b", "empty or '.'"),
        ("./a", "empty or '.'"),
        ("", "empty name"),
    ],
)
def test_unsafe_names_are_findings(name: str, reason: str) -> None:
    [finding] = path_findings([name])
    assert finding.code == "WG-INT-004"
    assert reason in finding.message


def test_duplicate_and_colliding_names_are_findings_but_safe_names_are_not() -> None:
    findings = path_findings(["Model.bin", "model.bin", "x/é.txt", "x/e\u0301.txt", "a.bin", "a.bin", "ok/fine.json"])
    assert [(f.code, f.path) for f in findings] == [
        ("WG-INT-006", "model.bin"),
        ("WG-INT-006", "x/e\u0301.txt"),
        ("WG-INT-005", "a.bin"),
    ]
