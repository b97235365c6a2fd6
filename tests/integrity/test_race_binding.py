"""Issue 16: the verdict binds the bytes; an attestation never approves bytes that were not scanned."""

from __future__ import annotations

import importlib.util
import os
import pickle
import sys
from pathlib import Path

import pytest

from weightguard.integrity import binding
from weightguard.integrity.binding import ChangedWhileHashedError, RecordingSource, scan_recorded
from weightguard.integrity.hashing import CHUNK_BYTES, HashRequest, hash_files
from weightguard.pipeline import VerifyOptions, verify
from weightguard.policy.load import load_builtin
from weightguard.sources.interface import ArtifactFile
from weightguard.sources.local import FileSource, LocalSource

REPO = Path(__file__).resolve().parents[2]
# Never loaded here: a pickle whose load would run os.system.
EVIL = b"\x80\x04cos\nsystem\n(S'touch marker" + b" " * 40 + b"'\ntR."


def _safe(length: int) -> bytes:
    head = pickle.dumps({"w": [1.0], "pad": ""}, protocol=4)
    data = pickle.dumps({"w": [1.0], "pad": "p" * (length - len(head))}, protocol=4)
    assert len(data) == length
    return data


def _race_harness():  # noqa: ANN202 - a module loaded by path
    spec = importlib.util.spec_from_file_location("race_binding", REPO / "benchmarks" / "race_binding.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["race_binding"] = module
    spec.loader.exec_module(module)
    return module


class _Mutable:
    """A byte source whose bytes a test can change between the scan and the hashing."""

    def __init__(self, data: bytes) -> None:
        self.data = bytearray(data)

    @property
    def size(self) -> int:
        return len(self.data)

    def read_at(self, offset: int, length: int) -> bytes:
        return bytes(self.data[max(0, offset) : max(0, offset) + max(0, length)])


def test_bytes_changed_inside_a_range_the_scan_read_fail_the_hashing_even_without_a_file() -> None:
    inner = _Mutable(b"A" * 100 + b"B" * 100)
    recorded = RecordingSource(inner)
    assert recorded.read_at(90, 20) == b"A" * 10 + b"B" * 10
    inner.data[95] = ord("X")
    with pytest.raises(ChangedWhileHashedError, match="bytes 90-110 differ"):
        hash_files([ArtifactFile("m.bin", 200, recorded)], HashRequest())


def test_bytes_changed_outside_every_range_the_scan_read_do_not_change_what_it_would_say() -> None:
    inner = _Mutable(b"A" * 200)
    recorded = RecordingSource(inner)
    recorded.read_at(0, 10)
    recorded.read_at(10, 10)  # consecutive reads merge into one range
    inner.data[150] = ord("X")
    [(start, end)] = [(r.start, r.end) for r in recorded.log.ranges()]
    assert (start, end) == (0, 20)
    digest = hash_files([ArtifactFile("m.bin", 200, recorded)], HashRequest())["m.bin"].digests["sha256"]
    assert digest == __import__("hashlib").sha256(bytes(inner.data)).hexdigest()


def test_ranges_are_checked_across_chunk_boundaries_of_a_streamed_file() -> None:
    size = 2 * CHUNK_BYTES + 10
    inner = _Mutable(bytes(size))
    recorded = RecordingSource(inner)
    recorded.read_at(CHUNK_BYTES - 5, 10)  # straddles the first chunk boundary
    inner.data[CHUNK_BYTES + 2] = 1
    with pytest.raises(ChangedWhileHashedError):
        hash_files([ArtifactFile("big.bin", size, recorded)], HashRequest())


def test_a_file_rewritten_in_place_between_scan_and_hash_is_blocked_not_attested(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 16: the scan saw a safe pickle, the hashing would have seen os.system."""
    model = tmp_path / "model"
    model.mkdir()
    target = model / "model.pkl"
    target.write_bytes(_safe(len(EVIL)))
    real = binding.scan_recorded

    def scan_then_rewrite(scan, artifact):  # noqa: ANN001, ANN202
        result = real(scan, artifact)
        fd = os.open(target, os.O_WRONLY)
        os.pwrite(fd, EVIL, 0)
        os.close(fd)
        return result

    monkeypatch.setattr("weightguard.pipeline.scan_recorded", scan_then_rewrite)
    key = _key(tmp_path)
    attestation = tmp_path / "model.att.json"
    report = verify(str(model), load_builtin("default"), VerifyOptions(attest_key=key, attestation_path=attestation))
    assert report.verdict != "approved"
    assert "WG-SRC-005" in {f.code for f in report.findings}
    assert not attestation.exists()


def test_a_file_truncated_while_it_is_hashed_is_a_finding_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 15: a mapped read of a truncated file was SIGBUS (exit 135, no report)."""
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(4 * CHUNK_BYTES))
    [artifact] = LocalSource(path).collect().files
    _, recorded = scan_recorded(lambda a: a.source.read_at(0, 64), artifact)
    real = FileSource.readinto_at

    def read_then_truncate(self: FileSource, offset: int, buffer: memoryview) -> int:
        got = real(self, offset, buffer)
        os.truncate(path, CHUNK_BYTES // 2)  # after the first chunk, the file shrinks under the reader
        return got

    monkeypatch.setattr(FileSource, "readinto_at", read_then_truncate)
    with pytest.raises(ChangedWhileHashedError, match="short read"):
        hash_files([recorded], HashRequest())


def test_a_file_replaced_by_rename_after_the_scan_is_changed_while_verified(tmp_path: Path) -> None:
    path = tmp_path / "m.pkl"
    data = _safe(64)
    path.write_bytes(data)
    [artifact] = LocalSource(path).collect().files
    _, recorded = scan_recorded(lambda a: a.source.read_at(0, 64), artifact)
    fresh = tmp_path / "fresh"
    fresh.write_bytes(data)  # the very same bytes, another file: refused all the same
    fresh.replace(path)
    with pytest.raises(ChangedWhileHashedError, match="replaced or rewritten"):
        hash_files([recorded], HashRequest())


def test_a_race_of_writes_truncations_and_renames_never_gets_a_bad_approval_or_a_crash() -> None:
    """Issue 16 and 15: 200 verify --attest runs (2 of them through the CLI) against a writer."""
    tally = _race_harness().run_race(200, seed=16, cli_every=100, deadline_s=50)
    assert tally.iterations >= 50
    assert (tally.bad_approvals, tally.crashes) == (0, 0), tally.notes[:5]
    assert tally.approvals > 0  # the race did not just block everything


def _key(folder: Path) -> Path:
    return _race_harness().make_key(folder)
