"""``weightguard convert``: exit codes, JSON on stdout, refusals named on stderr."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

torch = pytest.importorskip("torch")

from weightguard.cli import convert as convert_cli  # noqa: E402


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Test root (makes ``convert`` a subcommand)."""

    convert_cli.register(app)
    return app


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_an_approved_checkpoint_converts_with_exit_0_and_a_json_proof(app: typer.Typer, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    torch.save({"w": torch.arange(4.0)}, src / "pytorch_model.bin")
    result = CliRunner().invoke(app, ["convert", str(src), "-o", str(tmp_path / "out"), "--format", "json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["converted"] is True
    assert body["proof"]["files"][0]["output"] == "model.safetensors"
    assert body["proof"]["files"][0]["compared"] == 1
    assert "1 tensor name(s) reloaded and identical" in result.stderr


def test_a_malicious_checkpoint_exits_1_naming_the_findings_and_runs_nothing(app: typer.Typer, tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    src = tmp_path / "src"
    src.mkdir()
    torch.save({"x": _Payload(marker)}, src / "pytorch_model.bin", pickle_module=pickle)
    result = CliRunner().invoke(app, ["convert", str(src), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1, result.output
    assert "WG-CNV-001" in result.stderr and "WG-PKL-" in result.stderr
    assert "nothing was written" in result.stderr
    assert result.stdout == ""
    assert not marker.exists()


def test_a_missing_target_exits_2(app: typer.Typer, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["convert", str(tmp_path / "nope"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
