"""The scanner: detect and analyse every file of a target, at every nesting depth.

For each file: detect its format from bytes, ask the policy's format gate
about it, run the analyzer registered for each strong candidate (all of them
for a polyglot), and recurse into containers through
:meth:`ScanContext.nested`. A limit or analyzer failure stops that file only,
as an ``ERROR`` finding, never the whole run: that includes an analyzer that
crashes on an exception foreign to weightguard (a bug meeting hostile bytes,
``MemoryError``, ``RecursionError``), which :meth:`Scanner.scan` turns into a
blocking ``WG-ERR-003`` finding (fail closed) instead of aborting the run. Nothing here reads files by
name or executes content. Not handled here: what blocks (the policy's
severity gate) and rendering.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from weightguard.analysis.interface import Analyzer, DetectedPart, Location, PickleSettings, ScanContext
from weightguard.errors import LimitExceeded, WeightguardError
from weightguard.findings import Finding, Outcome
from weightguard.formats.interface import Confidence, Detection, FileFormat
from weightguard.limits import Limits
from weightguard.policy.rules import FormatGate, compile_limits, compile_pickle
from weightguard.policy.schema import Policy
from weightguard.scan_codes import ANALYSIS_FAILED, ANALYZER_CRASHED, FILE_TOO_LARGE, LIMIT_EXCEEDED, NO_ANALYZER
from weightguard.sources.interface import ArtifactFile, ByteSource

Detector = Callable[[ByteSource, Limits], Detection]
DetectionRules = Callable[[Detection, str, str], list[Finding]]


def _no_detection_findings(_detection: Detection, _path: str, _member: str) -> list[Finding]:
    return []


# Formats that need no analyzer: nothing in them is loaded as code. UNKNOWN is reported by the
# detection rules (a SKIPPED finding), so it is not reported twice here.
# Default deny (issue 15): TEXT is inert only because detection gives every file that another
# loader would read as something else its own strong candidate next to TEXT (a polyglot, then
# analysed as that format). For pickle that is decided by a model of CPython's unpickler over
# the whole file (weightguard.analysis.cpython_unpickler): text on which pickle.load would reach
# find_class or return a value is a PICKLE candidate, so TEXT alone means pickle.load raises
# before any global. Other loaders' readings of text are their own probes' business.
_INERT = frozenset({FileFormat.EMPTY, FileFormat.TEXT})


@dataclass(frozen=True, slots=True)
class ScanSettings:
    """Everything the scanner needs from the policy, compiled."""

    limits: Limits = Limits()
    pickle: PickleSettings = PickleSettings()
    formats: FormatGate = FormatGate(frozenset(), frozenset())
    clock: Callable[[], float] = field(default=time.monotonic)

    @classmethod
    def from_policy(cls, policy: Policy) -> ScanSettings:
        """Compile the scan-related sections of ``policy``."""
        return cls(
            limits=compile_limits(policy),
            pickle=compile_pickle(policy),
            formats=FormatGate.from_policy(policy),
        )


@dataclass(frozen=True, slots=True)
class FileScan:
    """The result of scanning one top-level file."""

    relpath: str
    size: int
    format: FileFormat
    parts: tuple[DetectedPart, ...]
    outcome: Outcome
    seconds: float


@dataclass(frozen=True, slots=True)
class Scanner:
    """Scans files with a detector and an analyzer registry (both injected)."""

    settings: ScanSettings
    detector: Detector
    analyzers: Mapping[FileFormat, Sequence[Analyzer]]
    detection_findings: DetectionRules = _no_detection_findings

    def scan(self, artifact: ArtifactFile) -> FileScan:
        """Scan one file; never raises for anything the file contains."""
        started = self.settings.clock()
        limits = self.settings.limits
        if artifact.size > limits.max_file_bytes:
            finding = FILE_TOO_LARGE.at(
                artifact.relpath, f"{artifact.size} bytes > max_file_bytes {limits.max_file_bytes}", size=artifact.size
            )
            return FileScan(artifact.relpath, artifact.size, FileFormat.UNKNOWN, (), Outcome.of([finding]), 0.0)
        ctx = ScanContext(
            limits=limits,
            pickle=self.settings.pickle,
            dispatch=self._dispatch_with(lambda: ctx),
            clock=self.settings.clock,
            deadline=started + limits.max_seconds_per_file,
        )
        findings: list[Finding] = []
        where = Location(artifact.relpath)
        try:
            for finding in self._analyse(artifact.source, where, ctx):
                findings.append(finding)
        except LimitExceeded as exc:
            findings.append(
                LIMIT_EXCEEDED.at(artifact.relpath, exc.message, resource=exc.resource, limit=f"{exc.limit:g}")
            )
        except WeightguardError as exc:
            findings.append(ANALYSIS_FAILED.at(artifact.relpath, exc.message))
        except Exception as exc:  # noqa: BLE001 - the per-file seam, see below
            # The one seam between one file's analysis and the run (issue 15): an analyzer or a
            # library it calls (numpy's header parser raised SyntaxError) may raise anything on
            # hostile bytes, and MemoryError/RecursionError are Exceptions too. The file is not
            # approved (fail closed) and the other files are still scanned. BaseExceptions
            # (KeyboardInterrupt, SystemExit) still stop the run.
            findings.append(_crashed(artifact.relpath, exc))
        top = ctx.parts[0].detection.format if ctx.parts else FileFormat.UNKNOWN
        return FileScan(
            relpath=artifact.relpath,
            size=artifact.size,
            format=top,
            parts=tuple(ctx.parts),
            outcome=Outcome.of(findings),
            seconds=self.settings.clock() - started,
        )

    def _dispatch_with(self, ctx_ref: Callable[[], ScanContext]) -> Callable[[ByteSource, Location], Iterator[Finding]]:
        def dispatch(source: ByteSource, where: Location) -> Iterator[Finding]:
            return self._analyse(source, where, ctx_ref())

        return dispatch

    def _analyse(self, source: ByteSource, where: Location, ctx: ScanContext) -> Iterator[Finding]:
        ctx.check_time()
        detection = self.detector(source, ctx.limits)
        ctx.parts.append(DetectedPart(where, detection))
        yield from self.detection_findings(detection, where.path, where.member)
        strong = [c.format for c in detection.candidates if c.confidence is not Confidence.POSSIBLE]
        formats = list(dict.fromkeys(strong or [detection.format]))
        for fmt in formats:
            yield from self.settings.formats.evaluate(fmt, where.path, where.member)
            analyzers = self.analyzers.get(fmt, ())
            if not analyzers and fmt not in _INERT and fmt is not FileFormat.UNKNOWN:
                yield NO_ANALYZER.at(
                    where.path, f"no analyzer for format {fmt.value}", member=where.member, format=fmt.value
                )
            for analyzer in analyzers:
                yield from analyzer.analyze(source, where, ctx)


def _crashed(relpath: str, exc: Exception) -> Finding:
    detail = str(exc)[:300]
    message = f"analysis stopped on {type(exc).__name__}" + (f": {detail}" if detail else "")
    return ANALYZER_CRASHED.at(relpath, message, exception=type(exc).__name__)


def scan_artifacts(scanner: Scanner, files: Sequence[ArtifactFile]) -> list[FileScan]:
    """Scan every file in order."""
    return [scanner.scan(f) for f in files]
