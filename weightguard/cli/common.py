"""Shared CLI plumbing: output formats, where output goes, exit codes.

Machine output (JSON, SARIF) goes to stdout or ``--output``; human text goes
to stderr (or to ``--output`` when asked), so the two never mix.
"""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from weightguard.errors import WeightguardError
from weightguard.fsutil import write_atomic

if TYPE_CHECKING:
    from weightguard.report.model import Report

# The renderers (and the pydantic Report model under them) are imported when a report is
# rendered, not when a command module is: ``--help`` and shell completion import every
# command module and use none of them (tests/cli/test_import_budget.py).


class OutputFormat(str, Enum):
    """Output formats every reporting command accepts."""

    TEXT = "text"
    JSON = "json"
    SARIF = "sarif"
    CODEQUALITY = "gitlab-codequality"
    HTML = "html"
    CYCLONEDX = "cyclonedx"


FORMAT_OPTION = typer.Option(OutputFormat.TEXT, "--format", "-f", help="Output format.", case_sensitive=False)
OUTPUT_OPTION = typer.Option(None, "--output", "-o", help="Write the output to this file instead of stdout.")
POLICY_OPTION = typer.Option(
    [],
    "--policy",
    "-p",
    metavar="<path|builtin:NAME>",
    help="Policy file (YAML) or builtin:NAME; repeat to layer overlays in order (later ones override scalars, "
    "extend lists, merge mappings; null resets a key). Default: builtin:default.",
    exists=False,
)
# Registry access for oci:// targets, the same in every command that takes one.
REGISTRY_AUTH_OPTION = typer.Option(
    None, "--registry-auth-file", help="Docker-style config.json (auths) for oci:// targets."
)
INSECURE_REGISTRY_OPTION = typer.Option(
    [], "--insecure-registry", help="HOST:PORT an oci:// target may reach over plain HTTP (repeatable)."
)
REGISTRY_CA_OPTION = typer.Option(None, "--registry-ca-bundle", help="PEM CA bundle for oci:// registries.")


def render(report: Report, fmt: OutputFormat) -> str:
    """Render the report in ``fmt``."""
    if fmt is OutputFormat.JSON:
        from weightguard.report.json_format import render_json

        return render_json(report)
    if fmt is OutputFormat.SARIF:
        from weightguard.report.sarif import render_sarif

        # %SRCROOT% is where weightguard runs: the checkout in CI, so code scanning finds the files.
        return render_sarif(report, root=Path.cwd())
    if fmt is OutputFormat.CODEQUALITY:
        from weightguard.report.codequality import render_codequality

        return render_codequality(report)
    if fmt is OutputFormat.HTML:
        from weightguard.report.html import render_html  # jinja2 is only imported when HTML is asked for

        return render_html(report)
    if fmt is OutputFormat.CYCLONEDX:
        from weightguard.report.cyclonedx import render_cyclonedx  # the [bom] extra, only when asked for

        return render_cyclonedx(report)
    from weightguard.report.text import render_text

    return render_text(report)


def emit(body: str, line: str, output: Path | None, *, for_people: bool) -> None:
    """Write ``body`` to ``output`` (atomically) or to the terminal, and the summary ``line`` on stderr.

    Text meant for people goes to stderr in full; machine formats go to stdout, so that
    ``> report.json`` captures exactly the document.
    """
    if output is not None:
        write_atomic(output, body)
        err(f"{line}; report written to {output}")
    elif for_people:
        sys.stderr.write(body)
    else:
        sys.stdout.write(body)
        sys.stdout.flush()
        err(line)


def emit_report(report: Report, fmt: OutputFormat, output: Path | None) -> None:
    """Write the report where it belongs and a one-line summary for people."""
    body = render(report, fmt)
    if output is None and fmt is OutputFormat.TEXT and sys.stderr.isatty() and "NO_COLOR" not in os.environ:
        from weightguard.report.text import render_text

        body = render_text(report, color=True)
    from weightguard.report.model import verdict_label

    line = f"weightguard: {verdict_label(report)} (exit {report.exit_code})"
    emit(body, line, output, for_people=fmt is OutputFormat.TEXT)


def err(message: str) -> None:
    """Print a human message to stderr."""
    sys.stderr.write(message + "\n")


def fail(exc: WeightguardError) -> typer.Exit:
    """Report ``exc`` on stderr and return the Exit to raise."""
    err(f"weightguard: error: {exc.diagnostics()}")
    return typer.Exit(exc.exit_code)
