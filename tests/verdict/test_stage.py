"""Promotion rules: one stage at a time, checks, approvals and soak time."""

from __future__ import annotations

import datetime as dt

from weightguard.policy.sections.rollout import RolloutSpec
from weightguard.verdict.stage import PromotionEvidence, StageState, promotion_problems

NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
SPEC = RolloutSpec()
ALL_CHECKS = frozenset({"scan", "integrity", "signature", "probes"})


def state(stage: str, hours_ago: float = 0) -> StageState:
    return StageState("sha256:abc", stage, NOW - dt.timedelta(hours=hours_ago))


def test_promotion_to_the_next_stage_with_its_checks_is_allowed() -> None:
    evidence = PromotionEvidence(frozenset({"scan", "integrity"}), frozenset())
    assert promotion_problems(SPEC, state("quarantine"), "staging", evidence, NOW) == []


def test_stages_cannot_be_skipped() -> None:
    evidence = PromotionEvidence(ALL_CHECKS, frozenset({"a", "b"}))
    [problem] = promotion_problems(SPEC, state("quarantine", 48), "production", evidence, NOW)
    assert "one stage at a time" in problem


def test_canary_needs_passed_probes() -> None:
    evidence = PromotionEvidence(frozenset({"scan", "integrity"}), frozenset())
    [problem] = promotion_problems(SPEC, state("staging"), "canary", evidence, NOW)
    assert "probes" in problem


def test_production_needs_two_approvals_and_a_day_of_canary_soak() -> None:
    evidence = PromotionEvidence(ALL_CHECKS, frozenset({"alice"}))
    problems = promotion_problems(SPEC, state("canary", hours_ago=3), "production", evidence, NOW)
    assert any("2 approval" in p for p in problems)
    assert any("soak" in p for p in problems)
    ok = PromotionEvidence(ALL_CHECKS, frozenset({"alice", "bob"}))
    assert promotion_problems(SPEC, state("canary", hours_ago=25), "production", ok, NOW) == []


def test_an_invalid_attestation_refuses_any_promotion() -> None:
    evidence = PromotionEvidence(ALL_CHECKS, frozenset(), attestation_problem="subject digest differs from the model on disk")
    [problem] = promotion_problems(SPEC, state("quarantine"), "staging", evidence, NOW)
    assert "subject digest differs" in problem


def test_unknown_stage_is_refused() -> None:
    evidence = PromotionEvidence(ALL_CHECKS, frozenset())
    assert "unknown stage" in promotion_problems(SPEC, state("quarantine"), "prod", evidence, NOW)[0]
