"""Policy section for converting pickle checkpoints to safetensors."""

from __future__ import annotations

from weightguard.policy.base import StrictModel


class ConversionSpec(StrictModel):
    """Whether and how approved pickle checkpoints are converted (filled in by the convert stage)."""
