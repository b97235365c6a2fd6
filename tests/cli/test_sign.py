"""``weightguard sign`` and ``weightguard verify-signature`` end to end through Typer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from typer.testing import CliRunner

from weightguard.cli import sign, verify_signature

OMS = Path(__file__).parents[2].parent / "shared" / "interop" / "oms"


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    sign.register(app)
    verify_signature.register(app)
    return app


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    priv, pub = tmp_path / "key.pem", tmp_path / "pub.pem"
    priv.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    pub.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return priv, pub


@pytest.fixture
def model(tmp_path: Path) -> Path:
    root = tmp_path / "m"
    root.mkdir()
    (root / "weights.bin").write_bytes(b"\x01" * 1000)
    (root / "config.json").write_text("{}")
    return root


def test_sign_then_verify_exits_0_and_tampering_exits_1(app, keys, model, tmp_path):
    runner = CliRunner()
    sig = tmp_path / "model.sig"
    result = runner.invoke(app, ["sign", str(model), "--key", str(keys[0]), "-o", str(sig)])
    assert result.exit_code == 0, result.output
    ok = runner.invoke(
        app, ["verify-signature", str(model), "--signature", str(sig), "--public-key", str(keys[1]), "-f", "json"]
    )
    assert ok.exit_code == 0, ok.output
    report = json.loads(ok.stdout)
    assert report["holds"] is True
    assert report["diff"]["matched"] == 2
    (model / "weights.bin").write_bytes(b"\x02" * 1000)
    bad = runner.invoke(app, ["verify-signature", str(model), "--signature", str(sig), "--public-key", str(keys[1])])
    assert bad.exit_code == 1


def test_verify_without_trust_material_exits_2(app, model, tmp_path):
    result = CliRunner().invoke(app, ["verify-signature", str(model), "--signature", str(tmp_path / "x.sig")])
    assert result.exit_code == 2


def test_unreadable_key_exits_2(app, model, tmp_path):
    result = CliRunner().invoke(
        app, ["sign", str(model), "--key", str(tmp_path / "missing.pem"), "-o", str(tmp_path / "s")]
    )
    assert result.exit_code == 2


@pytest.mark.skipif(not OMS.is_dir(), reason="OMS interop vectors not found")
def test_legacy_vector_needs_allow_legacy_on_the_command_line(app):
    args = [
        "verify-signature",
        str(OMS / "model"),
        "--signature",
        str(OMS / "sigs" / "crafted-legacy-v0.1.sig"),
        "--public-key",
        str(OMS / "keys" / "p256-public.pem"),
    ]
    assert CliRunner().invoke(app, args).exit_code == 1
    assert CliRunner().invoke(app, [*args, "--allow-legacy"]).exit_code == 0


@pytest.mark.skipif(not OMS.is_dir(), reason="OMS interop vectors not found")
def test_certificate_vector_verifies_with_the_ca_option(app, tmp_path):
    model = tmp_path / "copy"
    shutil.copytree(OMS / "model", model)
    args = [
        "verify-signature",
        str(model),
        "--signature",
        str(OMS / "sigs" / "cert-chain.sig"),
        "--ca",
        str(OMS / "keys" / "pki" / "root-ca.pem"),
    ]
    assert CliRunner().invoke(app, args).exit_code == 0
