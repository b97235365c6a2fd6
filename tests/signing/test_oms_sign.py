"""weightguard-made OMS signatures are accepted by the stock model_signing tool (skipped when not installed)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from weightguard.signing.keys import public_pem
from weightguard.signing.model_signing import sign_model

OMS = Path(__file__).resolve().parents[1] / "data" / "interop" / "oms"  # copied from ../shared/interop/oms


def _model_signing_cli() -> list[str] | None:
    exe = shutil.which("model_signing") or str(Path(sys.executable).parent / "model_signing")
    if not Path(exe).exists():
        return None
    probe = subprocess.run([exe, "--help"], capture_output=True, text=True, check=False)  # noqa: S603
    return [exe] if probe.returncode == 0 else None


CLI = _model_signing_cli()
needs_cli = pytest.mark.skipif(
    CLI is None, reason="model_signing (pip install model-signing pyopenssl) is not installed"
)


def _run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert CLI is not None
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120, check=False)  # noqa: S603


@needs_cli
@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1()], ids=["p256", "p384"])
def test_stock_model_signing_verifies_a_weightguard_key_signature(tmp_path, model_dir, hasher, curve):
    key = ec.generate_private_key(curve)
    pub = tmp_path / "pub.pem"
    pub.write_bytes(public_pem(key.public_key()))
    sig = tmp_path / "model.sig"
    sig.write_bytes(sign_model(model_dir, key, signature_path=sig, hasher=hasher))
    ok = _run("verify", "key", model_dir, "--signature", sig, "--public_key", pub, cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    (model_dir / "config.json").write_text('{"hidden": 9}\n')
    tampered = _run("verify", "key", model_dir, "--signature", sig, "--public_key", pub, cwd=tmp_path)
    assert tampered.returncode != 0


@needs_cli
def test_stock_model_signing_verifies_a_signature_stored_inside_the_model(tmp_path, model_dir, hasher, p256_key):
    pub = tmp_path / "pub.pem"
    pub.write_bytes(public_pem(p256_key.public_key()))
    sig = model_dir / "model.sig"
    sig.write_bytes(sign_model(model_dir, p256_key, signature_path=sig, ignore_paths=["README.md"], hasher=hasher))
    (model_dir / "README.md").write_text("edited after signing\n")
    ok = _run("verify", "key", model_dir, "--signature", sig, "--public_key", pub, cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr


@needs_cli
@pytest.mark.skipif(not (OMS / "keys" / "pki").is_dir(), reason="OMS interop PKI not found")
def test_stock_model_signing_verifies_a_weightguard_certificate_signature(tmp_path, model_dir, hasher):
    pki = OMS / "keys" / "pki"
    key = serialization.load_pem_private_key((pki / "leaf-private.pem").read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    chain = [x509.load_pem_x509_certificate((pki / n).read_bytes()) for n in ("leaf.pem", "intermediate-ca.pem")]
    sig = tmp_path / "model.sig"
    sig.write_bytes(sign_model(model_dir, key, chain, signature_path=sig, hasher=hasher))
    ok = _run(
        "verify", "certificate", model_dir, "--signature", sig, "--certificate_chain", pki / "root-ca.pem", cwd=tmp_path
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
