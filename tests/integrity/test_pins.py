"""The integrity stage: pinned digests, tolerated files, stable codes and the report section."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest
from pydantic import ValidationError

from weightguard.catalog import all_rules
from weightguard.integrity import codes
from weightguard.integrity.hashing import HashRequest, hash_files
from weightguard.integrity.pins import check_integrity, hash_request, matches_any
from weightguard.integrity.report import IntegrityReport
from weightguard.policy.load import parse_policy
from weightguard.policy.sections.integrity import IntegritySpec
from weightguard.sources.local import LocalSource

FILES = {"config.json": b'{"a": 1}', "model.safetensors": b"\x08" * 4096, "sub/tok.json": b"[]"}


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def model(tmp_path: Path) -> Path:
    for rel, data in FILES.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
    return tmp_path


def _hashes(root: Path, spec: IntegritySpec) -> dict:
    return hash_files(LocalSource(root).collect().files, hash_request(spec))


def _spec(**kwargs: object) -> IntegritySpec:
    pinned = {rel: _sha(data) for rel, data in FILES.items()}
    return IntegritySpec.model_validate({"pinned": pinned, **kwargs})


def test_an_untouched_model_matches_its_pins(model: Path) -> None:
    spec = _spec()
    outcome = check_integrity(spec, _hashes(model, spec))
    assert outcome.findings == ()
    assert outcome.diff.clean
    assert outcome.diff.matched == ("config.json", "model.safetensors", "sub/tok.json")


def test_a_changed_byte_is_a_critical_digest_mismatch_with_both_digests(model: Path) -> None:
    (model / "model.safetensors").write_bytes(b"\x08" * 4095 + b"\x09")
    spec = _spec()
    outcome = check_integrity(spec, _hashes(model, spec))
    [finding] = outcome.findings
    assert (finding.code, finding.path, finding.severity.value) == ("WG-INT-001", "model.safetensors", "critical")
    assert finding.evidence["expected"] == _sha(FILES["model.safetensors"]).removeprefix("sha256:")
    assert [m.path for m in outcome.diff.mismatched] == ["model.safetensors"]


def test_missing_and_extra_files_fail_by_default(model: Path) -> None:
    (model / "sub" / "tok.json").unlink()
    (model / "modeling_evil.py").write_text("import os")
    spec = _spec()
    outcome = check_integrity(spec, _hashes(model, spec))
    assert [(f.code, f.path) for f in outcome.findings] == [
        ("WG-INT-002", "sub/tok.json"),
        ("WG-INT-003", "modeling_evil.py"),
    ]
    assert (outcome.diff.missing, outcome.diff.extra) == (("sub/tok.json",), ("modeling_evil.py",))


def test_git_bookkeeping_is_tolerated_by_default_and_reported(model: Path, caplog: pytest.LogCaptureFixture) -> None:
    (model / ".gitattributes").write_text("*.safetensors filter=lfs")
    (model / ".git").mkdir()
    (model / ".git" / "HEAD").write_text("ref: refs/heads/main")
    spec = _spec()
    with caplog.at_level(logging.WARNING):
        outcome = check_integrity(spec, _hashes(model, spec))
    assert outcome.diff.clean
    assert outcome.tolerated_extra == (".git/HEAD", ".gitattributes")
    assert {f.code for f in outcome.findings} == {"WG-INT-007"}
    assert ".gitattributes" in caplog.text  # a permissive choice in use is logged


def test_the_policy_can_remove_the_benign_list_or_allow_missing_files(model: Path) -> None:
    (model / ".gitattributes").write_text("x")
    (model / "sub" / "tok.json").unlink()
    spec = _spec(allow_extra=[], allow_missing=["sub/*"])
    outcome = check_integrity(spec, _hashes(model, spec))
    assert [(f.code, f.path) for f in outcome.findings] == [
        ("WG-INT-003", ".gitattributes"),
        ("WG-INT-007", "sub/tok.json"),
    ]


def test_without_pins_only_path_safety_is_checked(model: Path) -> None:
    (model / "Config.json").write_text("{}")
    spec = IntegritySpec()
    outcome = check_integrity(spec, _hashes(model, spec))
    assert not outcome.pinned
    assert [(f.code, f.path) for f in outcome.findings] == [("WG-INT-006", "config.json")]


def test_blake3_pins_are_checked_with_blake3(model: Path) -> None:
    import blake3

    spec = IntegritySpec(pinned={"config.json": "blake3:" + blake3.blake3(FILES["config.json"]).hexdigest()})
    assert hash_request(spec) == HashRequest(frozenset({"sha256", "blake3"}))
    outcome = check_integrity(spec, _hashes(model, spec))
    assert outcome.diff.matched == ("config.json",)
    assert [f.path for f in outcome.findings] == ["model.safetensors", "sub/tok.json"]  # unpinned extras


@pytest.mark.parametrize(
    "pinned",
    [
        {"a": "sha256:abc"},
        {"a": "md5:" + "0" * 32},
        {"a": "sha256:" + "A" * 64},
        {"../a": "sha256:" + "0" * 64},
        {"/a": "sha256:" + "0" * 64},
        {"a\\b": "sha256:" + "0" * 64},
    ],
)
def test_malformed_pins_are_policy_errors(pinned: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        IntegritySpec(pinned=pinned)


def test_a_policy_file_with_an_integrity_section_loads() -> None:
    text = (
        "apiVersion: weightguard/v1alpha1\nkind: VerificationPolicy\nmetadata: {name: t}\n"
        "spec:\n  integrity:\n    require_pinned_revision: true\n    hf: {offline: true}\n"
        f"    pinned: {{model.bin: 'sha256:{'0' * 64}'}}\n"
    )
    spec = parse_policy(text.encode(), "t.yaml").policy.spec.integrity
    assert spec.require_pinned_revision
    assert spec.hf.offline
    assert spec.allow_extra == [".git", ".gitattributes", ".github", ".gitignore"]


def test_globs_match_a_path_or_any_of_its_folders() -> None:
    assert matches_any(".git/objects/ab/cd", [".git"])
    assert matches_any("docs/a.md", ["*.md"])
    assert not matches_any(".gitmodules_evil.py", [".git"])


def test_report_section_lists_files_root_digest_and_differences(model: Path) -> None:
    (model / "extra.bin").write_bytes(b"x")
    spec = _spec()
    outcome = check_integrity(spec, _hashes(model, spec))
    report = IntegrityReport.from_outcome(outcome, "sha256")
    assert [f.path for f in report.files] == ["config.json", "extra.bin", "model.safetensors", "sub/tok.json"]
    assert report.files[0].sha256 == _sha(FILES["config.json"]).removeprefix("sha256:")
    assert report.extra == ["extra.bin"]
    assert report.pinned
    assert report.root_digest == outcome.manifest.root_digest()
    assert IntegrityReport.model_validate_json(report.model_dump_json()) == report


def test_integrity_codes_are_well_formed_unique_and_not_yet_in_another_catalogue() -> None:
    mine = [r.code for r in codes.RULES]
    assert len(set(mine)) == len(mine)
    assert all(c.startswith("WG-INT-") for c in mine)
    assert not set(mine) & {r.code for r in all_rules() if r not in codes.RULES}
