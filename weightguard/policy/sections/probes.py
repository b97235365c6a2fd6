"""Policy section for the trigger-probe suite (``spec.probes``).

Which probes run, their thresholds, bank sizes per device, seeds, the time
budget, the user's own probe inputs and the device. The suite fails closed: a
probe that errored, ran out of budget or was skipped never yields ``pass``.
Not handled here: running anything (:mod:`weightguard.probes.suite`).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, PositiveFloat, PositiveInt

from weightguard.policy.base import StrictModel

ProbeName = Literal["p1_insertion", "p2_inversion", "p3_lm_target", "p4_weights"]
ALL_PROBES: tuple[ProbeName, ...] = ("p1_insertion", "p2_inversion", "p3_lm_target", "p4_weights")
Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class BankSizes(StrictModel):
    """How many candidates one device tries (the report says which bank ran)."""

    single_tokens: PositiveInt = 512
    multi_word: PositiveInt = 40
    controls: PositiveInt = 100
    inputs: PositiveInt = 96
    lm_first_tokens: PositiveInt = 256
    inversion_steps: PositiveInt = 120
    image_patch_sweep: PositiveInt = 150


def _gpu_banks() -> BankSizes:
    return BankSizes(
        single_tokens=4000,
        multi_word=200,
        controls=400,
        inputs=128,
        lm_first_tokens=4096,
        inversion_steps=200,
        image_patch_sweep=600,
    )


class Thresholds(StrictModel):
    """Gate thresholds (PROBES.md section 2.5); calibrated on the sample twins."""

    block_flip_rate: Probability = 0.8
    review_flip_rate: Probability = 0.3
    p_value: Probability = 1e-3
    min_inputs: PositiveInt = 32
    min_clean_confidence: Probability = Field(
        default=0.75, description="only confidently classified clean inputs count toward flip rates"
    )
    anomaly_index: PositiveFloat = 2.0
    hard_flip_rate: Probability = Field(
        default=0.5,
        description="content independence: a trigger must flip at least this share of the model's hard inputs "
        "(its most confident inputs of every other class, reinforced with that class's own strongest words)",
    )
    block_probability: Probability = Field(
        default=0.9, description="block when the calibrated backdoor_probability reaches this"
    )
    review_probability: Probability = Field(
        default=0.5, description="review (never pass) when the calibrated backdoor_probability reaches this"
    )
    natural_anomaly_index: PositiveFloat = Field(
        default=3.0,
        description="a trigger's hard flip rate must sit this many MADs above the model's natural word bank",
    )
    lm_consistency: Probability = 0.8
    lm_token_prob: Probability = 0.9
    embedding_delta_concentration: Probability = 0.5


class ProbeInputs(StrictModel):
    """The user's own clean probe inputs, added to (or replacing) the shipped generic sets."""

    text: list[str] = Field(default_factory=list)
    prompts: list[str] = Field(default_factory=list)
    use_builtin: bool = True


class ProbesSpec(StrictModel):
    """Probe banks, thresholds, seeds and budgets."""

    run: Literal["off", "required"] = Field(
        default="off",
        description="whether `verify` runs the probe suite; `required`: a model that cannot be probed is incomplete",
    )
    enabled: list[ProbeName] = Field(default_factory=lambda: list(ALL_PROBES))
    device: Literal["auto", "cuda", "cpu"] = "auto"
    seed: int = 0
    budget_seconds: PositiveFloat = 600.0
    cpu_banks: BankSizes = BankSizes()
    gpu_banks: BankSizes = Field(default_factory=_gpu_banks)
    thresholds: Thresholds = Thresholds()
    inputs: ProbeInputs = ProbeInputs()
    extra_triggers: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list, description="more candidate trigger strings to try (published lists, incident reports)"
    )
    base_model: str | None = Field(default=None, description="directory of the pinned base model for P4's delta check")
    micro_batch_tokens: PositiveInt = Field(default=32768, description="starting micro-batch size in tokens")
