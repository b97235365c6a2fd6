"""Compiled policy gates: formats, severities, ignores and their expiry."""

from __future__ import annotations

import datetime as dt

from weightguard.findings import Rule, RuleKind, Severity
from weightguard.formats.interface import FileFormat
from weightguard.policy.load import load_builtin, load_policy
from weightguard.policy.rules import FormatGate, SeverityGate, compile_limits, compile_pickle

TODAY = dt.date(2026, 11, 24)
HIGH = Rule("WG-TST-001", "test high", Severity.HIGH, "a high finding")
LOW = Rule("WG-TST-002", "test low", Severity.LOW, "a low finding")
ERR = Rule("WG-TST-003", "test error", Severity.LOW, "an error", kind=RuleKind.ERROR)


def test_strict_format_gate_refuses_pickles_and_passes_safetensors() -> None:
    gate = FormatGate.from_policy(load_builtin("strict").policy)
    assert [f.code for f in gate.evaluate(FileFormat.PYTORCH_ZIP, "m.bin")] == ["WG-POL-001"]
    assert gate.evaluate(FileFormat.SAFETENSORS, "m.safetensors") == []


def test_an_allowlist_of_formats_flags_everything_else(write_policy) -> None:
    gate = FormatGate.from_policy(load_policy(write_policy("formats:\n  allowed: [safetensors, json]")).policy)
    assert gate.evaluate(FileFormat.JSON, "config.json") == []
    assert [f.code for f in gate.evaluate(FileFormat.GGUF, "m.gguf")] == ["WG-POL-002"]


def test_fail_on_decides_which_findings_block() -> None:
    gate = SeverityGate(Severity.MEDIUM, ())
    judged = gate.judge([HIGH.at("a", "x"), LOW.at("b", "y")], TODAY)
    assert [f.code for f in judged.blocking] == ["WG-TST-001"]
    assert [f.code for f in judged.advisory] == ["WG-TST-002"]


def test_errors_block_whatever_their_severity_and_cannot_be_ignored(write_policy) -> None:
    loaded = load_policy(
        write_policy(
            "severity:\n  fail_on: critical\n  ignores:\n    - {rule: WG-TST-003, reason: noise, expires: 2030-01-01}"
        )
    )
    judged = SeverityGate.from_policy(loaded.policy).judge([ERR.at("a", "x")], TODAY)
    assert len(judged.blocking) == 1
    assert judged.suppressed == ()


def test_ignore_suppresses_matching_path_until_it_expires(write_policy) -> None:
    loaded = load_policy(
        write_policy(
            "severity:\n  ignores:\n    - {rule: WG-TST-001, path: 'legacy/*', reason: tracked in SEC-1, expires: 2026-12-31}"
        )
    )
    gate = SeverityGate.from_policy(loaded.policy)
    judged = gate.judge([HIGH.at("legacy/a.bin", "x"), HIGH.at("new/b.bin", "x")], TODAY)
    assert [f.path for f, _ in judged.suppressed] == ["legacy/a.bin"]
    assert [f.path for f in judged.blocking] == ["new/b.bin"]
    later = gate.judge([HIGH.at("legacy/a.bin", "x")], dt.date(2027, 1, 1))
    assert [f.path for f in later.blocking] == ["legacy/a.bin"]


def test_an_expired_ignore_is_itself_a_finding(write_policy) -> None:
    loaded = load_policy(
        write_policy("severity:\n  ignores:\n    - {rule: WG-TST-001, reason: old waiver, expires: 2020-01-01}")
    )
    expired = SeverityGate.from_policy(loaded.policy).expired(TODAY, "p.yaml")
    assert [f.code for f in expired] == ["WG-POL-003"]
    assert expired[0].evidence["expires"] == "2020-01-01"


def test_limits_and_pickle_settings_compile_from_the_policy(write_policy) -> None:
    loaded = load_policy(
        write_policy(
            "limits:\n  max_pickle_opcodes: 1000\n  max_nesting_depth: 3\n"
            "pickle:\n  mode: refuse\n  allowed_globals:\n    - {global: mylib.config.Config, reason: plain data class}"
        )
    )
    limits = compile_limits(loaded.policy)
    assert (limits.max_pickle_opcodes, limits.max_nesting_depth) == (1000, 3)
    pickle = compile_pickle(loaded.policy)
    assert pickle.mode == "refuse"
    assert pickle.extra_allowed == frozenset({"mylib.config.Config"})
