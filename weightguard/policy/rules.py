"""The policy compiled into small decision objects, each with one method.

Pure logic: no files, no clock (today's date is passed in).
:class:`FormatGate` decides which detected formats are findings;
:class:`SeverityGate` applies ignores (an expired ignore is itself a finding)
and format exemptions (which lift only "not analysed" findings, issue 18)
and decides which findings block. Not handled here: integrity and signature
rules, which live with their stages.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from fnmatch import fnmatchcase

from weightguard.analysis.interface import PickleSettings
from weightguard.findings import Finding, RuleKind, Severity
from weightguard.formats import codes as format_codes
from weightguard.formats.interface import FileFormat
from weightguard.limits import Limits
from weightguard.policy import codes
from weightguard.policy.schema import Policy
from weightguard.policy.sections.scan import FormatExemption, IgnoreRule
from weightguard.scan_codes import NO_ANALYZER

# The only findings an exemption lifts: "this was not analysed", never a statement about content.
EXEMPTABLE = frozenset({format_codes.UNKNOWN_FORMAT.code, NO_ANALYZER.code})


def compile_limits(policy: Policy) -> Limits:
    """Turn ``spec.limits`` into the :class:`Limits` record."""
    spec = policy.spec.limits
    return Limits(
        max_file_bytes=int(spec.max_file_bytes),
        max_header_bytes=int(spec.max_header_bytes),
        max_header_values=spec.max_header_values,
        max_pickle_bytes=int(spec.max_pickle_bytes),
        max_pickle_opcodes=spec.max_pickle_opcodes,
        max_memo_entries=spec.max_memo_entries,
        max_nesting_depth=spec.max_nesting_depth,
        max_archive_members=spec.max_archive_members,
        max_decompressed_bytes=int(spec.max_decompressed_bytes),
        max_compression_ratio=spec.max_compression_ratio,
        max_seconds_per_file=spec.max_seconds_per_file,
    )


def compile_pickle(policy: Policy) -> PickleSettings:
    """Turn ``spec.pickle`` into :class:`PickleSettings`."""
    spec = policy.spec.pickle
    return PickleSettings(
        mode=spec.mode,
        extra_allowed=frozenset(g.name for g in spec.allowed_globals),
        fickling_evidence=spec.fickling_evidence,
    )


@dataclass(frozen=True, slots=True)
class FormatGate:
    """Findings for formats the policy refuses or does not allow."""

    allowed: frozenset[FileFormat]
    refused: frozenset[FileFormat]

    @classmethod
    def from_policy(cls, policy: Policy) -> FormatGate:
        """Build the gate from ``spec.formats``."""
        spec = policy.spec.formats
        return cls(frozenset(spec.allowed), frozenset(spec.refused))

    def evaluate(self, fmt: FileFormat, path: str, member: str = "") -> list[Finding]:
        """Return a finding when ``fmt`` may not appear at ``path``."""
        if fmt in self.refused:
            return [
                codes.FORMAT_REFUSED.at(
                    path, f"format {fmt.value} is refused by the policy", member=member, format=fmt.value
                )
            ]
        if self.allowed and fmt not in self.allowed:
            return [
                codes.FORMAT_NOT_ALLOWED.at(
                    path, f"format {fmt.value} is not in the policy's allowed formats", member=member, format=fmt.value
                )
            ]
        return []


@dataclass(frozen=True, slots=True)
class Judged:
    """Findings sorted by what the policy makes of them."""

    blocking: tuple[Finding, ...]
    advisory: tuple[Finding, ...]
    suppressed: tuple[tuple[Finding, IgnoreRule], ...]
    exempted: tuple[tuple[Finding, FormatExemption], ...] = ()


@dataclass(frozen=True, slots=True)
class SeverityGate:
    """Applies ignores and ``fail_on`` to findings."""

    fail_on: Severity
    ignores: tuple[IgnoreRule, ...]
    exemptions: tuple[FormatExemption, ...] = ()

    @classmethod
    def from_policy(cls, policy: Policy) -> SeverityGate:
        """Build the gate from ``spec.severity`` and ``spec.formats.exempt``."""
        spec = policy.spec
        return cls(spec.severity.fail_on, tuple(spec.severity.ignores), tuple(spec.formats.exempt))

    def expired(self, today: dt.date, origin: str) -> list[Finding]:
        """Return one finding per ignore that is past its expiry date."""
        return [
            codes.IGNORE_EXPIRED.at(
                origin,
                f"ignore of {ig.rule} for {ig.path!r} expired on {ig.expires.isoformat()}",
                rule=ig.rule,
                reason=ig.reason,
                expires=ig.expires.isoformat(),
            )
            for ig in self.ignores
            if ig.expires < today
        ] + [
            codes.EXEMPTION_EXPIRED.at(
                origin,
                f"format exemption for {_exemption_target(ex)} expired on {ex.expires.isoformat()}",
                reason=ex.reason,
                expires=ex.expires.isoformat(),
            )
            for ex in self.exemptions
            if ex.expires < today
        ]

    def judge(self, findings: list[Finding] | tuple[Finding, ...], today: dt.date) -> Judged:
        """Split findings into blocking, advisory and suppressed.

        Errors and skips always block (fail closed) and cannot be ignored; only a
        live format exemption lifts the "not analysed" ones (:data:`EXEMPTABLE`).
        """
        blocking: list[Finding] = []
        advisory: list[Finding] = []
        suppressed: list[tuple[Finding, IgnoreRule]] = []
        exempted: list[tuple[Finding, FormatExemption]] = []
        for f in findings:
            exemption = self._matching_exemption(f, today)
            if exemption is not None:
                exempted.append((f, exemption))
                continue
            if f.kind is not RuleKind.FINDING:
                blocking.append(f)
                continue
            ignore = self._matching_ignore(f, today)
            if ignore is not None:
                suppressed.append((f, ignore))
            elif f.severity.at_least(self.fail_on):
                blocking.append(f)
            else:
                advisory.append(f)
        return Judged(tuple(blocking), tuple(advisory), tuple(suppressed), tuple(exempted))

    def _matching_exemption(self, f: Finding, today: dt.date) -> FormatExemption | None:
        if f.code not in EXEMPTABLE:
            return None
        fmt = f.evidence.get("format", FileFormat.UNKNOWN.value)
        for ex in self.exemptions:
            if ex.expires < today:
                continue
            if ex.format is not None and ex.format.value != fmt:
                continue
            if ex.path is not None and not _tail_matches(f.location, ex.path):
                continue
            return ex
        return None

    def _matching_ignore(self, f: Finding, today: dt.date) -> IgnoreRule | None:
        for ig in self.ignores:
            if (
                ig.rule == f.code
                and ig.expires >= today
                and (fnmatchcase(f.path, ig.path) or fnmatchcase(f.location, ig.path))
            ):
                return ig
        return None


def _exemption_target(ex: FormatExemption) -> str:
    parts = ([f"path {ex.path!r}"] if ex.path is not None else []) + (
        [f"format {ex.format.value}"] if ex.format is not None else []
    )
    return " and ".join(parts)


def exemption_note(ex: FormatExemption) -> str:
    """How an exempted finding is shown in reports: what matched, until when, and why."""
    return f"format exemption ({_exemption_target(ex)}) until {ex.expires.isoformat()}: {ex.reason}"


def _tail_matches(location: str, glob: str) -> bool:
    """True when ``glob`` matches ``location`` or a tail of it that starts after a ``/``.

    Reports show paths as the user named the target (``/srv/models/llama/vendor/x.bin``),
    so a glob written relative to the model folder (``vendor/*.bin``) matches its tail.
    """
    parts = location.split("/")
    return any(fnmatchcase("/".join(parts[i:]), glob) for i in range(len(parts)))
