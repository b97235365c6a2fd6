"""Policy section for the trigger-probe suite."""

from __future__ import annotations

from weightguard.policy.base import StrictModel


class ProbesSpec(StrictModel):
    """Probe banks, thresholds, seeds and budgets (filled in by the probes stage)."""
