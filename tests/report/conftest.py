"""One shared report fixture for every renderer's golden test."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from weightguard.analysis.interface import DetectedPart, Location
from weightguard.analysis.scanner import FileScan
from weightguard.findings import Outcome, Rule, RuleKind, Severity
from weightguard.formats.interface import Candidate, Confidence, Detection, FileFormat
from weightguard.policy.load import parse_policy
from weightguard.report.build import build_report
from weightguard.report.model import Report

GOLDENS = Path(__file__).resolve().parents[1] / "goldens"

CODE_EXEC = Rule("WG-TST-901", "test code execution", Severity.CRITICAL, "A test rule for goldens.", "Do not load it.")
ODD = Rule("WG-TST-902", "test oddity", Severity.LOW, "A low test rule.")
LIMIT = Rule("WG-TST-903", "test limit", Severity.HIGH, "A test error rule.", kind=RuleKind.ERROR)

POLICY = b"""apiVersion: weightguard/v1alpha1
kind: VerificationPolicy
metadata: {name: golden}
spec:
  severity:
    fail_on: medium
    ignores:
      - {rule: WG-TST-902, path: "model/*", reason: known vendor quirk, expires: 2030-01-01}
"""


def _part(member: tuple[str, ...], fmt: FileFormat, evidence: str) -> DetectedPart:
    return DetectedPart(
        Location("model/pytorch_model.bin", member), Detection((Candidate(fmt, Confidence.CERTAIN, evidence),))
    )


@pytest.fixture
def report() -> Report:
    bad = FileScan(
        relpath="model/pytorch_model.bin",
        size=1234,
        format=FileFormat.PYTORCH_ZIP,
        parts=(
            _part((), FileFormat.PYTORCH_ZIP, "zip with archive/data.pkl"),
            _part(("archive/data.pkl",), FileFormat.PICKLE, "protocol 2"),
        ),
        outcome=Outcome.of(
            [
                CODE_EXEC.at(
                    "model/pytorch_model.bin",
                    "calls posix.system",
                    member="archive/data.pkl",
                    **{"global": "posix.system", "offset": 2, "opcode": "REDUCE"},
                ),
                ODD.at("model/pytorch_model.bin", "odd but harmless"),
            ]
        ),
        seconds=0.01,
    )
    good = FileScan("model/config.json", 10, FileFormat.JSON, (), Outcome(), 0.001)
    broken = FileScan(
        "model/weird.bin", 99, FileFormat.UNKNOWN, (), Outcome.of([LIMIT.at("model/weird.bin", "too deep")]), 0.0
    )
    return build_report(
        command="scan",
        targets=["model"],
        loaded=parse_policy(POLICY, "golden.yaml"),
        scans=[bad, good, broken],
        extra_findings=[],
        version="0.0.0-test",
        now=dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC),
    )


@pytest.fixture
def golden(request: pytest.FixtureRequest):
    def _check(name: str, text: str) -> None:
        path = GOLDENS / name
        if request.config.getoption("--update-goldens"):
            path.write_text(text)
        assert path.exists(), f"missing golden {path}; run pytest --update-goldens"
        assert text == path.read_text(), f"{name} differs from its golden; review and run pytest --update-goldens"

    return _check
