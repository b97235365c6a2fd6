"""Assemble a :class:`Report` from scan results and the policy's judgement.

Pure: the clock's reading and the tool version are passed in. The verdict
fails closed: any error or skipped analysis makes the run ``incomplete``
unless a blocking finding already makes it ``rejected``. Each stage's status
is judged here too, by the same gate and the same rule as the verdict: a
stage fails only on findings the policy blocks on; findings below the gate
are counted as the stage's notes (issue 18: "integrity failed" next to
APPROVED for a correctly signed model was a lie), so the stages shown always
agree with the verdict.
Not handled here: rendering (text, JSON, SARIF).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from weightguard.analysis.scanner import FileScan
from weightguard.catalog import rule_for
from weightguard.errors import EXIT_BLOCKED, EXIT_INCOMPLETE, EXIT_OK
from weightguard.findings import Finding, RuleKind
from weightguard.formats.interface import Confidence
from weightguard.policy.load import LoadedPolicy
from weightguard.policy.rules import Judged, SeverityGate, exemption_note
from weightguard.report.model import (
    FileReport,
    FindingModel,
    PartModel,
    PolicyLayerRef,
    PolicyRef,
    Report,
    StageModel,
    StageName,
    StageStatus,
    Summary,
    ToolInfo,
    Verdict,
)

_STAGE_STATUS: dict[Verdict, StageStatus] = {"approved": "passed", "rejected": "failed", "incomplete": "incomplete"}


@dataclass(frozen=True, slots=True)
class StageRun:
    """A stage as it ran: its time, a detail line and the findings it raised (judged into a status here)."""

    name: StageName
    seconds: float
    detail: str = ""
    findings: tuple[Finding, ...] = ()


def finding_model(f: Finding, *, blocking: bool, suppressed_by: str | None = None) -> FindingModel:
    """Convert an internal finding to its report form."""
    rule = rule_for(f.code)
    return FindingModel(
        code=f.code,
        title=rule.title if rule else f.code,
        severity=f.severity,
        kind=f.kind,
        path=f.path,
        member=f.member,
        message=f.message,
        evidence=dict(f.evidence),
        blocking=blocking,
        suppressed_by=suppressed_by,
    )


def file_report(scan: FileScan) -> FileReport:
    """Convert one file's scan to its report form."""
    parts = [
        PartModel(
            member=p.location.member,
            format=p.detection.format.value,
            confidence=p.detection.candidates[0].confidence.value,
            evidence=p.detection.candidates[0].evidence,
            other_candidates=[
                f"{c.format.value} ({c.confidence.value})"
                for c in p.detection.candidates[1:]
                if c.confidence is not Confidence.POSSIBLE
            ],
        )
        for p in scan.parts
    ]
    polyglot = any(p.detection.polyglot for p in scan.parts)
    return FileReport(
        path=scan.relpath,
        size=scan.size,
        format=scan.format.value,
        polyglot=polyglot,
        parts=parts,
        seconds=scan.seconds,
    )


def verdict_of(judged: Judged) -> tuple[Verdict, int]:
    """Return the verdict and exit code for judged findings (fail closed)."""
    if any(f.kind is RuleKind.FINDING for f in judged.blocking):
        return "rejected", EXIT_BLOCKED
    if judged.blocking:
        return "incomplete", EXIT_INCOMPLETE
    return "approved", EXIT_OK


def policy_ref(loaded: LoadedPolicy) -> PolicyRef:
    """The report's record of the policy: name, digest and every layer."""
    layers = [PolicyLayerRef(origin=layer.origin, sha256=layer.sha256) for layer in loaded.layers]
    return PolicyRef(name=loaded.name, origin=loaded.origin, sha256=loaded.sha256, layers=layers)


def stage_model(stage: StageRun, gate: SeverityGate, today: dt.date) -> StageModel:
    """The stage as reported: failed or incomplete only on what the gate blocks, as the verdict is."""
    judged = gate.judge(stage.findings, today)
    verdict, _ = verdict_of(judged)
    notes = len(judged.advisory) + len(judged.suppressed) + len(judged.exempted)
    return StageModel(
        name=stage.name, status=_STAGE_STATUS[verdict], seconds=stage.seconds, detail=stage.detail, notes=notes
    )


def build_report(
    *,
    command: str,
    targets: Sequence[str],
    loaded: LoadedPolicy,
    scans: Sequence[FileScan],
    extra_findings: Sequence[Finding],
    version: str,
    now: dt.datetime,
    stages: Sequence[StageRun] = (),
    verdict_stage: bool = False,
) -> Report:
    """Judge every finding under the policy and assemble the report.

    ``stages``: the stages as they ran (their findings are also in ``scans`` or
    ``extra_findings``); ``verdict_stage`` appends the verdict itself as the last stage.
    """
    gate = SeverityGate.from_policy(loaded.policy)
    everything: list[Finding] = list(extra_findings)
    everything.extend(gate.expired(now.date(), loaded.origin))
    for scan in scans:
        everything.extend(scan.outcome.findings)
        everything.extend(scan.outcome.errors)
        everything.extend(scan.outcome.skipped)
    judged = gate.judge(everything, now.date())
    verdict, exit_code = verdict_of(judged)
    stage_models = [stage_model(stage, gate, now.date()) for stage in stages]
    if verdict_stage:
        stage_models.append(StageModel(name="verdict", status=_STAGE_STATUS[verdict], detail=verdict))
    models = [finding_model(f, blocking=True) for f in judged.blocking]
    models += [finding_model(f, blocking=False) for f in judged.advisory]
    models += [finding_model(f, blocking=False, suppressed_by=ig.reason) for f, ig in judged.suppressed]
    # Exempted files are always listed, with the exemption's reason and expiry (issue 18).
    models += [finding_model(f, blocking=False, suppressed_by=exemption_note(ex)) for f, ex in judged.exempted]
    reasons = [f"{f.code} {f.location}: {f.message}" for f in judged.blocking]
    summary = Summary(
        files=len(scans),
        findings=sum(1 for f in everything if f.kind is RuleKind.FINDING),
        blocking=len(judged.blocking),
        errors=sum(1 for f in everything if f.kind is RuleKind.ERROR),
        skipped=sum(1 for f in everything if f.kind is RuleKind.SKIPPED),
        suppressed=len(judged.suppressed) + len(judged.exempted),
        by_severity=dict(Counter(f.severity.value for f in everything)),
    )
    return Report(
        tool=ToolInfo(version=version),
        command=command,
        generated_at=now,
        targets=list(targets),
        policy=policy_ref(loaded),
        verdict=verdict,
        exit_code=exit_code,
        reasons=reasons,
        summary=summary,
        files=[file_report(s) for s in scans],
        findings=models,
        stages=stage_models,
    )
