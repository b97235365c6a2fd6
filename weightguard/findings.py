"""Findings as data: rules, severities and the three buckets of every result.

A :class:`Rule` documents one thing weightguard can report (a malformation, a
threat, a limit). A :class:`Finding` is one occurrence of a rule at a location,
with evidence. Each rule has a :class:`RuleKind` that decides its bucket:
``FINDING`` (a statement about the content, judged by the policy's ``fail_on``),
``ERROR`` (weightguard could not complete: the run is not approved) or
``SKIPPED`` (something was not analysed: the run is not approved either).

Rules live beside the stage that emits them (``*/codes.py``); the full
catalogue is assembled explicitly in :mod:`weightguard.catalog`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum


class Severity(str, Enum):
    """How bad a finding is; ordered from INFO to CRITICAL."""

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """Return the position of this severity, INFO being 0."""
        return _RANKS[self]

    def at_least(self, other: Severity) -> bool:
        """Return True when this severity is ``other`` or worse."""
        return self.rank >= other.rank


_RANKS = {s: i for i, s in enumerate(Severity)}


class RuleKind(str, Enum):
    """Which bucket a rule's findings go to."""

    FINDING = "finding"
    ERROR = "error"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class Rule:
    """One documented thing weightguard can report.

    Attributes:
        code: Stable identifier such as ``WG-PKL-001``; never reused.
        title: Short name (a few words).
        severity: Default severity of its findings.
        summary: One-line explanation shown with every finding.
        help: What the user should do about it.
        kind: Which bucket its findings belong to.
    """

    code: str
    title: str
    severity: Severity
    summary: str
    help: str = ""
    kind: RuleKind = RuleKind.FINDING

    def at(
        self,
        path: str,
        message: str,
        *,
        member: str = "",
        severity: Severity | None = None,
        **evidence: object,
    ) -> Finding:
        """Create a finding of this rule at ``path`` (and archive ``member``)."""
        return Finding(
            code=self.code,
            severity=severity or self.severity,
            kind=self.kind,
            path=path,
            member=member,
            message=message,
            evidence={k: str(v) for k, v in evidence.items()},
        )


@dataclass(frozen=True, slots=True)
class Finding:
    """One occurrence of a rule.

    ``member`` names the place inside the file (archive member, nested member
    joined with ``:``, tensor name); ``evidence`` holds strings such as the
    resolved global (``posix.system``) or the opcode offset.
    """

    code: str
    severity: Severity
    kind: RuleKind
    path: str
    message: str
    member: str = ""
    evidence: Mapping[str, str] = field(default_factory=dict)

    @property
    def location(self) -> str:
        """Return ``path`` or ``path:member`` as shown to users."""
        return f"{self.path}:{self.member}" if self.member else self.path


@dataclass(frozen=True, slots=True)
class Outcome:
    """The three buckets of a result. Anything in errors or skipped fails closed."""

    findings: tuple[Finding, ...] = ()
    errors: tuple[Finding, ...] = ()
    skipped: tuple[Finding, ...] = ()

    @classmethod
    def of(cls, items: Iterable[Finding]) -> Outcome:
        """Sort findings into their buckets by kind."""
        findings: list[Finding] = []
        errors: list[Finding] = []
        skipped: list[Finding] = []
        for f in items:
            {RuleKind.FINDING: findings, RuleKind.ERROR: errors, RuleKind.SKIPPED: skipped}[f.kind].append(f)
        return cls(tuple(findings), tuple(errors), tuple(skipped))

    @property
    def complete(self) -> bool:
        """True when nothing failed and nothing was skipped."""
        return not self.errors and not self.skipped
