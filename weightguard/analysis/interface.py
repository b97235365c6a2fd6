"""Static analysis: the analyzer protocol and the context every analyzer gets.

An analyzer looks at the bytes of one format (a pickle stream, a zip archive,
a safetensors header, ...) and yields findings. It never executes anything.
Containers hand their members back to :meth:`ScanContext.dispatch`, which
detects the member's format and runs the right analyzer, so nesting (a pickle
in a zip in a tar.gz) works the same at every depth, within the limits.
Limits are enforced by raising :class:`~weightguard.errors.LimitExceeded`;
the scanner turns that into an ``ERROR`` finding for the file.
Not handled here: hashing, signatures, policy verdicts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

from weightguard.errors import AnalysisError, LimitExceeded
from weightguard.findings import Finding
from weightguard.formats.interface import Detection, FileFormat
from weightguard.limits import Limits
from weightguard.sources.interface import ByteSource

PickleMode = Literal["refuse", "analyze"]


@dataclass(frozen=True, slots=True)
class Location:
    """Where some bytes sit: the top-level file and the chain of members inside it."""

    path: str
    members: tuple[str, ...] = ()

    def child(self, member: str) -> Location:
        """Return the location of ``member`` inside this one."""
        return Location(self.path, (*self.members, member))

    @property
    def member(self) -> str:
        """Members joined with ``:`` (``archive/data.pkl``, ``inner.zip:data.pkl``)."""
        return ":".join(self.members)

    @property
    def depth(self) -> int:
        """How many containers deep this location is."""
        return len(self.members)

    def __str__(self) -> str:
        """Return ``path`` or ``path:member``."""
        return f"{self.path}:{self.member}" if self.members else self.path


@dataclass(frozen=True, slots=True)
class PickleSettings:
    """What the policy says about pickles.

    Attributes:
        mode: ``refuse`` blocks every pickle stream; ``analyze`` decides by allowlist.
        extra_allowed: Extra ``module.qualname`` globals the policy allows.
        fickling_evidence: Attach fickling's decompiled view to pickle findings.
    """

    mode: PickleMode = "analyze"
    extra_allowed: frozenset[str] = frozenset()
    fickling_evidence: bool = True


@dataclass(frozen=True, slots=True)
class DetectedPart:
    """A format found at a location during the scan (for the report)."""

    location: Location
    detection: Detection


@dataclass
class ScanContext:
    """Shared state for analysing one top-level file.

    Attributes:
        limits: Resource limits.
        pickle: Pickle policy.
        dispatch: Detects and analyses nested bytes; set by the scanner.
        clock: Monotonic clock (injected for tests).
        deadline: Monotonic time after which the scan of this file stops.
        decompressed_bytes: Running total of bytes decompressed for this file.
        parts: Every format detected at every location, in scan order.
    """

    limits: Limits
    pickle: PickleSettings
    dispatch: Callable[[ByteSource, Location], Iterator[Finding]]
    clock: Callable[[], float] = time.monotonic
    deadline: float = float("inf")
    decompressed_bytes: int = 0
    parts: list[DetectedPart] = field(default_factory=list)

    def check_time(self) -> None:
        """Raise :class:`LimitExceeded` once the per-file time budget is spent."""
        if self.clock() > self.deadline:
            raise LimitExceeded("max_seconds_per_file", self.limits.max_seconds_per_file)

    def charge_decompressed(self, nbytes: int) -> None:
        """Count ``nbytes`` of decompressed output against the per-file budget."""
        self.decompressed_bytes += nbytes
        if self.decompressed_bytes > self.limits.max_decompressed_bytes:
            raise LimitExceeded("max_decompressed_bytes", self.limits.max_decompressed_bytes, self.decompressed_bytes)

    def nested(self, source: ByteSource, where: Location) -> Iterator[Finding]:
        """Analyse nested bytes, enforcing the nesting-depth limit."""
        if where.depth > self.limits.max_nesting_depth:
            raise LimitExceeded("max_nesting_depth", self.limits.max_nesting_depth, where.depth)
        return self.dispatch(source, where)


class Analyzer(Protocol):
    """One static analysis pass for some formats."""

    name: str
    formats: frozenset[FileFormat]

    def analyze(self, source: ByteSource, where: Location, ctx: ScanContext) -> Iterator[Finding]:
        """Yield findings about ``source`` (which was detected as one of ``formats``)."""
        ...


__all__ = [
    "AnalysisError",
    "Analyzer",
    "DetectedPart",
    "LimitExceeded",
    "Location",
    "PickleMode",
    "PickleSettings",
    "ScanContext",
]
