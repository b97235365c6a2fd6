"""Issue 18: `lock` writes a policy that `verify` takes as it is, and `--policy` layers compose.

Run through the real command-line app on a real model folder: no part of the
pipeline is replaced.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from weightguard.cli import build_app
from weightguard.policy.load import load_policy


def _safetensors(values: int) -> bytes:
    header = json.dumps({"w": {"dtype": "F32", "shape": [values], "data_offsets": [0, 4 * values]}}).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + struct.pack(f"<{values}f", *range(values))


@pytest.fixture
def model(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    root.mkdir()
    (root / "config.json").write_text('{"model_type": "toy"}')
    (root / "model.safetensors").write_bytes(_safetensors(4))
    (root / "model.sig").write_text("a signature added after the lock\n")
    return root


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(build_app(), list(args))
    return result.exit_code, result.stdout, result.stderr


def _lock(model: Path, out: Path, *extra: str) -> None:
    code, _, stderr = _run("lock", str(model), "-o", str(out), *extra)
    assert code == 0, stderr


def test_a_lock_is_a_complete_policy_that_verify_takes_and_that_approves_the_same_folder(
    model: Path, tmp_path: Path
) -> None:
    lock = tmp_path / "lock.yaml"
    _lock(model, lock)
    loaded = load_policy(lock)  # a whole policy, not a fragment
    assert loaded.name == "lock-model"
    assert set(loaded.policy.spec.integrity.pinned) == {"config.json", "model.safetensors"}
    code, _, stderr = _run("verify", str(model), "--policy", str(lock))
    assert code == 0, stderr


def test_signature_files_are_not_pinned(model: Path, tmp_path: Path) -> None:
    code, stdout, _ = _run("lock", str(model))
    assert code == 0
    assert "model.sig" not in yaml.safe_load(stdout)["spec"]["integrity"]["pinned"]


def test_a_changed_file_is_blocked_by_the_lock(model: Path, tmp_path: Path) -> None:
    lock = tmp_path / "lock.yaml"
    _lock(model, lock)
    (model / "model.safetensors").write_bytes(_safetensors(5))
    code, stdout, _ = _run("verify", str(model), "--policy", str(lock), "--format", "json")
    assert code == 1
    report = json.loads(stdout)
    assert report["verdict"] == "rejected"
    assert [m["path"] for m in report["integrity"]["mismatched"]] == ["model.safetensors"]


def test_lock_into_replaces_the_pins_and_keeps_every_other_setting(model: Path, tmp_path: Path) -> None:
    policy = tmp_path / "team.yaml"
    policy.write_text(
        "# Team policy: reviewed by security.\n"
        "apiVersion: weightguard/v1alpha1\nkind: VerificationPolicy\n"
        "metadata:\n  name: team\n"
        "spec:\n"
        "  severity:\n    fail_on: low\n"
        "  integrity:\n    allow_extra: [.git, README.md]\n"
        '    pinned:\n      gone.bin: "sha256:' + "0" * 64 + '"\n'
    )
    _lock(model, policy, "--into", str(policy))
    text = policy.read_text()
    assert text.startswith("# Team policy: reviewed by security.\n")  # the leading comment block is kept
    spec = load_policy(policy).policy.spec
    assert spec.severity.fail_on.value == "low"
    assert spec.integrity.allow_extra == [".git", "README.md"]
    assert set(spec.integrity.pinned) == {"config.json", "model.safetensors"}  # the stale pin is gone
    assert load_policy(policy).name == "team"
    code, _, stderr = _run("verify", str(model), "--policy", str(policy))
    assert code == 0, stderr


def test_lock_into_an_overlay_keeps_it_an_overlay(model: Path, tmp_path: Path) -> None:
    overlay = tmp_path / "project.yaml"
    overlay.write_text("spec:\n  severity:\n    fail_on: low\n  integrity:\n")
    _lock(model, overlay, "--into", str(overlay))
    document = yaml.safe_load(overlay.read_text())
    assert "apiVersion" not in document
    assert document["spec"]["severity"] == {"fail_on": "low"}
    assert set(document["spec"]["integrity"]["pinned"]) == {"config.json", "model.safetensors"}
    code, _, stderr = _run("verify", str(model), "-p", "builtin:default", "-p", str(overlay))
    assert code == 0, stderr


def test_lock_into_a_policy_that_does_not_load_writes_nothing(model: Path, tmp_path: Path) -> None:
    policy = tmp_path / "broken.yaml"
    policy.write_text("spec: [not, a, mapping]\n")
    code, _, stderr = _run("lock", str(model), "--into", str(policy))
    assert code == 2
    assert "broken.yaml" in stderr
    assert policy.read_text() == "spec: [not, a, mapping]\n"


def test_two_layers_merge_and_the_report_lists_both_with_their_sha256(model: Path, tmp_path: Path) -> None:
    base = tmp_path / "base.yaml"
    base.write_text(
        "apiVersion: weightguard/v1alpha1\nkind: VerificationPolicy\nmetadata:\n  name: base\n"
        "spec:\n  formats:\n    refused: [pickle]\n"
    )
    pins = tmp_path / "pins.yaml"
    _lock(model, pins, "--overlay")
    assert "apiVersion" not in yaml.safe_load(pins.read_text())  # a partial layer

    code, stdout, stderr = _run("verify", str(model), "-p", str(base), "-p", str(pins), "--format", "json")
    assert code == 0, stderr
    policy = json.loads(stdout)["policy"]
    assert policy["name"] == "base"
    assert policy["layers"] == [
        {"origin": str(base), "sha256": hashlib.sha256(base.read_bytes()).hexdigest()},
        {"origin": str(pins), "sha256": hashlib.sha256(pins.read_bytes()).hexdigest()},
    ]
    assert policy["sha256"] == load_policy([base, pins]).sha256 != policy["layers"][0]["sha256"]

    code, _, text = _run("verify", str(model), "-p", str(base), "-p", str(pins))
    assert code == 0
    assert f"  layer 1: {base} (sha256 {policy['layers'][0]['sha256']})\n" in text
    assert f"  layer 2: {pins} (sha256 {policy['layers'][1]['sha256']})\n" in text

    (model / "model.safetensors").write_bytes(_safetensors(5))  # the overlay's pins apply
    code, _, _ = _run("verify", str(model), "-p", str(base), "-p", str(pins))
    assert code == 1


def test_a_malformed_overlay_exits_2_naming_the_file(model: Path, tmp_path: Path) -> None:
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("spec:\n  pickle:\n    mode: sometimes\n")
    code, _, stderr = _run("verify", str(model), "-p", "builtin:default", "-p", str(overlay))
    assert code == 2
    assert f"{overlay}:3: spec.pickle.mode" in stderr


def test_scan_takes_layers_too(model: Path, tmp_path: Path) -> None:
    overlay = tmp_path / "strict-formats.yaml"
    overlay.write_text("spec:\n  formats:\n    refused: [safetensors]\n")
    code, _, _ = _run("scan", str(model / "model.safetensors"), "-p", "builtin:default", "-p", str(overlay))
    assert code == 1


def test_policy_check_shows_the_merged_policy(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("spec:\n  severity:\n    fail_on: low\n")
    code, stdout, stderr = _run("policy", "check", "builtin:strict", str(overlay), "--show")
    assert code == 0, stderr
    shown = yaml.safe_load(stdout)
    assert shown["metadata"]["name"] == "strict"
    assert shown["spec"]["severity"]["fail_on"] == "low"
    assert shown["spec"]["pickle"]["mode"] == "refuse"
    assert f"layer {overlay} (sha256 {hashlib.sha256(overlay.read_bytes()).hexdigest()})" in stderr


def test_an_attestation_records_the_layers_and_holds_only_under_the_same_merged_policy(
    model: Path, tmp_path: Path
) -> None:
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private, public = tmp_path / "approver.pem", tmp_path / "approver.pub.pem"
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    pins = tmp_path / "pins.yaml"
    _lock(model, pins, "--overlay")
    layers = ["-p", "builtin:strict", "-p", str(pins)]
    bundle = tmp_path / "model.att.json"
    code, _, stderr = _run("verify", str(model), *layers, "--attest", str(private), "--attestation", str(bundle))
    assert code == 0, stderr

    statement = json.loads(base64.b64decode(json.loads(bundle.read_text())["dsseEnvelope"]["payload"]))
    predicate = statement["predicate"]
    assert predicate["policy"]["digest"]["sha256"] == load_policy([Path("builtin:strict"), pins]).sha256
    assert [layer["uri"] for layer in predicate["weightguard"]["policyLayers"]] == ["builtin:strict", str(pins)]

    check = ["attestation", "verify", str(model), "--attestation", str(bundle), "--public-key", str(public)]
    code, _, stderr = _run(*check, *layers)
    assert code == 0, stderr
    code, _, stderr = _run(*check, "-p", "builtin:strict")  # the base alone is another policy
    assert code == 1
    assert "attested under policy" in stderr
