"""Policy section for staged rollout and approval attestations."""

from __future__ import annotations

from weightguard.policy.base import StrictModel


class RolloutSpec(StrictModel):
    """Stages and promotion requirements (filled in by the verdict stage)."""
