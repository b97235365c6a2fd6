"""The scanner orchestrator, driven by fake detectors and analyzers that implement the real interfaces."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from weightguard.analysis.interface import Location, ScanContext
from weightguard.analysis.scanner import Scanner, ScanSettings
from weightguard.errors import AnalysisError
from weightguard.findings import Finding, Rule, RuleKind, Severity
from weightguard.formats.interface import Candidate, Confidence, Detection, FileFormat
from weightguard.limits import Limits
from weightguard.policy.rules import FormatGate
from weightguard.sources.interface import ArtifactFile, ByteSource, BytesSource

EVIL = Rule("WG-TST-100", "evil byte", Severity.CRITICAL, "The fake analyzer saw an 'E'.")


def detect_by_first_byte(source: ByteSource, limits: Limits) -> Detection:
    first = source.read_at(0, 1)
    table = {
        b"Z": [Candidate(FileFormat.ZIP, Confidence.CERTAIN, "fake zip")],
        b"P": [Candidate(FileFormat.PICKLE, Confidence.LIKELY, "fake pickle")],
        b"G": [  # a polyglot: both formats are strong
            Candidate(FileFormat.PICKLE, Confidence.LIKELY, "fake pickle"),
            Candidate(FileFormat.ZIP, Confidence.LIKELY, "fake zip"),
        ],
        b"T": [Candidate(FileFormat.TEXT, Confidence.CERTAIN, "text")],
        b"Q": [Candidate(FileFormat.GGUF, Confidence.CERTAIN, "fake gguf")],
    }
    return Detection(tuple(table.get(first, [Candidate(FileFormat.UNKNOWN, Confidence.POSSIBLE, "?")])))


class FakeZip:
    """Treats every following byte as a nested member."""

    name = "fake-zip"
    formats = frozenset({FileFormat.ZIP})

    def analyze(self, source: ByteSource, where: Location, ctx: ScanContext) -> Iterator[Finding]:
        data = source.read_at(1, source.size)
        for i, byte in enumerate(data):
            yield from ctx.nested(BytesSource(bytes([byte]) + data[i + 1 :]), where.child(f"m{i}"))
            return


class FakePickle:
    """Flags an 'E' anywhere; raises on an 'X' (an analyzer that could not run)."""

    name = "fake-pickle"
    formats = frozenset({FileFormat.PICKLE})

    def analyze(self, source: ByteSource, where: Location, ctx: ScanContext) -> Iterator[Finding]:
        data = source.read_at(0, source.size)
        if b"X" in data:
            raise AnalysisError("cannot analyse X")
        if b"E" in data:
            yield EVIL.at(where.path, "found E", member=where.member)


def make(settings: ScanSettings | None = None) -> Scanner:
    return Scanner(
        settings or ScanSettings(),
        detect_by_first_byte,
        {FileFormat.ZIP: [FakeZip()], FileFormat.PICKLE: [FakePickle()]},
    )


def art(data: bytes, name: str = "f") -> ArtifactFile:
    return ArtifactFile(name, len(data), BytesSource(data))


def test_nested_members_are_analysed_with_their_location() -> None:
    scan = make().scan(art(b"ZPE", "model.bin"))
    assert [(f.code, f.location) for f in scan.outcome.findings] == [("WG-TST-100", "model.bin:m0")]
    assert scan.format is FileFormat.ZIP
    assert [p.location.member for p in scan.parts] == ["", "m0"]


def test_every_strong_candidate_of_a_polyglot_is_analysed() -> None:
    scan = make().scan(art(b"GPE"))
    # pickle analysis flags it, and the zip reading finds the nested pickle too
    assert [f.location for f in scan.outcome.findings] == ["f", "f:m0"]


def test_nesting_beyond_the_limit_is_an_error_not_a_crash() -> None:
    settings = ScanSettings(limits=Limits(max_nesting_depth=2))
    scan = make(settings).scan(art(b"ZZZZZP"))
    assert [f.code for f in scan.outcome.errors] == ["WG-LIM-001"]
    assert scan.outcome.errors[0].evidence["resource"] == "max_nesting_depth"


def test_an_analyzer_that_cannot_run_makes_the_file_incomplete() -> None:
    scan = make().scan(art(b"PX"))
    assert [f.code for f in scan.outcome.errors] == ["WG-ERR-001"]
    assert not scan.outcome.complete


def test_a_format_without_analyzer_is_skipped_not_passed() -> None:
    scan = make().scan(art(b"Q\x01"))
    assert [f.code for f in scan.outcome.skipped] == ["WG-ERR-002"]
    assert scan.outcome.skipped[0].kind is RuleKind.SKIPPED


def test_text_needs_no_analyzer() -> None:
    assert make().scan(art(b"Text")).outcome.complete


def test_files_over_max_file_bytes_are_not_read() -> None:
    class Exploding:
        size = 10**12

        def read_at(self, offset: int, length: int) -> bytes:
            raise AssertionError("must not read")

    scan = make().scan(ArtifactFile("huge.bin", 10**12, Exploding()))
    assert [f.code for f in scan.outcome.errors] == ["WG-LIM-002"]


def test_the_time_budget_stops_a_file() -> None:
    ticks = itertools.count(0, 100)
    settings = ScanSettings(limits=Limits(max_seconds_per_file=150), clock=lambda: float(next(ticks)))
    scan = make(settings).scan(art(b"ZZZZP"))
    assert scan.outcome.errors[0].evidence["resource"] == "max_seconds_per_file"


def test_the_format_gate_reports_refused_formats_at_any_depth() -> None:
    settings = ScanSettings(formats=FormatGate(frozenset(), frozenset({FileFormat.PICKLE})))
    scan = make(settings).scan(art(b"ZP", "x.zip"))
    assert [(f.code, f.location) for f in scan.outcome.findings] == [("WG-POL-001", "x.zip:m0")]
