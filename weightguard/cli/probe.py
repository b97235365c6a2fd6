"""``weightguard probe``: run the backdoor trigger-probe suite on a Hugging Face model directory."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path

import typer

from weightguard.cli.common import POLICY_OPTION, err, fail
from weightguard.errors import WeightguardError


class ProbeFormat(str, Enum):
    """Output formats of ``probe``."""

    TEXT = "text"
    JSON = "json"


class DeviceChoice(str, Enum):
    """Where the probes run."""

    AUTO = "auto"
    CUDA = "cuda"
    CPU = "cpu"


def probe_command(
    model_dir: Path = typer.Argument(..., help="Model directory: config.json, *.safetensors, tokenizer/processor."),  # noqa: B008
    device: DeviceChoice | None = typer.Option(None, "--device", help="auto (default from policy), cuda or cpu."),  # noqa: B008
    budget: float | None = typer.Option(None, "--budget", min=1.0, help="Time budget in seconds (default: policy)."),
    fmt: ProbeFormat = typer.Option(ProbeFormat.TEXT, "--format", "-f", case_sensitive=False, help="Output format."),  # noqa: B008
    policy: Path | None = POLICY_OPTION,
) -> None:
    """Probe a model for backdoor triggers; exit 0 pass, 1 review or block, 2 not probed."""
    from weightguard.policy.load import load_policy
    from weightguard.probes.report import render_text
    from weightguard.probes.suite import probe_directory

    try:
        loaded = load_policy(policy)
        report = probe_directory(
            model_dir, loaded.policy.spec.probes, device=device.value if device else None, budget=budget
        )
    except WeightguardError as exc:
        raise fail(exc) from exc
    if fmt is ProbeFormat.JSON:
        sys.stdout.write(report.model_dump_json(indent=2) + "\n")
        err(f"weightguard probe: {report.verdict} (exit {report.exit_code})")
    else:
        sys.stderr.write(render_text(report))
    raise typer.Exit(report.exit_code)


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""
    app.command("probe")(probe_command)
