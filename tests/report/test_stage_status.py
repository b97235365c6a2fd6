"""Stage statuses tell the truth: a stage fails only on what the policy's gate blocks (issue 18).

A correctly signed model raises informational signature notes; they are notes, never a
"failed" integrity stage next to an APPROVED verdict, in the text, the JSON or the HTML.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from weightguard.findings import Severity
from weightguard.pipeline import VerifyOptions, verify
from weightguard.policy.load import load_builtin, load_policy, parse_policy
from weightguard.report.build import StageRun, build_report
from weightguard.report.html import render_html
from weightguard.report.model import Report
from weightguard.report.text import render_text
from weightguard.signing.codes import SIGNED_BY
from weightguard.signing.model_signing import sign_model
from weightguard.verdict.attestation import verify_attestation

SAMPLES = Path(__file__).resolve().parents[2] / "sample_models"


def _signed_model(tmp_path: Path, key: ec.EllipticCurvePrivateKey | None = None) -> tuple[Path, Path]:
    """A copy of the approved sample, signed; and a policy that requires that signer."""
    model = tmp_path / "signed"
    shutil.copytree(SAMPLES / "approved", model)
    key = key or ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "signer.pub.pem").write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    (model / "model.sig").write_bytes(sign_model(model, key, signature_path=model / "model.sig"))
    policy = tmp_path / "signed.yaml"
    policy.write_text(
        "apiVersion: weightguard/v1alpha1\nkind: VerificationPolicy\nmetadata: {name: signed}\n"
        "spec:\n  signatures:\n    required: true\n"
        "    trusted_signers:\n      - {kind: key, public_key: signer.pub.pem}\n"
    )
    return model, policy


def _statuses_everywhere(report: Report) -> tuple[str, dict[str, str], str]:
    text = render_text(report)
    stages_line = next(line for line in text.splitlines() if line.startswith("stages: "))
    as_json = {s["name"]: s["status"] for s in json.loads(report.model_dump_json())["stages"]}
    return stages_line, as_json, render_html(report, plots=False)


def test_a_correctly_signed_model_shows_no_failed_stage_in_text_json_or_html(tmp_path: Path) -> None:
    model, policy = _signed_model(tmp_path)
    report = verify(str(model), load_policy(policy))
    assert report.verdict == "approved"
    assert any(f.code == SIGNED_BY.code and not f.blocking for f in report.findings)

    stages_line, as_json, html = _statuses_everywhere(report)
    assert set(as_json.values()) == {"passed"}, as_json
    assert "failed" not in stages_line and "integrity passed (" in stages_line
    assert "badge status-failed" not in html and "badge status-passed" in html
    integrity = next(s for s in report.stages if s.name == "integrity")
    assert integrity.notes >= 1  # the signature's notes are counted, not hidden
    assert "below the gate" in html


def test_the_attestation_of_a_correctly_signed_model_records_its_integrity_check_as_passed(tmp_path: Path) -> None:
    # Rollout requirements read these checks: `require: [scan, integrity]` must be met by a signed model.
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "approver.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    model, policy = _signed_model(tmp_path, key)
    attestation = tmp_path / "att.json"
    options = VerifyOptions(attest_key=tmp_path / "approver.pem", attestation_path=attestation)
    report = verify(str(model), load_policy(policy), options)
    assert report.subject is not None and report.subject.root_digest
    checked = verify_attestation(
        attestation.read_bytes(), key.public_key(), expected_root_digest=report.subject.root_digest
    )
    assert checked.checks["integrity"] == "PASSED" and checked.checks["signature"] == "PASSED"


def test_a_blocked_model_shows_the_stage_that_failed_in_text_json_and_html() -> None:
    report = verify(str(SAMPLES / "blocked"), load_builtin("default"))
    assert report.verdict == "rejected"

    stages_line, as_json, html = _statuses_everywhere(report)
    assert as_json["analysis"] == "failed" and as_json["verdict"] == "failed"
    assert as_json["source"] == "passed"
    assert "analysis failed" in stages_line and "verdict failed" in stages_line
    assert '<th scope="row">analysis</th><td><span class="badge status-failed">failed</span>' in html


def test_a_tampered_signed_model_fails_its_integrity_stage(tmp_path: Path) -> None:
    model, policy = _signed_model(tmp_path)
    (model / "config.json").write_text('{"tampered": true}\n')
    report = verify(str(model), load_policy(policy))
    assert report.verdict == "rejected"
    assert {s.name: s.status for s in report.stages}["integrity"] == "failed"


GATED = b"""apiVersion: weightguard/v1alpha1
kind: VerificationPolicy
metadata: {name: gated}
spec:
  severity: {fail_on: high}
"""


@pytest.mark.parametrize(
    ("severity", "status", "notes"),
    [(Severity.INFO, "passed", 1), (Severity.MEDIUM, "passed", 1), (Severity.HIGH, "failed", 0)],
)
def test_a_stage_fails_only_at_or_above_the_policy_gate(severity: Severity, status: str, notes: int) -> None:
    finding = dataclasses.replace(SIGNED_BY.at("model.sig", "a finding"), severity=severity)
    report = build_report(
        command="verify",
        targets=["m"],
        loaded=parse_policy(GATED, "gated.yaml"),
        scans=[],
        extra_findings=[finding],
        version="0.0.0-test",
        now=dt.datetime(2026, 12, 1, tzinfo=dt.UTC),
        stages=[StageRun("integrity", 0.1, "checked", (finding,))],
        verdict_stage=True,
    )
    integrity, verdict = report.stages
    assert (integrity.status, integrity.notes) == (status, notes)
    # The verdict and the stages agree: a failed stage exactly when the run is rejected.
    assert verdict.status == ("failed" if report.verdict == "rejected" else "passed")
