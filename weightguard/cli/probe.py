"""``weightguard probe``: run the backdoor trigger-probe suite on a Hugging Face model directory."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from weightguard.cli.common import OUTPUT_OPTION, POLICY_OPTION, emit, fail
from weightguard.cli.progress import QUIET_OPTION, progress_display, wanted
from weightguard.errors import WeightguardError


class ProbeFormat(str, Enum):
    """Output formats of ``probe``."""

    TEXT = "text"
    JSON = "json"
    HTML = "html"


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
    policy: list[Path] = POLICY_OPTION,
    output: Path | None = OUTPUT_OPTION,
    quiet: bool = QUIET_OPTION,
) -> None:
    """Probe a model for backdoor triggers; exit 0 pass, 1 review or block, 2 not probed."""
    from weightguard.policy.load import load_policy
    from weightguard.probes.report import render_text
    from weightguard.probes.suite import probe_directory

    try:
        loaded = load_policy(policy)
        with progress_display(wanted(quiet)):
            report = probe_directory(
                model_dir, loaded.policy.spec.probes, device=device.value if device else None, budget=budget
            )
    except WeightguardError as exc:
        raise fail(exc) from exc
    line = f"weightguard probe: {report.verdict} (exit {report.exit_code})"
    if fmt is ProbeFormat.TEXT:
        body = render_text(report)
    elif fmt is ProbeFormat.JSON:
        body = report.model_dump_json(indent=2) + "\n"
    else:
        from weightguard.pipeline import probe_only_report
        from weightguard.report.html import render_html  # jinja2 and matplotlib only when HTML is asked for

        body = render_html(probe_only_report(report, str(model_dir), loaded))
    emit(body, line, output, for_people=fmt is ProbeFormat.TEXT)
    raise typer.Exit(report.exit_code)


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""
    app.command("probe")(probe_command)
