"""Issue 18: format exemptions lift only "not analysed" findings, for named files, until a date."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError

from weightguard.findings import Severity
from weightguard.formats import codes as format_codes
from weightguard.formats.interface import FileFormat
from weightguard.policy.rules import SeverityGate, exemption_note
from weightguard.policy.sections.scan import FormatExemption
from weightguard.scan_codes import NO_ANALYZER

TODAY = dt.date(2026, 12, 3)


def _exemption(**fields: object) -> FormatExemption:
    return FormatExemption.model_validate({"reason": "reviewed in SEC-1", "expires": "2027-01-01", **fields})


def _gate(*exemptions: FormatExemption) -> SeverityGate:
    return SeverityGate(Severity.MEDIUM, (), exemptions)


def test_an_exemption_must_name_a_path_or_a_format_and_give_a_reason_and_a_date() -> None:
    with pytest.raises(ValidationError):
        _exemption()
    with pytest.raises(ValidationError):
        FormatExemption.model_validate({"path": "x.bin", "expires": "2027-01-01"})
    with pytest.raises(ValidationError):
        FormatExemption.model_validate({"path": "x.bin", "reason": "reviewed"})


def test_an_unknown_file_under_the_glob_is_exempted_and_noted_with_reason_and_date() -> None:
    finding = format_codes.UNKNOWN_FORMAT.at("/srv/llama/vendor/table.bpe", "unrecognised binary content")
    ex = _exemption(path="vendor/*.bpe")
    judged = _gate(ex).judge([finding], TODAY)
    assert judged.blocking == () and judged.exempted == ((finding, ex),)
    assert "SEC-1" in exemption_note(ex) and "2027-01-01" in exemption_note(ex)


def test_a_format_exemption_matches_the_detected_format_only() -> None:
    no_analyzer = NO_ANALYZER.at("m/model.tflite", "no analyzer for format tflite", format="tflite")
    unknown = format_codes.UNKNOWN_FORMAT.at("m/blob.bin", "unrecognised binary content")
    judged = _gate(_exemption(format=FileFormat.TFLITE)).judge([no_analyzer, unknown], TODAY)
    assert judged.blocking == (unknown,) and [f for f, _ in judged.exempted] == [no_analyzer]


def test_an_exemption_never_lifts_a_polyglot_or_any_other_finding() -> None:
    polyglot = format_codes.POLYGLOT.at("m/blob.bin", "content is valid as pickle, zip")
    judged = _gate(_exemption(path="*")).judge([polyglot], TODAY)
    assert judged.blocking == (polyglot,) and judged.exempted == ()


def test_an_expired_exemption_lifts_nothing_and_is_a_finding() -> None:
    unknown = format_codes.UNKNOWN_FORMAT.at("m/blob.bin", "unrecognised binary content")
    gate = _gate(_exemption(path="m/blob.bin", expires="2026-12-02"))
    assert gate.judge([unknown], TODAY).blocking == (unknown,)
    assert [f.code for f in gate.expired(TODAY, "policy.yaml")] == ["WG-POL-004"]
