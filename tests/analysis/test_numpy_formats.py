"""The .npy analyzer: strict headers, exact sizes, object arrays handed to the pickle engine."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest

from weightguard.analysis.interface import Location, PickleSettings, ScanContext
from weightguard.analysis.numpy_formats import NumpyAnalyzer, parse_npy_header
from weightguard.errors import LimitExceeded
from weightguard.findings import Finding
from weightguard.formats import codes
from weightguard.limits import Limits
from weightguard.sources.interface import BytesSource


def _scan(data: bytes, limits: Limits | None = None) -> list[Finding]:
    ctx = ScanContext(limits or Limits(), PickleSettings(), lambda source, where: iter(()))
    return list(NumpyAnalyzer().analyze(BytesSource(data), Location("a.npy"), ctx))


def _npy(arr: np.ndarray, version: tuple[int, int] | None = None) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, version=version, allow_pickle=True)
    return buf.getvalue()


def _raw(header: str, data: bytes = b"", version: int = 1) -> bytes:
    text = header.encode("latin1")
    length = struct.pack("<H", len(text)) if version == 1 else struct.pack("<I", len(text))
    return b"\x93NUMPY" + bytes([version, 0]) + length + text + data


@pytest.mark.parametrize(
    "arr",
    [
        np.arange(10, dtype=np.float32),
        np.zeros((3, 4), dtype=np.int64, order="F"),
        np.zeros((0, 5)),
        np.array(3.5),
        np.zeros(3, dtype=[("a", "<i4"), ("b", "<f8", (2,))]),
    ],
)
def test_numeric_arrays_have_no_findings(arr: np.ndarray) -> None:
    assert _scan(_npy(arr)) == []


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_every_header_version_parses(version: tuple[int, int]) -> None:
    header = parse_npy_header(BytesSource(_npy(np.arange(3), version)), 10_000)
    assert not isinstance(header, str)
    assert (header.version, header.shape) == (version[0], (3,))


def test_missing_or_extra_data_bytes_are_a_size_mismatch() -> None:
    data = _npy(np.arange(10, dtype=np.int32))
    assert [f.code for f in _scan(data[:-4])] == [codes.NPY_SIZE_MISMATCH.code]
    assert [f.code for f in _scan(data + b"\x80\x02N.")] == [codes.NPY_SIZE_MISMATCH.code]


@pytest.mark.parametrize(
    "header",
    [
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}",
        "{'descr': '<f4', 'fortran_order': 'no', 'shape': (2,)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}",
        "{'descr': 'not-a-dtype', 'fortran_order': False, 'shape': (2,)}",
        "__import__('os').system('true')",
        "{'descr': '<f4', 'fortran_order': False, 'shape': " + "(" * 500 + ")" * 500 + "}",
        "[1, 2]",
    ],
)
def test_malformed_or_non_literal_headers_are_refused_without_evaluation(header: str) -> None:
    assert [f.code for f in _scan(_raw(header, b"\x00" * 8))] == [codes.NPY_MALFORMED.code]


def test_bad_magic_version_and_truncated_header() -> None:
    assert [f.code for f in _scan(b"\x93NUMPY\x09\x00\x10\x00" + b" " * 16)] == [codes.NPY_MALFORMED.code]
    assert [f.code for f in _scan(_raw("{'descr': '<f4'")[:-3])] == [codes.NPY_MALFORMED.code]
    assert [f.code for f in _scan(b"\x93NUMPY")] == [codes.NPY_MALFORMED.code]


def test_a_header_over_max_header_bytes_raises_limit_exceeded() -> None:
    data = _npy(np.arange(3))
    with pytest.raises(LimitExceeded) as info:
        _scan(data, Limits(max_header_bytes=16))
    assert info.value.resource == "max_header_bytes"


def test_an_object_array_is_reported_and_its_pickle_analysed() -> None:
    class Boom:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            import os

            return (os.system, ("true",))

    benign = _scan(_npy(np.array([{"a": 1}, "x"], dtype=object)))
    assert [f.code for f in benign if f.code.startswith("WG-NPY")] == [codes.NPY_OBJECT_ARRAY.code]
    evil = _scan(_npy(np.array([Boom()], dtype=object)))
    assert codes.NPY_OBJECT_ARRAY.code in [f.code for f in evil]
    assert any(f.code.startswith("WG-PKL") for f in evil)
