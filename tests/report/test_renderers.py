"""Renderers are pure functions of one Report: goldens, the verdict logic, and SARIF's shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from weightguard.report.json_format import render_json
from weightguard.report.model import Report
from weightguard.report.sarif import render_sarif, render_sarif_dict
from weightguard.report.text import render_text

SCHEMA = Path(__file__).resolve().parents[1] / "data" / "sarif-schema-2.1.0.json"


def test_blocking_findings_reject_even_when_another_file_is_incomplete(report: Report) -> None:
    assert (report.verdict, report.exit_code) == ("rejected", 1)
    assert report.summary.blocking == 2  # the critical finding and the error
    assert report.summary.suppressed == 1


def test_suppressed_findings_stay_in_the_report_with_their_reason(report: Report) -> None:
    [odd] = [f for f in report.findings if f.code == "WG-TST-902"]
    assert (odd.blocking, odd.suppressed_by) == (False, "known vendor quirk")


def test_json_round_trips_through_the_model(report: Report) -> None:
    again = Report.model_validate_json(render_json(report))
    assert again == report
    assert json.loads(render_json(report))["schema_version"] == "1"


def test_json_golden(report: Report, golden) -> None:
    golden("report.json", render_json(report))


def test_text_golden(report: Report, golden) -> None:
    golden("report.txt", render_text(report))


def test_sarif_golden(report: Report, golden) -> None:
    golden("report.sarif", render_sarif(report))


def test_text_puts_the_verdict_first(report: Report) -> None:
    assert render_text(report).startswith("weightguard scan: BLOCKED")


@pytest.mark.parametrize(
    ("verdict", "scan_says", "verify_says"),
    [("approved", "PASSED", "APPROVED"), ("rejected", "BLOCKED", "REJECTED"), ("incomplete", "INCOMPLETE", "INCOMPLETE")],
)
def test_a_scan_passes_or_blocks_and_only_verify_approves(
    report: Report, verdict: str, scan_says: str, verify_says: str
) -> None:
    scanned = report.model_copy(update={"verdict": verdict})
    verified = scanned.model_copy(update={"command": "verify"})
    assert render_text(scanned).startswith(f"weightguard scan: {scan_says} ")
    assert render_text(verified).startswith(f"weightguard verify: {verify_says} ")
    assert json.loads(render_json(scanned))["verdict"] == verdict  # the schema's values do not change


def test_sarif_results_point_at_the_file_and_name_the_member(report: Report) -> None:
    run = render_sarif_dict(report)["runs"][0]
    [result] = [r for r in run["results"] if r["ruleId"] == "WG-TST-901"]
    location = result["locations"][0]
    assert location["physicalLocation"]["artifactLocation"]["uri"] == "model/pytorch_model.bin"
    assert location["logicalLocations"][0]["fullyQualifiedName"] == "model/pytorch_model.bin:archive/data.pkl"
    assert result["partialFingerprints"]["primaryLocationLineHash"].endswith(":1")
    assert result["level"] == "error"


def test_sarif_rules_carry_what_github_code_scanning_needs(report: Report) -> None:
    rules = render_sarif_dict(report)["runs"][0]["tool"]["driver"]["rules"]
    assert rules, "the driver must list the rule catalogue"
    for rule in rules:
        assert rule["shortDescription"]["text"] and rule["fullDescription"]["text"]
        assert 0.0 < float(rule["properties"]["security-severity"]) <= 10.0
        assert "security" in rule["properties"]["tags"]


def test_sarif_suppressed_results_are_marked(report: Report) -> None:
    run = render_sarif_dict(report)["runs"][0]
    [odd] = [r for r in run["results"] if r["ruleId"] == "WG-TST-902"]
    assert odd["suppressions"][0]["justification"] == "known vendor quirk"


def test_sarif_validates_against_the_official_schema(report: Report) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)  # the dialect the schema declares
    validator.validate(render_sarif_dict(report))
    assert not validator.is_valid({"version": "2.1.0"}), "the schema must reject a log without runs"


def test_codequality_lists_unsuppressed_findings_with_gitlab_severities(report: Report) -> None:
    from weightguard.report.codequality import render_codequality

    issues = json.loads(render_codequality(report))
    assert {i["check_name"] for i in issues} == {"WG-TST-901", "WG-TST-903"}
    [exec_issue] = [i for i in issues if i["check_name"] == "WG-TST-901"]
    assert exec_issue["severity"] == "blocker"
    assert exec_issue["location"] == {"path": "model/pytorch_model.bin", "lines": {"begin": 1}}
    assert len({i["fingerprint"] for i in issues}) == len(issues)


def test_sarif_of_a_real_scan_validates_and_names_the_pickle_member() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    from weightguard.api import scan

    samples = Path(__file__).resolve().parents[2] / "sample_models"
    sarif = render_sarif_dict(scan([samples / "blocked", samples / "approved"]))
    schema = json.loads(SCHEMA.read_text())
    jsonschema.validators.validator_for(schema)(schema).validate(sarif)
    [result] = sarif["runs"][0]["results"]
    assert result["ruleId"] == "WG-PKL-001"
    assert result["locations"][0]["logicalLocations"][0]["name"] == "archive/data.pkl"
    rule = sarif["runs"][0]["tool"]["driver"]["rules"][result["ruleIndex"]]
    assert rule["id"] == "WG-PKL-001" and rule["properties"]["security-severity"] == "9.5"


def test_text_shows_the_rules_remediation_under_each_blocking_finding() -> None:
    # issue 18: every rule has remediation text; the text report now shows it, one line per blocking finding.
    from pathlib import Path

    from weightguard.api import scan
    from weightguard.catalog import rule_for

    blocked = scan([Path(__file__).resolve().parents[2] / "sample_models" / "blocked" / "pytorch_model.bin"])
    finding = next(f for f in blocked.findings if f.blocking)
    rule = rule_for(finding.code)
    assert rule is not None and rule.help
    assert f"    fix: {' '.join(rule.help.split())}" in render_text(blocked).splitlines()
