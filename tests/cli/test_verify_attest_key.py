"""Issue 16: `verify --attest KEY` checks its key before any work; an unusable key exits 2, not 1."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from typer.testing import CliRunner

import weightguard.pipeline
from weightguard.cli import verify as verify_cli


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Test app."""

    verify_cli.register(app)
    return app


@pytest.fixture
def model(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    root.mkdir()
    (root / "config.json").write_text("{}")
    return root


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("verify ran although the key could not be used")

    monkeypatch.setattr(weightguard.pipeline, "verify", refuse)


@pytest.mark.usefixtures("no_work")
def test_issue_16_a_missing_attestation_key_exits_2_before_any_work(
    app: typer.Typer, model: Path, tmp_path: Path
) -> None:
    key = tmp_path / "missing.pem"
    result = CliRunner().invoke(app, ["verify", str(model), "--attest", str(key)])
    assert result.exit_code == 2, result.output
    assert f"cannot read the attestation key {key}" in result.output


@pytest.mark.usefixtures("no_work")
def test_issue_16_an_unreadable_attestation_key_exits_2(app: typer.Typer, model: Path, tmp_path: Path) -> None:
    key = tmp_path / "key-dir.pem"
    key.mkdir()  # unreadable as a file, whoever runs the test (root ignores file modes)
    result = CliRunner().invoke(app, ["verify", str(model), "--attest", str(key)])
    assert result.exit_code == 2, result.output
    assert str(key) in result.output


@pytest.mark.usefixtures("no_work")
def test_issue_16_a_file_that_is_no_private_key_exits_2(app: typer.Typer, model: Path, tmp_path: Path) -> None:
    key = tmp_path / "junk.pem"
    key.write_text("not a key\n")
    result = CliRunner().invoke(app, ["verify", str(model), "--attest", str(key)])
    assert result.exit_code == 2, result.output
    assert f"attestation key {key}" in result.output


def test_a_usable_attestation_key_signs_the_approval(app: typer.Typer, model: Path, tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    private = ec.generate_private_key(ec.SECP256R1())
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    out = tmp_path / "att.json"
    result = CliRunner().invoke(app, ["verify", str(model), "--attest", str(key), "--attestation", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file()
