"""What the dashboard reads, as small Protocols: the rollout record and the recent verifications.

:class:`weightguard.verdict.store.RolloutStore` already satisfies
:class:`RolloutRecord`; :class:`weightguard.sidecar_dashboard.jobs_table.JobsTableVerifications`
satisfies :class:`RecentVerifications` over the sidecar's jobs table. Tests can
pass in-memory fakes of either. Not handled here: HTTP or HTML.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from weightguard.report.model import Report
from weightguard.verdict.stage import StageState
from weightguard.verdict.store import Event


class RolloutRecord(Protocol):
    """The read side of the rollout record (``RolloutStore`` has exactly these methods)."""

    def board(self) -> Sequence[tuple[str, StageState]]:
        """Every recorded model: its name and state."""
        ...

    def history(self, digest: str) -> Sequence[Event]:
        """Every event of ``digest``, oldest first."""
        ...

    def state(self, digest: str) -> StageState | None:
        """Where ``digest`` stands, or None if it was never recorded."""
        ...

    def close(self) -> None:
        """Release the connection (the dashboard opens one per request)."""
        ...


@dataclass(frozen=True, slots=True)
class VerificationEntry:
    """One verification the sidecar ran or is running."""

    id: str
    target: str
    status: str  # queued, running, done, failed
    submitted_at: dt.datetime
    finished_at: dt.datetime | None = None
    report: Report | None = None
    error: str | None = None

    @property
    def verdict(self) -> str | None:
        """The report's verdict, once there is one."""
        return None if self.report is None else self.report.verdict

    @property
    def digest(self) -> str | None:
        """The OMS root digest of the verified model, when the report has one."""
        if self.report is None or self.report.subject is None:
            return None
        return self.report.subject.root_digest


class RecentVerifications(Protocol):
    """Recent verifications, newest first."""

    def recent(self, limit: int) -> Sequence[VerificationEntry]:
        """At most ``limit`` verifications, newest first."""
        ...

    def get(self, verification_id: str) -> VerificationEntry | None:
        """One verification, or None."""
        ...

    def of_digest(self, digest: str, limit: int) -> Sequence[VerificationEntry]:
        """At most ``limit`` verifications whose report names the root digest ``digest``, newest first."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


RolloutProvider = Callable[[], RolloutRecord]
VerificationsProvider = Callable[[], RecentVerifications]

__all__ = ["RecentVerifications", "RolloutProvider", "RolloutRecord", "VerificationEntry", "VerificationsProvider"]
