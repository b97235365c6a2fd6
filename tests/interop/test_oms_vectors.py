"""Conformance: weightguard agrees with the `expect` column of every OMS interop vector.

The vectors were made with the real model-signing 1.1.1 (see tests/data/interop/oms/README.md, copied from ../shared/interop/oms so a plain clone runs them).
weightguard must match the *expected* verdict, including the cases where model-signing itself is
wrong (shards/blake2 via its CLI, and path-escape-ignore-unsigned, which it reads outside the root).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from weightguard.signing import codes
from weightguard.signing.certificates import certificate_verifier
from weightguard.signing.interface import SignatureVerifier
from weightguard.signing.keys import KeyVerifier
from weightguard.signing.model_signing import VerifyOptions, verify_model_signature

OMS = Path(__file__).resolve().parents[1] / "data" / "interop" / "oms"  # copied from ../shared/interop/oms
EXPECTED = OMS / "expected.json"
sys.path.insert(0, str(Path(__file__).parents[1] / "signing"))

from fake_hashing import hasher  # noqa: E402


def _cases() -> list[dict[str, object]]:
    if not EXPECTED.is_file():
        return []
    return list(json.loads(EXPECTED.read_text())["cases"])


CASES = _cases()
pytestmark = pytest.mark.skipif(not CASES, reason=f"OMS interop vectors not found at {EXPECTED}")


def _verifier(case: dict[str, object]) -> SignatureVerifier:
    credential = (OMS / str(case["credential"])).read_bytes()
    if case["method"] == "key":
        return KeyVerifier.from_pem(credential)
    assert case["method"] == "certificate"
    return certificate_verifier(credential)


def _run(case: dict[str, object], *, allow_legacy: bool = False):
    flags = list(case["flags"])  # type: ignore[call-overload]
    options = VerifyOptions(allow_legacy=allow_legacy, ignore_unsigned_files="--ignore_unsigned_files" in flags)
    signature = OMS / str(case["signature"])
    return verify_model_signature(
        OMS / str(case["model"]),
        signature.read_bytes(),
        _verifier(case),
        options,
        signature_path=signature,
        hasher=hasher(),
    )


def test_vector_set_has_all_27_cases():
    assert len(CASES) == 27
    assert len({c["id"] for c in CASES}) == 27


@pytest.mark.parametrize("case", CASES, ids=[str(c["id"]) for c in CASES])
def test_weightguard_agrees_with_expected_verdict(case: dict[str, object]):
    check = _run(case)
    expect = case["expect"]
    if expect == "PASS*":
        # legacy v0.1: refused by default, accepted only behind the explicit switch
        assert not check.holds
        assert [f.code for f in check.failures] == [codes.LEGACY_REFUSED.code]
        assert _run(case, allow_legacy=True).holds
        return
    assert check.holds is (expect == "PASS"), [f"{f.code} {f.location}: {f.message}" for f in check.failures]
    if expect == "FAIL":
        assert check.failures, "a failing verdict must name its reason"


def _case(case_id: str) -> dict[str, object]:
    return next(c for c in CASES if c["id"] == case_id)


def test_path_escape_with_ignore_unsigned_fails_on_the_name_without_reading_outside():
    check = _run(_case("path-escape-ignore-unsigned"))
    assert [f.code for f in check.failures] == [codes.UNSAFE_NAME.code]
    assert check.diff is not None
    assert check.diff.unsafe == ("../outside.txt",)
    assert "../outside.txt" not in check.diff.matched + check.diff.missing


def test_extra_file_passes_only_with_the_ignore_unsigned_flag():
    case = _case("extra-file-ignore-unsigned")
    assert _run(case).holds
    assert not _run(_case("extra-file")).holds
    diff = _run(case).diff
    assert diff is not None
    assert diff.tolerated == ("modeling_extra.py",)


def test_tampered_shard_is_named_with_its_byte_range():
    check = _run(_case("shards-tampered"))
    (mismatch,) = [f for f in check.failures if f.code == codes.DIGEST_MISMATCH.code]
    assert (mismatch.path, mismatch.member) == ("model.safetensors", "24576:25088")


def test_root_digest_of_the_pristine_model_matches_the_readme():
    check = _run(_case("key-p256-ok"))
    assert check.manifest is not None
    assert check.manifest.root_digest == "7790ad1890f3e3dadf735ced3dba8758bc48384dcdb07a65d52e4b6afea6440c"


def test_certificate_case_reports_the_leaf_subject_and_issuer():
    check = _run(_case("cert-ok"))
    assert check.signer is not None
    assert "release-bot@weightguard.test" in check.signer.subject
    assert "intermediate CA" in check.signer.issuer


def test_signer_ignored_readme_is_shown_as_a_note():
    check = _run(_case("readme-modified-signer-ignored"))
    notes = [f for f in check.findings if f.code == codes.SIGNER_IGNORES.code]
    assert notes
    assert "README.md" in notes[0].evidence["paths"]
    assert "README.md" in check.ignore_paths_applied
