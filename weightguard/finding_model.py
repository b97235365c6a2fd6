"""The fields every reported finding has, whichever report carries it.

A scan's findings (:class:`weightguard.report.model.FindingModel`), a
signature's (:class:`weightguard.signing.report.SignatureFinding`) and a
catalogue's (:class:`weightguard.catalogue.report.CatalogueFinding`) each add
their own fields to these, so that a field added here reaches all three.
Not handled here: making findings (:mod:`weightguard.findings`).
"""

from __future__ import annotations

from weightguard.findings import RuleKind, Severity
from weightguard.policy.base import StrictModel


class FindingFields(StrictModel):
    """What, where and how bad: the part of a finding every report shows."""

    code: str
    title: str
    severity: Severity
    kind: RuleKind
    path: str
    member: str = ""
    message: str


__all__ = ["FindingFields"]
