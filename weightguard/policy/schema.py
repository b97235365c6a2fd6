"""The policy file's schema: a Kubernetes-shaped, versioned pydantic model.

``apiVersion: weightguard/v1alpha1``, ``kind: VerificationPolicy``,
``metadata`` and ``spec``. Every section is its own model (see
:mod:`weightguard.policy.sections`); unknown keys anywhere are errors.
Not handled here: reading files (:mod:`weightguard.policy.load`) and turning
the spec into decisions (:mod:`weightguard.policy.rules`).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from weightguard.policy.base import StrictModel
from weightguard.policy.sections.conversion import ConversionSpec
from weightguard.policy.sections.integrity import IntegritySpec
from weightguard.policy.sections.probes import ProbesSpec
from weightguard.policy.sections.rollout import RolloutSpec
from weightguard.policy.sections.scan import FormatsSpec, LimitsSpec, PickleSpec, SeveritySpec
from weightguard.policy.sections.signatures import SignaturesSpec

API_VERSION = "weightguard/v1alpha1"
KIND = "VerificationPolicy"


class Metadata(StrictModel):
    """Names the policy."""

    name: Annotated[str, Field(min_length=1)]
    description: str = ""
    labels: dict[str, str] = Field(default_factory=dict)


class PolicySpec(StrictModel):
    """Every section of a policy; each has safe defaults."""

    formats: FormatsSpec = FormatsSpec()
    pickle: PickleSpec = PickleSpec()
    limits: LimitsSpec = LimitsSpec()
    severity: SeveritySpec = SeveritySpec()
    integrity: IntegritySpec = IntegritySpec()
    signatures: SignaturesSpec = SignaturesSpec()
    conversion: ConversionSpec = ConversionSpec()
    probes: ProbesSpec = ProbesSpec()
    rollout: RolloutSpec = RolloutSpec()


class Policy(StrictModel):
    """A whole policy document."""

    api_version: Annotated[Literal["weightguard/v1alpha1"], Field(alias="apiVersion")]
    kind: Literal["VerificationPolicy"]
    metadata: Metadata
    spec: PolicySpec = PolicySpec()
