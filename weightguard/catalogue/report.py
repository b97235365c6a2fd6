"""The catalogue report: counts by verdict, every finding, the slowest models; as text, JSON and SARIF.

:func:`catalogue_report` turns a :class:`~weightguard.catalogue.interface.CatalogueSummary`
into one pydantic model (the JSON contract); the renderers are pure
functions of it, except SARIF, which is assembled from each model's own
SARIF run (:func:`weightguard.report.sarif.render_sarif_dict`) into one run
whose results come from every model, with the rules merged and re-indexed.
The exit code is 0 when every model is approved, 1 when any is rejected,
and otherwise 2 when any is incomplete (as for one model, a block outranks
an unfinished check).
Not handled here: running anything, or where output goes (the CLI).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from pydantic import Field

from weightguard.catalogue.interface import CatalogueSummary, ModelOutcome
from weightguard.errors import EXIT_BLOCKED, EXIT_INCOMPLETE, EXIT_OK
from weightguard.finding_model import FindingFields
from weightguard.findings import RuleKind
from weightguard.policy.base import StrictModel
from weightguard.policy.load import LoadedPolicy
from weightguard.report.build import policy_ref
from weightguard.report.model import PolicyRef, ToolInfo, Verdict
from weightguard.report.sarif import render_sarif_dict, sarif_log

SLOWEST = 10


class ModelLine(StrictModel):
    """One model's line in the catalogue report."""

    target: str
    verdict: Verdict
    exit_code: int
    seconds: float
    cached: bool
    root_digest: str | None = None
    subject: str | None = Field(None, description="what was judged: for oci:// and hf:// targets, pinned")
    files: int = 0
    blocking: int = 0
    reasons: list[str] = Field(default_factory=list)


class CatalogueFinding(FindingFields):
    """A finding, with the model it was found in."""

    blocking: bool
    model: str


class RunStats(StrictModel):
    """How much work the run did and how much the cache saved."""

    engine: str
    seconds: float
    units_executed: int
    units_reused: int
    files: int
    unique_files: int
    read_files: int = Field(
        0, description="files whose bytes were read to hash them (fewer under --trust-file-metadata)"
    )


class CatalogueReport(StrictModel):
    """Everything one ``verify-many`` run found."""

    schema_version: str = "1"
    tool: ToolInfo
    generated_at: dt.datetime
    policy: PolicyRef
    exit_code: int
    counts: dict[Verdict, int]
    stats: RunStats
    models: list[ModelLine]
    findings: list[CatalogueFinding] = Field(default_factory=list)
    slowest: list[ModelLine] = Field(default_factory=list)


def _line(outcome: ModelOutcome) -> ModelLine:
    digest = outcome.digest
    if digest is None:
        return ModelLine(
            target=outcome.entry.target,
            verdict=outcome.verdict,
            exit_code=EXIT_INCOMPLETE,
            seconds=outcome.seconds,
            cached=outcome.cached,
            reasons=[outcome.error],
        )
    return ModelLine(
        target=outcome.entry.target,
        verdict=digest.verdict,
        exit_code=digest.exit_code,
        seconds=outcome.seconds,
        cached=outcome.cached,
        root_digest=digest.subject.root_digest if digest.subject else None,
        subject=digest.subject.uri if digest.subject else None,
        files=digest.summary.files,
        blocking=digest.summary.blocking,
        reasons=digest.reasons,
    )


def exit_code_of(counts: dict[Verdict, int]) -> int:
    """0 all approved, 1 any rejected, else 2 any incomplete."""
    if counts.get("rejected"):
        return EXIT_BLOCKED
    if counts.get("incomplete"):
        return EXIT_INCOMPLETE
    return EXIT_OK


