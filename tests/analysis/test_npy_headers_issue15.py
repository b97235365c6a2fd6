"""Issue 15: every malformed .npy header is a finding (never an exception), and headers are read as numpy reads them."""

from __future__ import annotations

import io
import struct
import tokenize
import warnings
from pathlib import Path

import numpy as np
import pytest

from weightguard.analysis.interface import Location, PickleSettings, ScanContext
from weightguard.analysis.numpy_formats import NpyHeader, NumpyAnalyzer, parse_npy_header
from weightguard.api import scan
from weightguard.limits import Limits
from weightguard.sources.interface import BytesSource

GOOD = "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }"


def npy(header: str, version: tuple[int, int] = (1, 0), data: bytes = b"\x00" * 24) -> bytes:
    text = header.encode("latin1" if version[0] < 3 else "utf8")
    length = struct.pack("<H" if version[0] == 1 else "<I", len(text))
    return b"\x93NUMPY" + bytes(version) + length + text + data


def numpy_accepts(data: bytes) -> bool:
    """What ``numpy.lib.format.read_array`` (no pickles) decides about the header."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
    except (ValueError, SyntaxError, TypeError, KeyError, OverflowError, UnicodeError, tokenize.TokenError):
        return False
    return True


def ours_accepts(data: bytes) -> bool:
    return isinstance(parse_npy_header(BytesSource(data), 1 << 16), NpyHeader)


HEADERS = [
    pytest.param(npy(GOOD), id="ordinary"),
    pytest.param(npy(GOOD, (2, 0)), id="version-2"),
    pytest.param(npy(GOOD, (3, 0)), id="version-3"),
    pytest.param(npy(GOOD, (1, 1)), id="minor-version-1"),
    pytest.param(npy(GOOD, (4, 0)), id="version-4"),
    pytest.param(npy(GOOD.replace("(3,)", "(3L,)")), id="python-2-long-v1"),
    pytest.param(npy(GOOD.replace("(3,)", "(3L,)"), (2, 0)), id="python-2-long-v2"),
    pytest.param(npy(GOOD.replace("(3,)", "(3L,)"), (3, 0)), id="python-2-long-v3"),
    pytest.param(npy(GOOD.replace("'<f8'", "'i4,('")), id="descr-numpy-parser-syntax-error"),
    pytest.param(npy(GOOD.replace("'<f8'", "'(-1,)i4'")), id="descr-bad-subarray"),
    pytest.param(npy(GOOD.replace("(3,)", "(3, 'x')")), id="shape-with-text"),
    pytest.param(npy(GOOD.replace("(3,)", "(True, 3)")), id="shape-with-bool"),
    pytest.param(npy(GOOD.replace("False", "0")), id="fortran-order-int"),
    pytest.param(npy("{'descr': '<f8', 'fortran_order': False}"), id="missing-key"),
    pytest.param(npy("[1, 2"), id="unclosed-literal"),
    pytest.param(npy("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), 'shape': (3,)}"), id="duplicate-key"),
    pytest.param(npy("{'descr': '\u00e9', 'fortran_order': False, 'shape': (3,), }", (3, 0)), id="utf8-descr"),
    pytest.param(b"\x93NUMPY\x03\x00\x05\x00\x00\x00\xff\xfe{}}}", id="not-utf8-v3"),
]


@pytest.mark.parametrize("data", HEADERS)
def test_issue_15_npy_headers_are_accepted_exactly_when_numpy_accepts_them(data: bytes) -> None:
    assert ours_accepts(data) == numpy_accepts(data)


def test_issue_15_a_negative_dimension_is_malformed_here_although_numpy_parses_it() -> None:
    assert not ours_accepts(npy(GOOD.replace("(3,)", "(-1,)")))


@pytest.mark.parametrize("data", HEADERS)
def test_issue_15_no_header_raises_even_when_warnings_are_errors(data: bytes) -> None:
    ctx = ScanContext(limits=Limits(), pickle=PickleSettings(), dispatch=lambda source, where: iter(()))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        findings = list(NumpyAnalyzer().analyze(BytesSource(data), Location("a.npy"), ctx))
    assert ours_accepts(data) or any(f.code == "WG-NPY-001" for f in findings)


def test_issue_15_a_malformed_header_does_not_stop_the_run(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npy"
    bad.write_bytes(npy(GOOD.replace("'<f8'", "'i4,('")))
    good = tmp_path / "good.npy"
    np.save(good, np.arange(3.0))
    report = scan([tmp_path])
    by_name = {Path(f.path).name: f for f in report.files}
    assert set(by_name) == {"bad.npy", "good.npy"}
    assert any(f.code == "WG-NPY-001" and Path(f.path).name == "bad.npy" for f in report.findings)
    assert not [f for f in report.findings if f.blocking and Path(f.path).name == "good.npy"]


def test_issue_15_a_python_2_header_file_is_approved(tmp_path: Path) -> None:
    path = tmp_path / "old.npy"
    path.write_bytes(npy(GOOD.replace("(3,)", "(3L,)"), data=np.arange(3.0).tobytes()))
    assert scan([path]).verdict == "approved"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.load(path).tolist() == [0.0, 1.0, 2.0]  # numeric data, no pickle: safe to load here
