"""Policy section for converting approved pickle checkpoints to safetensors."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from weightguard.policy.base import StrictModel


class ConversionSpec(StrictModel):
    """Whether ``verify`` converts, and what a conversion may drop.

    ``required``: pickle-based weights are converted and the verdict covers the
    safetensors output; ``allowed``: converted only when an output directory is
    given; ``off``: never.
    """

    mode: Literal["off", "allowed", "required"] = "off"
    unwrap_state_dict: bool = Field(
        default=True, description="convert checkpoint['state_dict'] when it is a dict of tensors"
    )
    allow_dropping_non_tensor: bool = Field(
        default=False, description="tolerate entries that are not tensors (step counters, configs); they are listed"
    )
