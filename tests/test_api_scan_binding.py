"""``weightguard scan`` does not hash, yet a file rewritten while it is scanned is never approved (issue 16)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from weightguard import api
from weightguard.analysis.scanner import FileScan
from weightguard.policy.load import LoadedPolicy
from weightguard.sources.interface import ArtifactFile


def test_an_unchanged_file_is_approved(tmp_path: Path) -> None:
    path = tmp_path / "weights.pkl"
    path.write_bytes(pickle.dumps({"w": [1.0, 2.0]}, protocol=2))
    assert api.scan([path]).verdict == "approved"


def test_a_file_rewritten_while_it_is_scanned_is_refused_as_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real scanner, then a writer that changes the bytes in place (patched in: no timing race
    # in the suite). The scan saw the old bytes; the report must not approve "this file".
    path = tmp_path / "weights.pkl"
    path.write_bytes(pickle.dumps({"w": [1.0, 2.0]}, protocol=2))
    real = api.make_scanner

    class RewritingScanner:
        def __init__(self, loaded: LoadedPolicy) -> None:
            self.real = real(loaded)

        def scan(self, artifact: ArtifactFile) -> FileScan:
            result = self.real.scan(artifact)
            with path.open("r+b") as fh:
                fh.write(pickle.dumps({"w": [3.0, 4.0]}, protocol=2))
            return result

    monkeypatch.setattr(api, "make_scanner", RewritingScanner)
    report = api.scan([path])
    assert report.verdict != "approved"
    assert [f.code for f in report.findings if f.blocking] == ["WG-SRC-005"]
