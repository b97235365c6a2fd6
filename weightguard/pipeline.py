"""The only orchestrator: the order in which ``weightguard verify`` runs the stages.

source -> format detection and static analysis -> integrity and signatures ->
conversion (if the policy asks) -> trigger probes (if the policy asks) -> verdict.
A stage that cannot finish makes the verdict ``incomplete`` (fail closed); a
later stage that depends on an earlier one's bytes (probes on converted
weights) runs only when that stage passed. Each stage's logic lives in its
package; this module only sequences them, times them and assembles the report.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from weightguard import __version__
from weightguard.analysis.scanner import FileScan
from weightguard.api import make_scanner
from weightguard.errors import SourceError
from weightguard.findings import Finding, RuleKind
from weightguard.policy.load import LoadedPolicy
from weightguard.report.build import build_report
from weightguard.report.model import Report, StageModel, StageName, StageStatus, SubjectModel
from weightguard.sources.interface import SourceListing
from weightguard.sources.local import LocalSource

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class VerifyOptions:
    """Per-run choices that are not policy (where to write, which key signs)."""

    attest_key: Path | None = None
    attestation_path: Path | None = None
    attest_failed: bool = False


@dataclass
class _Run:
    """Mutable bookkeeping of one verify run (internal)."""

    findings: list[Finding] = field(default_factory=list)
    scans: list[FileScan] = field(default_factory=list)
    stages: list[StageModel] = field(default_factory=list)

    def stage(self, name: StageName, status: StageStatus, started: float, detail: str = "") -> None:
        self.stages.append(StageModel(name=name, status=status, seconds=round(time.monotonic() - started, 4), detail=detail))


def _status_of(findings: list[Finding]) -> StageStatus:
    if any(f.kind is not RuleKind.FINDING for f in findings):
        return "incomplete"
    return "failed" if findings else "passed"


def resolve_source(target: str, loaded: LoadedPolicy) -> SourceListing:
    """Collect the files of ``target`` (a local path).

    Raises:
        SourceError: the target does not exist or cannot be read.
    """
    if target.startswith("hf://"):
        raise SourceError("hf:// targets need the integrity stage's Hugging Face source")
    return LocalSource(Path(target)).collect()


def verify(target: str, loaded: LoadedPolicy, options: VerifyOptions = VerifyOptions(), *, progress: Progress | None = None) -> Report:
    """Run every stage the policy asks for on ``target`` and return the judged report.

    Raises:
        SourceError: the target cannot be resolved at all (nothing to judge).
    """
    say = progress or (lambda _msg: None)
    run = _Run()

    started = time.monotonic()
    say(f"collecting {target}")
    listing = resolve_source(target, loaded)
    run.findings.extend(listing.findings)
    run.stage("source", _status_of(list(listing.findings)), started, f"{len(listing.files)} file(s)")

    started = time.monotonic()
    scanner = make_scanner(loaded)
    for artifact in listing.files:
        say(f"analysing {artifact.relpath}")
        run.scans.append(scanner.scan(artifact))
    scan_findings = [f for s in run.scans for f in (*s.outcome.findings, *s.outcome.errors, *s.outcome.skipped)]
    run.stage("analysis", _status_of(scan_findings), started, f"{len(run.scans)} file(s) analysed")

    report = build_report(
        command="verify",
        targets=[target],
        loaded=loaded,
        scans=run.scans,
        extra_findings=run.findings,
        version=__version__,
        now=dt.datetime.now(dt.UTC),
    )
    subject = SubjectModel(name=Path(target).name or target, uri=target)
    verdict_stage = StageModel(name="verdict", status="passed" if report.verdict == "approved" else "failed", detail=report.verdict)
    return report.model_copy(update={"stages": [*run.stages, verdict_stage], "subject": subject})


__all__ = ["VerifyOptions", "resolve_source", "verify"]