def catalogue_report(summary: CatalogueSummary, loaded: LoadedPolicy, version: str) -> CatalogueReport:
    """Summarise a catalogue run."""
    lines = [_line(m) for m in summary.models]
    counts: dict[Verdict, int] = {"approved": 0, "rejected": 0, "incomplete": 0}
    for line in lines:
        counts[line.verdict] += 1
    shared = set(FindingFields.model_fields)
    findings = [
        CatalogueFinding(**f.model_dump(include=shared), blocking=f.blocking, model=m.entry.target)
        for m in summary.models
        if m.digest is not None
        for f in m.digest.findings
    ]
    return CatalogueReport(
        tool=ToolInfo(version=version),
        generated_at=summary.generated_at,
        policy=policy_ref(loaded),
        exit_code=exit_code_of(counts),
        counts=counts,
        stats=RunStats(
            engine=summary.engine,
            seconds=summary.seconds,
            units_executed=summary.executed,
            units_reused=summary.reused,
            files=summary.files,
            unique_files=summary.unique_files,
            read_files=summary.read_files,
        ),
        models=lines,
        findings=findings,
        slowest=sorted(lines, key=lambda line: -line.seconds)[:SLOWEST],
    )


def render_json(report: CatalogueReport) -> str:
    """The report as JSON text."""
    return report.model_dump_json(indent=2) + "\n"


def render_text(report: CatalogueReport) -> str:
    """The report as plain text for people."""
    c, s = report.counts, report.stats
    out = [
        f"weightguard verify-many: {len(report.models)} model(s) under policy {report.policy.name}",
        f"  approved {c['approved']}  rejected {c['rejected']}  incomplete {c['incomplete']}",
        f"  {s.units_executed} unit(s) run, {s.units_reused} reused from the cache; "
        f"{s.files} file(s), {s.unique_files} distinct, {s.read_files} read; {s.seconds:.2f}s on engine {s.engine}",
        "",
    ]
    for line in report.models:
        if line.verdict != "approved":
            out.append(f"{line.verdict.upper():<10} {line.target}")
            out.extend(f"           {reason}" for reason in line.reasons)
    shown = [f for f in report.findings if f.blocking or f.kind is not RuleKind.FINDING]
    if shown:
        out += ["", "Findings:"]
        out += [
            f"  {f.severity.value:<8} {f.code:<11} {f.path}{':' + f.member if f.member else ''}: {f.message}"
            for f in shown
        ]
    if report.slowest:
        out += ["", "Slowest models:"]
        out += [f"  {line.seconds:8.3f}s  {line.target}{' (cached)' if line.cached else ''}" for line in report.slowest]
    out.append(f"\nexit {report.exit_code}")
    return "\n".join(out) + "\n"


def render_sarif(summary: CatalogueSummary, report: CatalogueReport, *, root: Path | None = None) -> str:
    """One SARIF run whose results come from every model's report.

    Models that could not be judged at all have no results; the run's
    ``executionSuccessful`` is false when any model is incomplete. ``root`` is
    ``%SRCROOT%``, as for one report.
    """
    rules: dict[str, dict[str, Any]] = {}
    results: list[dict[str, Any]] = []
    for outcome in summary.models:
        if outcome.report is None:
            continue
        run = render_sarif_dict(outcome.report, root=root)["runs"][0]
        own = run["tool"]["driver"]["rules"]
        for rule in own:
            rules.setdefault(rule["id"], rule)
        for result in run["results"]:
            result = {**result, "properties": {**result["properties"], "model": outcome.entry.target}}
            results.append(result)
    order = sorted(rules)
    index = {code: i for i, code in enumerate(order)}
    for result in results:
        result["ruleIndex"] = index[result["ruleId"]]
    log = sarif_log(
        version=report.tool.version,
        rules=[rules[code] for code in order],
        results=results,
        automation_id="weightguard/verify-many/",
        invocation={
            "executionSuccessful": report.counts["incomplete"] == 0,
            "commandLine": "verify-many",
            "properties": {
                "counts": dict(report.counts),
                "policy": report.policy.name,
                "policySha256": report.policy.sha256,
            },
        },
        properties={"exitCode": report.exit_code},
        root=root,
    )
    return json.dumps(log, indent=2) + "\n"
