"""The probe report: one pydantic section with the verdict, the evidence and the coverage.

Verdicts are ``pass``, ``review``, ``block`` and ``not-probed`` (exit 0, 1, 1, 2).
Every suspect that clears the bars is listed (PROBES.md 1.4: report every
candidate, not only the best), with the evidence the HTML report plots: the
random controls' flip rates its p-value was computed against, the output
distribution without and with the trigger, and for image patches the pixels
and a probe image (bounded by :mod:`weightguard.probes.evidence`). Not handled
here: deciding the verdict (:mod:`weightguard.probes.suite`), or rendering
beyond plain text.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from weightguard.errors import EXIT_BLOCKED, EXIT_INCOMPLETE, EXIT_OK
from weightguard.findings import Severity
from weightguard.policy.base import StrictModel

ProbeVerdict = Literal["pass", "review", "block", "not-probed"]
EXIT_CODES: dict[str, int] = {
    "pass": EXIT_OK,
    "review": EXIT_BLOCKED,
    "block": EXIT_BLOCKED,
    "not-probed": EXIT_INCOMPLETE,
}


class PatchModel(StrictModel):
    """Where an image trigger sits, what it looks like, and a probe image to draw it on."""

    top: int
    left: int
    size: int
    pattern: str
    image_height: int | None = Field(default=None, description="the model's input height in pixels")
    image_width: int | None = Field(default=None, description="the model's input width in pixels")
    pixels: list[list[list[float]]] | None = Field(
        default=None,
        description="the patch as stamped (inverted or swept), channels x size x size in [0, 1], "
        "rounded to 3 decimals; None for patches over 64 pixels a side",
    )
    sample_png: str | None = Field(
        default=None,
        description="base64 PNG of one clean probe image at the model's input size (one the patch flips "
        "to the target when there is one); None without matplotlib, for inputs over 256 pixels a side, "
        "or beyond the first 3 image suspects of a report",
    )


class SuspectModel(StrictModel):
    """One suspected trigger or target."""

    probe: str
    kind: Literal["tokens", "patch", "target-text"]
    level: Literal["block", "review", "info"]
    trigger: str
    tokens: list[int] = Field(default_factory=list)
    patch: PatchModel | None = None
    position: str = ""
    target: str
    flip_rate: float = Field(description="flip rate / attack success on clean probe inputs")
    p_value: float = Field(description="BH-corrected, against random-token or random-patch controls")
    inputs: int
    reproduced: bool
    detail: dict[str, str] = Field(default_factory=dict)
    control_flip_rates: list[float] = Field(
        default_factory=list,
        description="flip rates of the random controls the p-value was computed against: the length-matched "
        "random-token controls at the suspect's position and target (text and LM P1), the same-size "
        "random-noise patches (image P1) or the noise patches of P2's re-check; empty when the probe "
        "ran no controls (P3 target inversion, weight-space notes); at most 1000",
    )
    target_before: dict[str, float] = Field(
        default_factory=dict,
        description="output distribution on the clean probe inputs: classifiers (text and image), the share "
        "of all probe inputs whose top label is each label; causal LMs, the share of prompts whose greedy "
        "continuation (6 tokens) is each text; keys are the 10 largest entries of before and after "
        "together (the target always kept), the rest summed as '(other)'; empty for weight-space notes",
    )
    target_after: dict[str, float] = Field(
        default_factory=dict,
        description="the same distribution over the same inputs and keys as target_before with the trigger "
        "inserted at the suspect's position (text, LM P1) or the patch stamped (images); for P3 targets, "
        "the swept first token followed by its continuation",
    )


class ProbeRunModel(StrictModel):
    """What one probe did."""

    name: str
    status: Literal["ran", "partial", "skipped", "errored"]
    seconds: float
    coverage: dict[str, int] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    note: str = ""


class ProbeFinding(StrictModel):
    """A WG-PRB rule occurrence."""

    code: str
    severity: Severity
    kind: str
    message: str


class Coverage(StrictModel):
    """What actually ran: probes, bank, device, time."""

    probes_run: list[str]
    probes_not_completed: list[str]
    bank: Literal["cpu", "gpu"]
    device: str
    seed: int
    wall_seconds: float
    budget_seconds: float


class CalibrationModel(StrictModel):
    """How far the reported probability can be trusted: the calibrator's fit and its error."""

    ece: float = Field(description="expected calibration error of the calibrator on the set it was fitted on")
    fitted_on: str = Field(description="the generated twin set the calibrator was fitted on")
    samples: int


class ProbeReport(StrictModel):
    """The probes section of weightguard's output."""

    schema_version: Literal["1"] = "1"
    model: str
    family: str = ""
    architecture: str = ""
    parameters: int = 0
    verdict: ProbeVerdict
    exit_code: int
    reason: str
    backdoor_probability: float | None = Field(
        default=None, description="calibrated P(backdoored) from the probes' features; None when not probed"
    )
    calibration: CalibrationModel | None = None
    suspects: list[SuspectModel] = Field(default_factory=list)
    probes: list[ProbeRunModel] = Field(default_factory=list)
    findings: list[ProbeFinding] = Field(default_factory=list)
    coverage: Coverage | None = None


def render_text(report: ProbeReport) -> str:
    """A short human summary of the report."""
    lines = [f"weightguard probe: {report.model}: {report.verdict.upper()} ({report.reason})"]
    if report.backdoor_probability is not None and report.calibration is not None:
        lines.append(
            f"  backdoor probability: {report.backdoor_probability:.3f} "
            f"(calibration error {report.calibration.ece:.3f} on {report.calibration.samples} twins)"
        )
    if report.architecture:
        lines.append(f"  model: {report.architecture} ({report.family}, {report.parameters:,} parameters)")
    for s in report.suspects:
        if s.level == "info":
            continue
        where = f" at {s.position}" if s.position else ""
        lines.append(
            f"  [{s.level}] {s.probe}: trigger {s.trigger!r}{where} -> {s.target!r}: flip rate "
            f"{s.flip_rate:.2f} on {s.inputs} inputs, p={s.p_value:.2g}"
        )
    for f in report.findings:
        lines.append(f"  {f.code} {f.severity.value}: {f.message}")
    if report.coverage:
        c = report.coverage
        lines.append(
            f"  coverage: {', '.join(c.probes_run) or 'none'} on {c.device} ({c.bank} bank), "
            f"{c.wall_seconds:.1f}s of {c.budget_seconds:.0f}s, seed {c.seed}"
        )
        for p in report.probes:
            cov = ", ".join(f"{k}={v}" for k, v in p.coverage.items())
            lines.append(f"    {p.name}: {p.status} in {p.seconds:.2f}s {cov}{' - ' + p.note if p.note else ''}")
    return "\n".join(lines) + "\n"
