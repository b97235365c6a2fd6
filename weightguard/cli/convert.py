"""``weightguard convert``: approved pickle checkpoints to safetensors, with a proof.

The conversion itself lives in :mod:`weightguard.convert.run`; this module
resolves the target, runs it and renders the result (JSON on stdout, text on
stderr). It never loads anything itself.
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from weightguard.cli.common import POLICY_OPTION, err, fail
from weightguard.errors import MissingExtraError, WeightguardError

if TYPE_CHECKING:
    from weightguard.convert.run import ConversionResult
    from weightguard.policy.load import LoadedPolicy


class ConvertFormat(str, Enum):
    """Output formats of ``convert``."""

    TEXT = "text"
    JSON = "json"


def run_conversion(target: str, output: Path, loaded: LoadedPolicy, sign_key: Path | None = None) -> ConversionResult:
    """Resolve ``target`` and convert it into ``output`` under ``loaded`` (the command's whole job).

    Raises:
        MissingExtraError: torch is not installed.
        WeightguardError: the target, the output directory or the signing key cannot be used.
    """
    from weightguard.api import make_scanner
    from weightguard.pipeline import resolve_target

    try:
        from weightguard.convert.planner import formats_of
        from weightguard.convert.run import convert_model
    except ImportError as exc:  # torch / safetensors live in the [torch] extra
        raise MissingExtraError("torch", "conversion") from exc
    resolved = resolve_target(target, loaded)
    files = list(resolved.listing.files)
    scanner = make_scanner(loaded)
    formats = formats_of(files, scanner.settings.limits)
    return convert_model(files, formats, output, loaded, scanner, sign_key=sign_key)


def _render_json(result: ConversionResult) -> str:
    findings = [
        {"code": f.code, "severity": f.severity.value, "path": f.path, "member": f.member, "message": f.message}
        for f in result.findings
    ]
    body = {"converted": result.converted, "proof": result.proof.model_dump(mode="json"), "findings": findings}
    return json.dumps(body, indent=2) + "\n"


def convert_command(
    target: str = typer.Argument(..., help="Model directory or file."),
    output: Path = typer.Option(..., "--output", "-o", help="Output directory (must not hold the converted names)."),  # noqa: B008
    policy: Path | None = POLICY_OPTION,
    sign: Path | None = typer.Option(None, "--sign", help="PEM private key: sign the output as an OMS signature."),
    fmt: ConvertFormat = typer.Option(
        ConvertFormat.TEXT, "--format", "-f", help="Output format (json goes to stdout)."
    ),  # noqa: B008
) -> None:
    """Convert every approved pickle-based weight file; exit 0 converted, 1 refused, 2 could not."""
    from weightguard.convert.interrupt import stop_cleanly_on_signals
    from weightguard.policy.load import load_policy

    try:
        # SIGTERM/SIGINT exit 143/130 through the conversion's clean-up (no staging folder left).
        with stop_cleanly_on_signals():
            result = run_conversion(target, output, load_policy(policy), sign)
    except WeightguardError as exc:
        raise fail(exc) from exc
    if fmt is ConvertFormat.JSON:
        sys.stdout.write(_render_json(result))
        sys.stdout.flush()
    for f in result.findings:
        err(f"{f.code} {f.severity.value} {f.location}: {f.message}")
    if result.converted:
        total = sum(c.compared for c in result.proof.files)
        err(f"converted {len(result.proof.files)} file(s) into {output}; {total} tensor name(s) reloaded and identical")
        if result.proof.signature:
            err(f"signed: {result.proof.signature}")
    else:
        err("weightguard: conversion refused; nothing was written")
    raise typer.Exit(0 if result.converted else 1)


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""
    app.command("convert")(convert_command)
