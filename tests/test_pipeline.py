"""`weightguard verify` end to end: one test per verdict path, attestation and promotion."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from weightguard.pipeline import VerifyOptions, verify
from weightguard.policy.load import load_builtin, load_policy

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_models"


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "weightguard", *args], capture_output=True, text=True, cwd=cwd, timeout=120, check=False
    )


@pytest.fixture
def clean_model(tmp_path: Path) -> Path:
    model = tmp_path / "clean"
    shutil.copytree(SAMPLES / "approved", model)
    return model


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    private = tmp_path / "approver.pem"
    public = tmp_path / "approver.pub.pem"
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return private, public


def test_a_clean_safetensors_model_is_approved_and_attested(clean_model: Path, keys, tmp_path: Path) -> None:
    attestation = tmp_path / "clean.att.json"
    report = verify(str(clean_model), load_builtin("default"), VerifyOptions(attest_key=keys[0], attestation_path=attestation))
    assert (report.verdict, report.exit_code) == ("approved", 0)
    assert [s.name for s in report.stages] == ["source", "analysis", "integrity", "verdict"]
    assert report.subject is not None and report.subject.root_digest
    assert report.attestation is not None and report.attestation.verification_result == "PASSED"
    result = run_cli("attestation", "verify", str(clean_model), "--attestation", str(attestation), "--public-key", str(keys[1]))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["digest"] == report.subject.root_digest


def test_a_malicious_pickle_is_rejected_and_not_attested(keys, tmp_path: Path) -> None:
    attestation = tmp_path / "blocked.att.json"
    report = verify(str(SAMPLES / "blocked"), load_builtin("default"), VerifyOptions(attest_key=keys[0], attestation_path=attestation))
    assert (report.verdict, report.exit_code) == ("rejected", 1)
    assert any(f.code == "WG-PKL-001" and f.blocking for f in report.findings)
    assert report.attestation is None and not attestation.exists()


def test_a_rejected_run_can_be_attested_as_failed_on_request(keys, tmp_path: Path) -> None:
    attestation = tmp_path / "failed.att.json"
    report = verify(
        str(SAMPLES / "blocked"), load_builtin("default"),
        VerifyOptions(attest_key=keys[0], attestation_path=attestation, attest_failed=True),
    )
    assert report.attestation is not None and report.attestation.verification_result == "FAILED"


def test_a_file_tampered_after_pinning_is_rejected(clean_model: Path, tmp_path: Path) -> None:
    lock = run_cli("lock", str(clean_model), "-o", str(tmp_path / "pins.yaml"))
    assert lock.returncode == 0, lock.stderr
    policy = tmp_path / "pins.yaml"  # a complete policy (issue 18)
    assert verify(str(clean_model), load_policy(policy)).verdict == "approved"
    data = bytearray((clean_model / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (clean_model / "model.safetensors").write_bytes(bytes(data))
    report = verify(str(clean_model), load_policy(policy))
    assert report.verdict == "rejected"
    assert report.integrity is not None and [m.path for m in report.integrity.mismatched] == ["model.safetensors"]


def test_a_stage_that_cannot_finish_makes_the_run_incomplete(clean_model: Path, write_policy) -> None:
    policy = load_policy(write_policy("limits:\n  max_file_bytes: 100"))
    report = verify(str(clean_model), policy)
    assert (report.verdict, report.exit_code) == ("incomplete", 2)
    assert any(s.status == "incomplete" for s in report.stages)


def test_verify_cli_exit_codes_and_machine_output(clean_model: Path) -> None:
    ok = run_cli("verify", str(clean_model), "--format", "json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["verdict"] == "approved"
    bad = run_cli("verify", str(SAMPLES / "blocked"), "--format", "sarif")
    assert bad.returncode == 1 and json.loads(bad.stdout)["version"] == "2.1.0"
    missing = run_cli("verify", str(clean_model / "nope"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_promotion_follows_the_stages_and_refuses_changed_bytes(clean_model: Path, keys, tmp_path: Path) -> None:
    attestation = tmp_path / "att.json"
    db = f"sqlite:///{tmp_path}/rollout.db"
    verify(str(clean_model), load_builtin("default"), VerifyOptions(attest_key=keys[0], attestation_path=attestation))
    common = ["--attestation", str(attestation), "--public-key", str(keys[1]), "--database", db]
    promoted = run_cli("promote", str(clean_model), "--stage", "staging", *common)
    assert promoted.returncode == 0, promoted.stderr
    status = json.loads(run_cli("status", str(clean_model), "--database", db).stdout)
    assert status["stage"] == "staging"
    # canary needs passed probes, which this attestation does not record
    refused = run_cli("promote", str(clean_model), "--stage", "canary", *common)
    assert refused.returncode == 1 and "probes" in refused.stderr
    # a byte changed after attestation: the model on disk is not the attested one
    (clean_model / "config.json").write_text('{"architectures": ["Other"]}\n')
    changed = run_cli("promote", str(clean_model), "--stage", "staging", *common)
    assert changed.returncode == 1 and "not the model on disk" in changed.stderr
    history = json.loads(run_cli("history", str(SAMPLES / "approved"), "--database", db).stdout)
    assert [e["action"] for e in history["events"]] == ["register", "promote"]


def test_revoke_sends_a_model_back_to_quarantine(clean_model: Path, keys, tmp_path: Path) -> None:
    attestation = tmp_path / "att.json"
    db = f"sqlite:///{tmp_path}/rollout.db"
    verify(str(clean_model), load_builtin("default"), VerifyOptions(attest_key=keys[0], attestation_path=attestation))
    run_cli("promote", str(clean_model), "--stage", "staging", "--attestation", str(attestation),
            "--public-key", str(keys[1]), "--database", db)
    revoked = run_cli("revoke", str(clean_model), "--reason", "signer key revoked", "--database", db)
    assert revoked.returncode == 0, revoked.stderr
    assert json.loads(run_cli("status", str(clean_model), "--database", db).stdout)["stage"] == "quarantine"


def test_promote_still_takes_the_deprecated_to_and_says_so(clean_model: Path, keys, tmp_path: Path) -> None:
    attestation = tmp_path / "att.json"
    db = f"sqlite:///{tmp_path}/rollout.db"
    verify(str(clean_model), load_builtin("default"), VerifyOptions(attest_key=keys[0], attestation_path=attestation))
    common = ["--attestation", str(attestation), "--public-key", str(keys[1]), "--database", db]
    old = run_cli("promote", str(clean_model), "--to", "staging", *common)
    assert old.returncode == 0 and "--to is deprecated; use --stage" in old.stderr
    assert "--to" not in run_cli("promote", "--help").stdout  # hidden: one documented name, --stage
    clash = run_cli("promote", str(clean_model), "--stage", "canary", "--to", "staging", *common)
    assert clash.returncode == 2 and "disagree" in clash.stderr


def test_python_dash_m_runs_the_cli() -> None:
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("weightguard ")


def test_the_policy_can_name_the_signing_key_and_the_trusted_keys(clean_model: Path, keys, tmp_path: Path) -> None:
    attestation = tmp_path / "policy-att.json"
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "apiVersion: weightguard/v1alpha1\nkind: VerificationPolicy\nmetadata: {name: keyed}\nspec:\n"
        "  rollout:\n    database: sqlite:///" + str(tmp_path / "r.db") + "\n"
        f"    attestation: {{signing_key: {keys[0].name}, trusted_keys: [{keys[1].name}], location: {attestation}}}\n"
    )
    made = run_cli("verify", str(clean_model), "--policy", str(policy))
    assert made.returncode == 0 and attestation.exists(), made.stderr
    promoted = run_cli("promote", str(clean_model), "--stage", "staging", "--attestation", str(attestation), "--policy", str(policy))
    assert promoted.returncode == 0, promoted.stderr


def test_a_policy_requiring_conversion_approves_the_converted_safetensors(tmp_path: Path, write_policy) -> None:
    torch = pytest.importorskip("torch")
    src = tmp_path / "pickled"
    src.mkdir()
    torch.save({"w": torch.arange(6.0)}, src / "pytorch_model.bin")
    (src / "config.json").write_text("{}")
    out = tmp_path / "converted"
    policy = load_policy(write_policy("conversion:\n  mode: required"))
    report = verify(str(src), policy, VerifyOptions(convert_dir=out))
    assert report.verdict == "approved", report.reasons
    assert [s.name for s in report.stages] == ["source", "analysis", "integrity", "conversion", "verdict"]
    assert report.conversion is not None and report.conversion.files[0].output == "model.safetensors"
    assert {f.format for f in report.files} >= {"safetensors"} and "pytorch-zip" not in {f.format for f in report.files}
    assert report.subject is not None and report.subject.uri == str(out)


def test_a_blocked_pickle_is_never_converted(tmp_path: Path, write_policy) -> None:
    out = tmp_path / "converted"
    report = verify(str(SAMPLES / "blocked"), load_policy(write_policy("conversion:\n  mode: required")), VerifyOptions(convert_dir=out))
    assert report.verdict == "rejected"
    assert any(f.code == "WG-CNV-001" for f in report.findings)
    assert not (out / "model.safetensors").exists()
