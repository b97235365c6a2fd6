"""``weightguard scan``: detect formats and analyse files statically."""

from __future__ import annotations

from pathlib import Path

import typer

from weightguard.cli.common import FORMAT_OPTION, OUTPUT_OPTION, POLICY_OPTION, OutputFormat, emit_report, fail
from weightguard.errors import WeightguardError


def scan_command(
    paths: list[Path] = typer.Argument(..., help="Files or directories (scanned recursively)."),  # noqa: B008
    fmt: OutputFormat = FORMAT_OPTION,
    output: Path | None = OUTPUT_OPTION,
    policy: list[Path] = POLICY_OPTION,
) -> None:
    """Scan model files; exit 0 nothing blocking, 1 blocking findings, 2 could not complete."""
    from weightguard.api import scan
    from weightguard.policy.load import load_policy

    try:
        loaded = load_policy(policy)
        report = scan(paths, loaded, command="scan")
        emit_report(report, fmt, output)
    except WeightguardError as exc:
        raise fail(exc) from exc
    raise typer.Exit(report.exit_code)


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""
    app.command("scan")(scan_command)
