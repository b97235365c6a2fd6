"""Policy sections for integrity (pinned digests, tolerated files) and signatures."""

from __future__ import annotations

from weightguard.policy.base import StrictModel


class IntegritySpec(StrictModel):
    """Pinned digests and tolerated extra/missing files (filled in by the integrity stage)."""


class SignaturesSpec(StrictModel):
    """Required signatures and trusted signers (filled in by the signing stage)."""
