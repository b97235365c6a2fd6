"""The corpus as a specification: every attack blocked, every real checkpoint approved, nothing runs.

Each malicious file must be rejected (exit 1); a few are allowed to fail
closed instead (exit 2) where the recipe documents it. Each benign file must be
approved with no blocking finding. The payloads would create a marker file:
it must never exist, checked after every test and at the end of the module.
The whole corpus is also scanned once through the CLI with ``--format json``.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.corpus.build import Corpus, all_specs, shared_corpus
from tests.corpus.spec import CaseSpec
from tests.corpus.summary import tally
from weightguard.api import scan
from weightguard.report.model import Report

pytestmark = pytest.mark.timeout(180)


def _params(expected: str) -> list[object]:
    return [pytest.param(s, id=s.relpath) for s in all_specs() if s.expected == expected]


@pytest.fixture(scope="module")
def corpus() -> Iterator[Corpus]:
    built = shared_corpus()
    yield built
    assert not built.marker.exists(), "a payload ran during the corpus tests"


@pytest.fixture(autouse=True)
def _marker_never_created(corpus: Corpus) -> Iterator[None]:
    yield
    assert not corpus.marker.exists(), "a payload ran: the marker file exists"


def _files(corpus: Corpus, spec: CaseSpec) -> list[Path]:
    if spec.needs is not None and importlib.util.find_spec(spec.needs) is None:
        pytest.skip(f"{spec.needs} is not installed")
    files = [case.path for case in corpus.group(spec.relpath)]
    assert files, f"recipe {spec.relpath} wrote nothing"
    return files


def _describe(report: Report) -> str:
    return "; ".join(f"{f.code} {f.severity.value} {f.member or '-'}: {f.message}" for f in report.findings) or "none"


@pytest.mark.parametrize("spec", _params("blocked"))
def test_malicious_file_is_rejected(corpus: Corpus, spec: CaseSpec) -> None:
    for path in _files(corpus, spec):
        report = scan([path])
        allowed = {"rejected", "incomplete"} if spec.incomplete_ok else {"rejected"}
        assert report.verdict in allowed, f"{spec.relpath} [{spec.reference}] got {report.verdict}: {_describe(report)}"
        assert report.exit_code == (1 if report.verdict == "rejected" else 2)
        blocking = [f for f in report.findings if f.blocking]
        assert blocking, f"{spec.relpath}: not approved yet nothing blocks"
        assert all(Path(f.path).name == path.name for f in blocking), _describe(report)


@pytest.mark.parametrize("spec", _params("approved"))
def test_benign_file_is_approved(corpus: Corpus, spec: CaseSpec) -> None:
    for path in _files(corpus, spec):
        report = scan([path])
        assert report.verdict == "approved", f"{path.name} [{spec.reference}]: {_describe(report)}"
        assert report.exit_code == 0
        assert not [f for f in report.findings if f.blocking]
        assert [Path(f.path).name for f in report.files] == [path.name]


def test_whole_corpus_scanned_by_the_cli_as_json(corpus: Corpus) -> None:
    run = subprocess.run(  # noqa: S603 - our own interpreter and arguments
        [sys.executable, "-m", "weightguard", "scan", str(corpus.root), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert "Traceback" not in run.stderr, run.stderr[-2000:]
    assert run.returncode == 1, run.stderr[-2000:]
    report = Report.model_validate_json(run.stdout)
    assert json.loads(run.stdout)["verdict"] == report.verdict == "rejected"
    assert report.exit_code == 1
    assert {Path(f.path).resolve() for f in report.files} == {c.path.resolve() for c in corpus.cases}
    blocking: dict[Path, int] = {}
    for finding in report.findings:
        if finding.blocking:
            key = Path(finding.path).resolve()
            blocking[key] = blocking.get(key, 0) + 1
    result = tally(corpus.cases, blocking)
    print(f"\ncorpus through the CLI: {result}")
    assert not result.missed, str(result)
    assert not result.false_alarms, str(result)
    assert not corpus.marker.exists()
