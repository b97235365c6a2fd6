"""``weightguard rules``: list every rule weightguard can report."""

from __future__ import annotations

import json
import sys

import typer


def rules_command(
    as_json: bool = typer.Option(False, "--json", help="Print the rules as JSON."),
) -> None:
    """List rule codes with their severity and a one-line explanation."""
    from weightguard.catalog import all_rules

    rules = all_rules()
    if as_json:
        payload = [
            {
                "code": r.code,
                "title": r.title,
                "severity": r.severity.value,
                "kind": r.kind.value,
                "summary": r.summary,
                "help": r.help,
            }
            for r in rules
        ]
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return
    for r in rules:
        sys.stdout.write(f"{r.code:<14} {r.severity.value:<8} {r.kind.value:<8} {r.title}: {r.summary}\n")


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""
    app.command("rules")(rules_command)
