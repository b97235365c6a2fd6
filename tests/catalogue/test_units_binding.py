"""A verify-many file unit's cached scan is about exactly the bytes whose sha256 keys it (issue 16)."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import pytest

from weightguard.analysis.scanner import FileScan
from weightguard.api import make_scanner
from weightguard.catalogue import units
from weightguard.catalogue.interface import FileUnit
from weightguard.errors import AnalysisError
from weightguard.policy.load import load_policy
from weightguard.sources.interface import ArtifactFile


def _unit(path: Path) -> FileUnit:
    data = path.read_bytes()
    return FileUnit(hashlib.sha256(data).hexdigest(), len(data), str(path))


def test_a_file_unit_of_unchanged_bytes_is_scanned(tmp_path: Path) -> None:
    path = tmp_path / "weights.pkl"
    path.write_bytes(pickle.dumps({"w": [1.0, 2.0]}, protocol=2))
    assert units.scan_file(_unit(path), load_policy(None))


def test_a_file_rewritten_between_its_scan_and_its_hash_is_an_error_not_a_cached_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The scan and the hash of one unit are two passes over the file; a writer between them must
    # not leave a cached scan keyed by a digest of bytes the scan never read. The patched scanner
    # is the real one, followed by the writer (patched: no timing-based race in the suite).
    path = tmp_path / "weights.pkl"
    path.write_bytes(pickle.dumps({"w": [1.0, 2.0]}, protocol=2))
    unit = _unit(path)
    evil = pickle.dumps({"w": [3.0, 4.0]}, protocol=2)
    assert len(evil) == unit.size

    class RewritingScanner:
        def __init__(self) -> None:
            self.real = make_scanner(load_policy(None))

        def scan(self, artifact: ArtifactFile) -> FileScan:
            result = self.real.scan(artifact)
            with path.open("r+b") as fh:  # same size, same inode: only the bytes change
                fh.write(evil)
            return result

    monkeypatch.setattr(units, "make_scanner", lambda _loaded: RewritingScanner())
    with pytest.raises(AnalysisError, match="changed"):
        units.scan_file(unit, load_policy(None))
