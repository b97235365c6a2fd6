"""Policy section for staged rollout and approval attestations.

Stages are ordered; a model enters the first one (quarantine) and is promoted
one stage at a time. Each stage after the first states what its promotion
requires: checks that the approval attestation must record as passed,
human approvals, and a minimum soak time in the previous stage.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import Field, model_validator

from weightguard.policy.base import StrictModel

CheckName = Literal["scan", "integrity", "signature", "conversion", "probes"]


class StageRequirement(StrictModel):
    """What promotion into one stage requires."""

    require: list[CheckName] = Field(default_factory=list, description="checks the attestation must record as PASSED")
    approvals: Annotated[int, Field(ge=0)] = 0
    min_soak: dt.timedelta = Field(default=dt.timedelta(0), description="minimum time spent in the previous stage")


def _default_promote() -> dict[str, StageRequirement]:
    return {
        "staging": StageRequirement(require=["scan", "integrity"]),
        "canary": StageRequirement(require=["scan", "integrity", "probes"]),
        "production": StageRequirement(
            require=["scan", "integrity", "probes"], approvals=2, min_soak=dt.timedelta(hours=24)
        ),
    }


class AttestationSpec(StrictModel):
    """Where approval attestations are written and who signs them."""

    signing_key: str | None = Field(default=None, description="PEM private key used by `verify --attest`")
    trusted_keys: list[str] = Field(default_factory=list, description="PEM public keys accepted on promotion")
    location: str | None = Field(default=None, description="default attestation file path")


class RolloutSpec(StrictModel):
    """Stages, what each promotion requires, and where the record lives."""

    stages: list[str] = Field(default_factory=lambda: ["quarantine", "staging", "canary", "production"], min_length=1)
    promote: dict[str, StageRequirement] = Field(default_factory=_default_promote)
    database: str | None = Field(
        default=None,
        description="sqlite:///PATH or postgresql://USER@HOST:PORT/DB; default: rollout.db in $XDG_STATE_HOME/weightguard (~/.local/state)",
    )
    attestation: AttestationSpec = AttestationSpec()

    @model_validator(mode="after")
    def _stages_are_known(self) -> RolloutSpec:
        if len(set(self.stages)) != len(self.stages):
            raise ValueError("stages must be unique")
        unknown = set(self.promote) - set(self.stages[1:])
        if unknown:
            raise ValueError(f"promote names stages that are not after the first one: {sorted(unknown)}")
        return self
