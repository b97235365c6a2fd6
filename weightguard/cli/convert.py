"""``weightguard convert``: approved pickle checkpoints to safetensors, with a proof.

The conversion itself lives in :mod:`weightguard.convert.run`; this module
resolves the target, runs it and renders the result (JSON on stdout, text on
stderr). It never loads anything itself.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from weightguard.cli.common import POLICY_OPTION, err, fail
from weightguard.cli.progress import QUIET_OPTION, progress_display, wanted
from weightguard.errors import MissingExtraError, WeightguardError

if TYPE_CHECKING:
    from weightguard.convert.run import ConversionResult
    from weightguard.policy.load import LoadedPolicy


class ConvertFormat(str, Enum):
    """Output formats of ``convert``."""

    TEXT = "text"
    JSON = "json"


def run_conversion(
    target: str,
    output: Path,
    loaded: LoadedPolicy,
    sign_key: Path | None = None,
    *,
    weight_keys: Sequence[str] = (),
    partial: bool = True,
) -> ConversionResult:
    """Resolve ``target`` and convert it into ``output`` under ``loaded`` (the command's whole job).

    Each weight file is converted or refused on its own (``partial``): the files that convert are
    written, the refused ones are not, and the proof names each refusal with its reason.

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
    return convert_model(
        files, formats, output, loaded, scanner, sign_key=sign_key, weight_keys=weight_keys, partial=partial
    )


def _render_json(result: ConversionResult) -> str:
    findings = [
        {"code": f.code, "severity": f.severity.value, "path": f.path, "member": f.member, "message": f.message}
        for f in result.findings
    ]
    body = {
        "converted": result.converted,
        "written": result.written,
        "proof": result.proof.model_dump(mode="json"),
        "findings": findings,
    }
    return json.dumps(body, indent=2) + "\n"


def _render_text(result: ConversionResult, output: Path) -> None:
    proof = result.proof
    for c in proof.files:
        entry = f"; weights from {c.unwrapped!r} ({c.layout}), left out: {', '.join(c.left_out) or 'nothing'}"
        err(f"converted {c.source} -> {c.output}: {c.compared} tensor name(s) identical{entry if c.unwrapped else ''}")
    for r in proof.refused:
        err(f"refused {r.path} ({r.code}): {r.reason}")
        if r.hint:
            err(f"  hint: {r.hint}")
    if result.converted:
        total = sum(c.compared for c in proof.files)
        err(f"converted {len(proof.files)} file(s) into {output}; {total} tensor name(s) reloaded and identical")
        if proof.signature:
            err(f"signed: {proof.signature}")
    elif result.written:
        err(
            f"weightguard: converted {len(proof.files)} file(s) into {output}; {len(proof.refused)} refused, "
            "nothing written for them (listed in the proof)"
        )
    else:
        err("weightguard: conversion refused; nothing was written")


def convert_command(
    target: str = typer.Argument(..., help="Model directory or file."),
    output: Path = typer.Option(..., "--output", "-o", help="Output directory (must not hold the converted names)."),  # noqa: B008
    policy: list[Path] = POLICY_OPTION,
    key: list[str] | None = typer.Option(  # noqa: B008
        None,
        "--key",
        "-k",
        help="Entry of a training checkpoint holding the weights (repeatable, in order of preference; "
        "dotted for nested dicts, e.g. model.state_dict). Tried before spec.conversion.weight_keys.",
    ),
    all_or_nothing: bool = typer.Option(
        False, "--all-or-nothing", help="Write nothing unless every file converts (always so with --sign)."
    ),
    sign: Path | None = typer.Option(None, "--sign", help="PEM private key: sign the output as an OMS signature."),
    fmt: ConvertFormat = typer.Option(
        ConvertFormat.TEXT, "--format", "-f", help="Output format (json goes to stdout)."
    ),  # noqa: B008
    quiet: bool = QUIET_OPTION,
) -> None:
    """Convert every approved pickle-based weight file, file by file.

    Exit 0: every file converted. Exit 1: at least one file was refused (each is named with its
    reason and a hint; the files that converted are written unless --all-or-nothing or --sign).
    Exit 2: the conversion could not run (target, output folder, key, missing torch).
    """
    from weightguard.convert.interrupt import stop_cleanly_on_signals
    from weightguard.policy.load import load_policy

    try:
        # SIGTERM/SIGINT exit 143/130 through the conversion's clean-up (no staging folder left).
        with stop_cleanly_on_signals(), progress_display(wanted(quiet)):
            result = run_conversion(
                target, output, load_policy(policy), sign, weight_keys=key or (), partial=not all_or_nothing
            )
    except WeightguardError as exc:
        raise fail(exc) from exc
    if fmt is ConvertFormat.JSON:
        sys.stdout.write(_render_json(result))
        sys.stdout.flush()
    for f in result.findings:
        err(f"{f.code} {f.severity.value} {f.location}: {f.message}")
    _render_text(result, output)
    raise typer.Exit(0 if result.converted else 1)


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""
    app.command("convert")(convert_command)
