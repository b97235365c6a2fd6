"""Tally a scan of the corpus: malicious caught / total, benign passed / total.

Run as a script (``python -m tests.corpus.summary``) to build the corpus,
scan every file once through the public API and print the counts with the
misses and false alarms by name. The tally function is shared with the CLI
test in :mod:`tests.corpus.test_threats`. Not handled here: asserting.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.corpus.build import Case, shared_corpus


@dataclass(frozen=True, slots=True)
class Tally:
    """How a scanner did on the corpus."""

    caught: int
    malicious: int
    passed: int
    benign: int
    missed: tuple[str, ...]
    false_alarms: tuple[str, ...]

    def __str__(self) -> str:
        line = f"malicious caught {self.caught}/{self.malicious}, benign passed {self.passed}/{self.benign}"
        if self.missed:
            line += f"\n  missed: {', '.join(self.missed)}"
        if self.false_alarms:
            line += f"\n  false alarms: {', '.join(self.false_alarms)}"
        return line


def tally(cases: Sequence[Case], blocking_by_path: Mapping[Path, int], incomplete: Iterable[Path] = ()) -> Tally:
    """Count outcomes from the number of blocking findings per resolved file path.

    A malicious file counts as caught when it has at least one blocking finding
    (a rejection, or a fail-closed error); a benign file passes when it has none.
    """
    failed_closed = set(incomplete)
    missed = [c.name for c in cases if c.expected == "blocked" and not blocking_by_path.get(c.path.resolve(), 0)]
    alarms = [
        c.name
        for c in cases
        if c.expected == "approved" and (blocking_by_path.get(c.path.resolve(), 0) or c.path.resolve() in failed_closed)
    ]
    malicious = sum(1 for c in cases if c.expected == "blocked")
    return Tally(
        caught=malicious - len(missed),
        malicious=malicious,
        passed=len(cases) - malicious - len(alarms),
        benign=len(cases) - malicious,
        missed=tuple(missed),
        false_alarms=tuple(alarms),
    )


def main() -> int:
    """Build, scan each file through :func:`weightguard.api.scan`, print the tally and timings."""
    from weightguard.api import scan

    started = time.perf_counter()
    corpus = shared_corpus()
    built = time.perf_counter()
    blocking: dict[Path, int] = {}
    for case in corpus.cases:
        report = scan([case.path])
        blocking[case.path.resolve()] = sum(1 for f in report.findings if f.blocking)
    done = time.perf_counter()
    print(tally(corpus.cases, blocking))
    print(f"built {len(corpus.cases)} files in {built - started:.1f}s, scanned in {done - built:.1f}s")
    print(f"marker created: {corpus.marker.exists()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
