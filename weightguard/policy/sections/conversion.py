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
        default=True,
        description="recognise training checkpoints: take the weights from the one entry named state_dict, "
        "model_state_dict, model or module (Lightning, DeepSpeed) and leave the training state out (listed)",
    )
    weight_keys: list[str] = Field(
        default_factory=list,
        description="entries holding the weights, in order of preference (dotted for nested dicts, "
        "e.g. model.state_dict); the first one a checkpoint holds is converted, the rest left out (listed)",
    )
    allow_dropping_non_tensor: bool = Field(
        default=False, description="tolerate entries that are not tensors (step counters, configs); they are listed"
    )
