"""`weightguard verify-many` end to end through the command line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import typer
from catalogue.builders import catalogue_dir, safetensors_model
from typer.testing import CliRunner

from weightguard.cli import verify_many


def _app() -> typer.Typer:
    # The lead registers the command in weightguard.cli.COMMANDS; this test builds its own app.
    app = typer.Typer()
    verify_many.register(app)

    @app.callback()
    def _root() -> None:
        """Test app."""

    return app


def test_an_all_clean_catalogue_exits_0_and_a_second_run_reuses_everything(tmp_path: Path) -> None:
    for i in range(2):
        safetensors_model(tmp_path / "models" / f"m{i}", i)
    args = [
        "verify-many",
        str(tmp_path / "models"),
        "--database",
        f"sqlite:///{tmp_path}/r.db",
        "--workers",
        "2",
        "--format",
        "json",
    ]
    first = CliRunner().invoke(_app(), args)
    assert first.exit_code == 0, first.output
    second = CliRunner().invoke(_app(), [*args, "--output", str(tmp_path / "out.json")])
    assert second.exit_code == 0
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["counts"]["approved"] == 2 and report["stats"]["units_executed"] == 0


def test_a_catalogue_with_a_rejected_model_exits_1_with_sarif(tmp_path: Path) -> None:
    catalogue_dir(tmp_path / "models", clean=1)
    result = CliRunner().invoke(
        _app(),
        [
            "verify-many",
            str(tmp_path / "models"),
            "--database",
            f"sqlite:///{tmp_path}/r.db",
            "-f",
            "sarif",
            "-o",
            str(tmp_path / "out.sarif"),
        ],
    )
    assert result.exit_code == 1
    assert json.loads((tmp_path / "out.sarif").read_text())["version"] == "2.1.0"


def test_an_unreadable_catalogue_exits_2_with_a_message(tmp_path: Path) -> None:
    result = CliRunner().invoke(_app(), ["verify-many", str(tmp_path / "missing.txt")])
    assert result.exit_code == 2 and "no such catalogue" in result.output


def test_format_html_writes_one_self_contained_page_with_every_model(tmp_path: Path) -> None:
    catalogue_dir(tmp_path / "models", clean=1)
    out = tmp_path / "catalogue.html"
    result = CliRunner().invoke(
        _app(),
        [
            "verify-many",
            str(tmp_path / "models"),
            "--database",
            f"sqlite:///{tmp_path}/r.db",
            "-f",
            "html",
            "-o",
            str(out),
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 1, result.output
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page
    assert re.search(r"<h1>weightguard verify-many: <span[^>]*>REJECTED</span>", page)
    for name in ("clean-0", "evil", "odd"):
        assert name in page
