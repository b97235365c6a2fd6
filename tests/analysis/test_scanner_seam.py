"""Issue 15: no exception escapes one file's analysis; a crashing analyzer fails that file closed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from weightguard.analysis.interface import Location, ScanContext
from weightguard.analysis.scanner import Scanner, ScanSettings, scan_artifacts
from weightguard.findings import Finding
from weightguard.formats.interface import Candidate, Confidence, Detection, FileFormat
from weightguard.limits import Limits
from weightguard.scan_codes import ANALYZER_CRASHED
from weightguard.sources.interface import ArtifactFile, ByteSource, BytesSource


def _numpy(_source: ByteSource, _limits: Limits) -> Detection:
    return Detection((Candidate(FileFormat.NUMPY, Confidence.LIKELY, "fake npy"),))


class Raising:
    """An analyzer that raises whatever exception the file's first byte names, after one finding."""

    name = "raising"
    formats = frozenset({FileFormat.NUMPY})
    kinds: dict[bytes, Exception] = {
        b"S": SyntaxError("invalid syntax"),  # what numpy's header parser raised on a malformed .npy
        b"M": MemoryError(),
        b"R": RecursionError("maximum recursion depth exceeded"),
        b"K": KeyError("descr"),
    }

    def analyze(self, source: ByteSource, where: Location, ctx: ScanContext) -> Iterator[Finding]:
        exc = self.kinds.get(source.read_at(0, 1))
        if exc is not None:
            raise exc
        return iter(())


def _scanner() -> Scanner:
    return Scanner(ScanSettings(), _numpy, {FileFormat.NUMPY: [Raising()]})


@pytest.mark.parametrize(
    ("first", "name"), [(b"S", "SyntaxError"), (b"M", "MemoryError"), (b"R", "RecursionError"), (b"K", "KeyError")]
)
def test_issue_15_an_analyzer_raising_a_foreign_exception_blocks_that_file_as_an_error(first: bytes, name: str) -> None:
    scan = _scanner().scan(ArtifactFile("bad.npy", 4, BytesSource(first + b"xyz")))
    assert [f.code for f in scan.outcome.errors] == [ANALYZER_CRASHED.code]
    assert scan.outcome.errors[0].evidence["exception"] == name
    assert name in scan.outcome.errors[0].message
    assert not scan.outcome.complete  # fail closed: an error is never approved


def test_issue_15_the_run_goes_on_with_the_next_file_after_a_crash() -> None:
    files = [ArtifactFile("bad.npy", 2, BytesSource(b"S!")), ArtifactFile("good.npy", 2, BytesSource(b"ok"))]
    scans = scan_artifacts(_scanner(), files)
    assert [s.relpath for s in scans] == ["bad.npy", "good.npy"]
    assert not scans[0].outcome.complete
    assert scans[1].outcome.complete


def test_issue_15_a_keyboard_interrupt_still_stops_the_run() -> None:
    class Interrupting(Raising):
        def analyze(self, source: ByteSource, where: Location, ctx: ScanContext) -> Iterator[Finding]:
            raise KeyboardInterrupt

    scanner = Scanner(ScanSettings(), _numpy, {FileFormat.NUMPY: [Interrupting()]})
    with pytest.raises(KeyboardInterrupt):
        scanner.scan(ArtifactFile("x.npy", 1, BytesSource(b"x")))
