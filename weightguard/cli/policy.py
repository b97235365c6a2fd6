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
def check_command(
    paths: list[Path] = typer.Argument(..., help="Policy file(s); several are layered in order, as --policy does."),  # noqa: B008
    show: bool = typer.Option(False, "--show", help="Print the (merged) policy as YAML on stdout, defaults left out."),
) -> None:
    """Validate a policy, or the composition of several layers; exit 0 when valid, 2 with file:line: field: problem."""
    from weightguard.policy.load import load_policy

    try:
        loaded = load_policy(paths)
    except WeightguardError as exc:
        raise fail(exc) from exc
    for layer in loaded.layers if len(loaded.layers) > 1 else ():
        err(f"  layer {layer.origin} (sha256 {layer.sha256})")
    err(f"{loaded.origin}: valid policy {loaded.name!r} (sha256 {loaded.sha256})")
    if show:
        import yaml

        document = loaded.policy.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        sys.stdout.write(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))


@policy_app.command("schema")
def schema_command() -> None:
    """Print the policy's JSON Schema (for editors)."""
    from weightguard.policy.schema import Policy

    schema = Policy.model_json_schema(by_alias=True)
    sys.stdout.write(json.dumps(schema, indent=2) + "\n")


def register(app: typer.Typer) -> None:
    """Add the command group to ``app``."""
    app.add_typer(policy_app, name="policy")
