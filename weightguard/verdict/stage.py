"""Staged rollout rules: which promotions are allowed, as pure logic.

Given the policy's rollout section, the model's current stage (and since
when), the checks its approval attestation records as passed, and the
approvals collected, :func:`promotion_problems` lists every unmet
requirement; an empty list means the promotion may be recorded.
Not handled here: storing the record (:mod:`weightguard.verdict.store`) or
verifying the attestation's signature.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from weightguard.policy.sections.rollout import RolloutSpec


@dataclass(frozen=True, slots=True)
class StageState:
    """Where a model digest stands."""

    digest: str
    stage: str
    entered_at: dt.datetime


@dataclass(frozen=True, slots=True)
class PromotionEvidence:
    """What backs a promotion request."""

    passed_checks: frozenset[str]
    approvers: frozenset[str]
    attestation_problem: str | None = None  # why the attestation does not hold, if it does not


def promotion_problems(
    spec: RolloutSpec, state: StageState, target: str, evidence: PromotionEvidence, now: dt.datetime
) -> list[str]:
    """Return every reason the promotion of ``state`` to ``target`` is refused (empty: allowed)."""
    if target not in spec.stages:
        return [f"unknown stage {target!r}; stages are {', '.join(spec.stages)}"]
    current_index = spec.stages.index(state.stage) if state.stage in spec.stages else -1
    target_index = spec.stages.index(target)
    if target_index != current_index + 1:
        return [
            f"promotion must go one stage at a time: {state.stage} -> {spec.stages[min(current_index + 1, len(spec.stages) - 1)]}"
        ]
    problems: list[str] = []
    if evidence.attestation_problem:
        problems.append(f"no valid approval attestation for {state.digest}: {evidence.attestation_problem}")
    requirement = spec.promote.get(target)
    if requirement is None:
        return problems
    missing = [c for c in requirement.require if c not in evidence.passed_checks]
    if missing:
        problems.append(f"checks not passed in the attestation: {', '.join(missing)}")
    if len(evidence.approvers) < requirement.approvals:
        problems.append(f"needs {requirement.approvals} approval(s), has {len(evidence.approvers)}")
    soaked = now - state.entered_at
    if soaked < requirement.min_soak:
        problems.append(f"minimum soak in {state.stage} is {requirement.min_soak}, only {soaked} so far")
    return problems
