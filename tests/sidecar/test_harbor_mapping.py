"""Mapping a weightguard Report to Harbor's vulnerability report: ids, packages, versions, severities."""

from __future__ import annotations

import datetime as dt

from weightguard.findings import RuleKind, Severity
from weightguard.report.model import FindingModel, PolicyRef, Report, SubjectModel, Summary, ToolInfo
from weightguard.sidecar.harbor import vulnerability_report


def finding(code: str, severity: Severity, blocking: bool, path: str = "m/model.bin", member: str = "") -> FindingModel:
    return FindingModel(
        code=code,
        title="t",
        severity=severity,
        kind=RuleKind.FINDING,
        path=path,
        member=member,
        message="m",
        blocking=blocking,
    )


def report(verdict: str, findings: list[FindingModel]) -> Report:
    return Report(
        tool=ToolInfo(version="0"),
        command="verify",
        generated_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        targets=["x"],
        policy=PolicyRef(name="default", origin="builtin:default", sha256="0" * 64),
        verdict=verdict,  # type: ignore[arg-type]
        exit_code=0,
        summary=Summary(files=1, findings=len(findings), blocking=0, errors=0, skipped=0, suppressed=0),
        findings=findings,
        subject=SubjectModel(name="x", uri="x", files={"m/model.bin": "ab" * 32}),
    )


def test_findings_become_vulnerability_items_with_file_package_and_digest_version() -> None:
    mapped = vulnerability_report(
        report("rejected", [finding("WG-PKL-001", Severity.CRITICAL, True, member="archive/data.pkl")]), {}
    )
    (item,) = mapped.vulnerabilities
    assert (item.id, item.package, item.version, item.severity) == (
        "WG-PKL-001",
        "m/model.bin:archive/data.pkl",
        "ab" * 32,
        "Critical",
    )
    assert mapped.severity == "Critical"


def test_blocking_findings_are_at_least_high_and_a_rejection_is_at_least_high() -> None:
    mapped = vulnerability_report(report("incomplete", [finding("WG-X-001", Severity.LOW, True)]), {})
    assert mapped.vulnerabilities[0].severity == "High"
    assert mapped.vulnerabilities[0].vendor_attributes["weightguard_severity"] == "low"
    assert mapped.severity == "High"


def test_approved_report_keeps_advisory_levels_and_info_is_negligible() -> None:
    mapped = vulnerability_report(
        report("approved", [finding("WG-X-002", Severity.INFO, False)]), {"digest": "sha256:x"}
    )
    assert mapped.vulnerabilities[0].severity == "Negligible" and mapped.severity == "Negligible"
    assert vulnerability_report(report("approved", []), {}).severity == "Unknown"
