"""``weightguard render``: re-render a saved JSON report in another format.

Renderers are pure functions of the Report, so CI can verify once and emit
SARIF, code-quality and text from the same JSON without running twice.
"""

from __future__ import annotations

from pathlib import Path

import typer

from weightguard.cli.common import FORMAT_OPTION, OUTPUT_OPTION, OutputFormat, emit_report, fail
from weightguard.errors import UsageError, WeightguardError


def render_command(
    report_file: Path = typer.Argument(..., help="A report written with --format json."),  # noqa: B008
    fmt: OutputFormat = FORMAT_OPTION,
    output: Path | None = OUTPUT_OPTION,
) -> None:
    """Render a saved JSON report; exits with the report's own exit code."""
    from pydantic import ValidationError

    from weightguard.report.model import Report

    try:
        try:
            report = Report.model_validate_json(report_file.read_bytes())
        except OSError as exc:
            raise UsageError(f"cannot read {report_file}: {exc.strerror or exc}") from exc
        except ValidationError as exc:
            raise UsageError(f"{report_file} is not a weightguard JSON report: {exc.error_count()} problem(s)") from exc
        emit_report(report, fmt, output)
    except WeightguardError as exc:  # a bad file, or a format whose extra is missing
        raise fail(exc) from exc
    raise typer.Exit(report.exit_code)


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""
    app.command("render")(render_command)
