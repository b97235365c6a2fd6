"""Encoded scans decode to the very same FileScan, and move to any relative path."""

from __future__ import annotations

import dataclasses
import zipfile
from io import BytesIO

from catalogue.builders import evil_pickle
from weightguard.api import make_scanner
from weightguard.catalogue.codec import UNIT_PATH, decode_scan, encode_scan, relocate
from weightguard.policy.load import load_builtin
from weightguard.sources.interface import ArtifactFile, BytesSource


def _zip() -> bytes:
    buffer = BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("archive/data.pkl", evil_pickle())
        zf.writestr("archive/version", b"3\n")
    return buffer.getvalue()


def _scan(data: bytes, relpath: str):
    return make_scanner(load_builtin("default")).scan(ArtifactFile(relpath, len(data), BytesSource(data)))


def test_a_scan_with_findings_nested_parts_and_evidence_round_trips_exactly() -> None:
    scan = _scan(_zip(), UNIT_PATH)
    assert scan.outcome.findings and len(scan.parts) > 1  # the fixture exercises every field
    assert decode_scan(encode_scan(scan)) == scan


def test_a_scan_with_skipped_and_empty_buckets_round_trips_exactly() -> None:
    for data in (b"", bytes(range(256)) * 3, b'{"a": 1}'):
        scan = _scan(data, UNIT_PATH)
        assert decode_scan(encode_scan(scan)) == scan


def test_a_relocated_scan_equals_a_scan_made_at_that_path() -> None:
    data = _zip()
    moved = relocate(decode_scan(encode_scan(_scan(data, UNIT_PATH))), "sub/pytorch_model.bin")
    direct = _scan(data, "sub/pytorch_model.bin")
    assert dataclasses.replace(moved, seconds=0.0) == dataclasses.replace(direct, seconds=0.0)


def test_a_corrupt_cached_scan_is_an_analysis_error_not_a_crash() -> None:
    import pytest

    from weightguard.errors import AnalysisError

    with pytest.raises(AnalysisError):
        decode_scan('{"relpath": 1}')
