"""The catalogue of every rule weightguard can report, assembled explicitly.

Each stage declares its rules in its own ``codes`` module; this tuple is the
one place that lists those modules (no registration by import side effect).
"""

from __future__ import annotations

from functools import cache

from weightguard import scan_codes
from weightguard.analysis import codes as pickle_codes
from weightguard.convert import codes as convert_codes
from weightguard.findings import Rule
from weightguard.formats import asset_codes, header_codes, keras_codes, repo_codes
from weightguard.formats import codes as format_codes
from weightguard.integrity import codes as integrity_codes
from weightguard.policy import codes as policy_codes
from weightguard.signing import codes as signing_codes
from weightguard.sources import codes as source_codes
from weightguard.verdict import codes as verdict_codes

RULE_MODULES = (
    scan_codes,
    pickle_codes,
    policy_codes,
    source_codes,
    convert_codes,
    format_codes,
    header_codes,
    keras_codes,
    asset_codes,
    repo_codes,
    integrity_codes,
    signing_codes,
    verdict_codes,
)


@cache
def all_rules() -> tuple[Rule, ...]:
    """Every rule, ordered by code."""
    rules: list[Rule] = []
    for module in RULE_MODULES:
        rules.extend(module.RULES)
    return tuple(sorted(rules, key=lambda r: r.code))


@cache
def _by_code() -> dict[str, Rule]:
    return {r.code: r for r in all_rules()}


def rule_for(code: str) -> Rule | None:
    """Return the rule with ``code``, or None."""
    return _by_code().get(code)
