"""A model's verdict from its files' scans, judged exactly as :func:`weightguard.pipeline.verify` does.

The catalogue runner scans each distinct file once; this module then runs
what ``verify`` runs after the analysis stage (integrity and signatures,
probes when the policy asks, the policy's judgement through
:func:`weightguard.report.build.build_report`) and assembles the same
:class:`~weightguard.report.model.Report`, stage for stage. It mirrors the
sequence of ``pipeline.verify`` because that function has no seam for scans
made elsewhere; ``tests/catalogue/test_runner.py`` compares the two on every
verdict path, so any drift fails a test.
Not handled here: scanning (the file units), caching, attestations (``verify-many``
writes none).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Mapping, Sequence

from weightguard import __version__
from weightguard.analysis.scanner import FileScan
from weightguard.catalogue.codec import relocate
from weightguard.errors import AnalysisError, IntegrityError, SignatureError
from weightguard.findings import Finding, RuleKind
from weightguard.integrity.stage import IntegrityStage, run_integrity
from weightguard.pipeline import (
    ResolvedTarget,
    display_paths,
    policy_dir,
    probe_findings,
    resolve_target,
    run_probes,
    shown_scan,
)
from weightguard.policy.load import LoadedPolicy
from weightguard.probes.report import ProbeReport
from weightguard.report.build import build_report
from weightguard.report.model import Report, StageModel, StageName, StageStatus, SubjectModel
from weightguard.scan_codes import ANALYSIS_FAILED


def _status(findings: Sequence[Finding]) -> StageStatus:
    if any(f.kind is not RuleKind.FINDING for f in findings):
        return "incomplete"
    return "failed" if findings else "passed"


def _stage(name: StageName, started: float, findings: Sequence[Finding], detail: str) -> StageModel:
    return StageModel(name=name, status=_status(findings), seconds=round(time.monotonic() - started, 4), detail=detail)


def scans_for(resolved: ResolvedTarget, files: Mapping[str, str], scans: Mapping[str, FileScan]) -> list[FileScan]:
    """The scans of ``resolved``'s files, in listing order, each moved to its relative path.

    Raises:
        AnalysisError: the model's files are not those hashed when the run started.
    """
    listed = [f.relpath for f in resolved.listing.files]
    if sorted(listed) != sorted(files):
        raise AnalysisError(f"the files of {resolved.name} changed while the catalogue was being verified")
    out: list[FileScan] = []
    for artifact in resolved.listing.files:
        scan = scans.get(files[artifact.relpath])
        if scan is None or scan.size != artifact.size:
            raise AnalysisError(f"{resolved.name}/{artifact.relpath}: no scan of its current content")
        out.append(relocate(scan, artifact.relpath))
    return out


def judge_model(target: str, loaded: LoadedPolicy, files: Mapping[str, str], scans: Mapping[str, FileScan]) -> Report:
    """Judge ``target`` from the scans of its contents (``files``: relpath -> sha256).

    Raises:
        SourceError: the target cannot be resolved.
        AnalysisError: the target's files changed since they were hashed.
    """
    policy = loaded.policy
    stages: list[StageModel] = []
    extra: list[Finding] = []

    started = time.monotonic()
    resolved = resolve_target(target, loaded)
    source_findings = [*resolved.listing.findings, *resolved.extra_findings]
    stages.append(_stage("source", started, source_findings, f"{len(resolved.listing.files)} file(s)"))
    extra.extend(source_findings)

    started = time.monotonic()
    file_scans = scans_for(resolved, files, scans)
    scan_findings = [f for s in file_scans for f in (*s.outcome.findings, *s.outcome.errors, *s.outcome.skipped)]
    # verify times the analysis stage itself; here it is the sum of the file units' times.
    analysed = sum(s.seconds for s in file_scans)
    stages.append(
        StageModel(
            name="analysis",
            status=_status(scan_findings),
            seconds=round(analysed, 4),
            detail=f"{len(file_scans)} file(s) analysed",
        )
    )

    started = time.monotonic()
    integrity: IntegrityStage | None = None
    try:
        integrity = run_integrity(resolved.root, resolved.listing.files, policy, policy_dir(loaded), hub=resolved.hub)
    except (IntegrityError, SignatureError) as exc:
        failed = [ANALYSIS_FAILED.at(resolved.name, f"integrity stage could not finish: {exc.message}")]
        stages.append(_stage("integrity", started, failed, ""))
        extra.extend(failed)
    else:
        # Outside the try: a change is not a verdict to cache but a unit failure (the next run re-hashes).
        _check_unchanged(resolved, integrity, files)
        stages.append(_stage("integrity", started, integrity.findings, f"root digest {integrity.root_digest[:16]}…"))
        extra.extend(integrity.findings)

    probes: ProbeReport | None = None
    if policy.spec.probes.run != "off":
        started = time.monotonic()
        probes = run_probes(resolved, loaded)
        probe_notes = probe_findings(probes, resolved.name)
        stages.append(_stage("probes", started, probe_notes, f"{probes.verdict}"))
        extra.extend(probe_notes)

    shown = display_paths(target, resolved)
    report = build_report(
        command="verify",
        targets=[target],
        loaded=loaded,
        scans=[shown_scan(s, shown) for s in file_scans],
        extra_findings=[dataclasses.replace(f, path=shown(f.path)) for f in extra],
        version=__version__,
        now=dt.datetime.now(dt.UTC),
    )
    subject = SubjectModel(
        name=resolved.name,
        uri=resolved.uri,
        root_digest=integrity.root_digest if integrity else None,
        files={p: h.digests["sha256"] for p, h in integrity.hashes.items() if "sha256" in h.digests}
        if integrity
        else {},
    )
    verdict_stage = StageModel(
        name="verdict", status="passed" if report.verdict == "approved" else "failed", detail=report.verdict
    )
    return report.model_copy(
        update={
            "stages": [*stages, verdict_stage],
            "subject": subject,
            "integrity": integrity.report if integrity else None,
            "signatures": list(integrity.signatures) if integrity else [],
            "probes": probes,
        }
    )


def _check_unchanged(resolved: ResolvedTarget, integrity: IntegrityStage, files: Mapping[str, str]) -> None:
    """The integrity pass re-reads the bytes; they must be the bytes that were scanned."""
    for relpath, hashes in integrity.hashes.items():
        digest = hashes.digests.get("sha256")
        if digest is not None and digest != files.get(relpath):
            raise AnalysisError(f"{resolved.name}/{relpath} changed after it was analysed")
