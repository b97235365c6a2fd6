"""The rule catalogue: every rule documented once, with a stable, well-formed code."""

from __future__ import annotations

import re

from weightguard.catalog import RULE_MODULES, all_rules, rule_for

CODE = re.compile(r"^WG-[A-Z0-9]+-\d{3}$")


def test_codes_are_unique_and_well_formed() -> None:
    codes = [r.code for r in all_rules()]
    assert len(codes) == len(set(codes)), "a rule code is declared twice"
    assert all(CODE.match(c) for c in codes), [c for c in codes if not CODE.match(c)]


def test_every_rule_has_a_title_and_a_one_line_summary() -> None:
    for rule in all_rules():
        assert rule.title and rule.summary, rule.code
        assert "\n" not in rule.summary, rule.code
        assert len(rule.summary) <= 200, rule.code


def test_every_rules_module_declares_only_rules_it_lists() -> None:
    from weightguard.findings import Rule

    for module in RULE_MODULES:
        declared = {v.code for v in vars(module).values() if isinstance(v, Rule)}
        assert declared == {r.code for r in module.RULES}, module.__name__


def test_rules_are_found_by_code() -> None:
    assert rule_for("WG-LIM-001") is not None
    assert rule_for("WG-NOPE-999") is None
