"""``weightguard policy check|schema``: validate a policy file, print its JSON Schema."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from weightguard.cli.common import err, fail
from weightguard.errors import WeightguardError

policy_app = typer.Typer(help="Validate policies and print the policy schema.", no_args_is_help=True)


@policy_app.command("check")
def check_command(path: Path = typer.Argument(..., help="Policy file to validate.")) -> None:  # noqa: B008
    """Validate a policy file; exit 0 when valid, 2 with file:line: field: problem otherwise."""
    from weightguard.policy.load import load_policy

    try:
        loaded = load_policy(path)
    except WeightguardError as exc:
        raise fail(exc) from exc
    err(f"{path}: valid policy {loaded.name!r} (sha256 {loaded.sha256})")


@policy_app.command("schema")
def schema_command() -> None:
    """Print the policy's JSON Schema (for editors)."""
    from weightguard.policy.schema import Policy

    schema = Policy.model_json_schema(by_alias=True)
    sys.stdout.write(json.dumps(schema, indent=2) + "\n")


def register(app: typer.Typer) -> None:
    """Add the command group to ``app``."""
    app.add_typer(policy_app, name="policy")
