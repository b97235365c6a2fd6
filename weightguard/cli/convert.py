"""``weightguard convert``: approved pickle checkpoints to safetensors, with a proof."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from weightguard.cli.common import POLICY_OPTION, err, fail
from weightguard.errors import MissingExtraError, WeightguardError


def convert_command(
    target: str = typer.Argument(..., help="Model directory or file."),
    output: Path = typer.Option(..., "--output", "-o", help="Output directory (must not hold the converted names)."),  # noqa: B008
    policy: Path | None = POLICY_OPTION,
    sign: Path | None = typer.Option(None, "--sign", help="PEM private key: sign the output as an OMS signature."),
    as_json: bool = typer.Option(False, "--json", help="Print the conversion proof as JSON."),
) -> None:
    """Convert every approved pickle-based weight file; exit 0 converted, 1 refused, 2 could not."""
    from weightguard.api import make_scanner
    from weightguard.pipeline import resolve_target
    from weightguard.policy.load import load_policy

    try:
        try:
            from weightguard.convert.run import convert_model
        except ImportError as exc:
            raise MissingExtraError("torch", "conversion") from exc
        loaded = load_policy(policy)
        resolved = resolve_target(target, loaded)
        scanner = make_scanner(loaded)
        formats = {f.relpath: scanner.scan(f).format for f in resolved.listing.files}
        result = convert_model(list(resolved.listing.files), formats, output, loaded, scanner, sign_key=sign)
    except WeightguardError as exc:
        raise fail(exc) from exc
    findings = [
        {"code": f.code, "path": f.path, "message": f.message, "severity": f.severity.value} for f in result.findings
    ]
    if as_json:
        body = {"converted": result.converted, "proof": result.proof.model_dump(mode="json"), "findings": findings}
        sys.stdout.write(json.dumps(body, indent=2) + "\n")
    for f in result.findings:
        err(f"{f.code} {f.severity.value} {f.location}: {f.message}")
    if result.converted:
        total = sum(c.compared for c in result.proof.files)
        err(f"converted {len(result.proof.files)} file(s) into {output}; {total} tensor(s) reloaded and identical")
    else:
        err("weightguard: conversion refused; nothing was written")
    raise typer.Exit(0 if result.converted else 1)


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""
    app.command("convert")(convert_command)
