"""Issue 15: weightguard reads a joblib file exactly where ``joblib.load`` and ``pickle.load`` read it.

Every malicious case is first proven real: the real loader, in a subprocess, creates the
marker file. Then weightguard must reject the same bytes: raw, gzip-compressed and as a zip member.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pickle_builders import blocking, make_ctx

from tests.corpus.joblib_numpy_cases import RAW, benign_arrays, gzipped, zipped
from tests.corpus.spec import Payload
from weightguard.analysis.interface import Location
from weightguard.analysis.joblib_format import JoblibAnalyzer
from weightguard.analysis.joblib_wrapper import apply_state, numpy_dtype
from weightguard.analysis.opcodes import GlobalRef, Made, SymDict
from weightguard.api import scan
from weightguard.findings import Finding
from weightguard.sources.interface import BytesSource

joblib = pytest.importorskip("joblib")

_LOAD = """
import pickle, sys, zipfile
import joblib
path, loader = sys.argv[1], sys.argv[2]
source = zipfile.ZipFile(path).open("model.joblib") if path.endswith(".zip") else path
try:
    if loader == "pickle":
        pickle.load(source if not isinstance(source, str) else open(source, "rb"))
    else:
        joblib.load(source)
except Exception as exc:  # the payload has run by the time the load fails
    print(type(exc).__name__)
"""
VARIANTS = {"raw": lambda b: b, "gzip": gzipped, "zip": zipped}
CASES = [
    pytest.param(name, variant, id=f"{name}-{variant}")
    for name, (_, loader) in RAW.items()
    for variant in VARIANTS
    if not (loader == "pickle" and variant == "gzip")  # pickle.load does not decompress
]


def _write(tmp_path: Path, name: str, variant: str) -> tuple[Path, Path]:
    marker = tmp_path / "PWNED"
    build = VARIANTS[variant](RAW[name][0])
    path = tmp_path / ("model.zip" if variant == "zip" else "model.joblib")
    path.write_bytes(build(Payload(marker)))
    return path, marker


def analyze(data: bytes) -> list[Finding]:
    return list(JoblibAnalyzer().analyze(BytesSource(data), Location("model.joblib"), make_ctx()))


@pytest.mark.parametrize(("name", "variant"), CASES)
def test_issue_15_desync_case_runs_its_payload_under_the_real_loader(tmp_path: Path, name: str, variant: str) -> None:
    path, marker = _write(tmp_path, name, variant)
    loader = RAW[name][1]
    subprocess.run([sys.executable, "-c", _LOAD, str(path), loader], cwd=tmp_path, timeout=60, check=True)
    assert marker.exists(), f"{name} ({variant}) did not run under {loader}.load"


@pytest.mark.parametrize(("name", "variant"), CASES)
def test_issue_15_desync_case_is_rejected_by_scan(tmp_path: Path, name: str, variant: str) -> None:
    path, marker = _write(tmp_path, name, variant)
    report = scan([path])
    assert report.verdict == "rejected", [f.message for f in report.findings]
    assert not marker.exists()


@pytest.mark.parametrize("name", [n for n, (_, loader) in RAW.items() if loader == "joblib"])
def test_issue_15_the_payload_is_seen_in_joblibs_own_view(name: str) -> None:
    findings = analyze(RAW[name][0](Payload(Path("/nonexistent/PWNED"))))
    joblib_view = [f for f in blocking(findings) if "<as pickle.load>" not in f.member]
    assert joblib_view, [f.message for f in findings]


def test_issue_15_an_array_inside_a_frame_is_reported() -> None:
    findings = analyze(RAW["frame_spans_array"][0](Payload(Path("/nonexistent/PWNED"))))
    assert "WG-PKL-017" in {f.code for f in findings}


def test_issue_15_pickle_load_of_the_array_bytes_is_judged_and_diverges() -> None:
    findings = analyze(RAW["plain_pickle_in_array"][0](Payload(Path("/nonexistent/PWNED"))))
    assert "WG-PKL-018" in {f.code for f in findings}
    assert any(f.code == "WG-PKL-001" and "<as pickle.load>" in f.member for f in findings)


class _NoTell(io.RawIOBase):
    """A write-only stream without tell(): joblib then writes arrays without alignment padding."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: object) -> int:
        view = memoryview(b)  # type: ignore[arg-type]
        self.data += view
        return view.nbytes

    def tell(self) -> int:
        raise io.UnsupportedOperation


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
@pytest.mark.parametrize("compress", [0, 3, ("gzip", 3), ("bz2", 3), ("xz", 3)])
def test_issue_15_ordinary_joblib_dumps_are_approved(protocol: int, compress: object) -> None:
    out = io.BytesIO()
    joblib.dump(benign_arrays(), out, compress=compress, protocol=protocol)
    findings = analyze(out.getvalue())
    assert blocking(findings) == [], [f.message for f in findings]


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_issue_15_unaligned_joblib_dumps_are_approved(protocol: int) -> None:
    out = _NoTell()
    joblib.dump(benign_arrays(), out, protocol=protocol)
    assert blocking(analyze(bytes(out.data))) == []


def test_issue_15_ordinary_joblib_dump_file_is_approved_by_scan_and_loads(tmp_path: Path) -> None:
    path = tmp_path / "model.joblib"
    joblib.dump(benign_arrays(), path)
    assert scan([path]).verdict == "approved"
    loaded = joblib.load(path)  # our own benign file
    assert loaded["text"].dtype == np.dtype("<U3")


def _symdict(*pairs: tuple[object, object]) -> SymDict:
    return SymDict.of([x for pair in pairs for x in pair])


def test_issue_15_the_last_duplicate_state_key_wins_as_in_dict_update() -> None:
    attrs: dict[str, object] = {}
    assert apply_state(attrs, _symdict(("shape", (5,)), ("shape", (0,)))) is None
    assert attrs["shape"] == (0,)


def test_issue_15_slot_state_and_later_builds_update_the_attributes() -> None:
    attrs: dict[str, object] = {}
    assert apply_state(attrs, (_symdict(("shape", (5,))), _symdict(("order", "F")))) is None
    assert apply_state(attrs, None) is None
    assert attrs == {"shape": (5,), "order": "F"}


def test_issue_15_a_state_with_more_entries_than_are_kept_is_not_modelled() -> None:
    big = _symdict(*[(f"k{i}", i) for i in range(100)])
    assert apply_state({}, big) is not None


def test_issue_15_dtype_item_sizes_come_from_numpy() -> None:
    ref = GlobalRef("numpy", "dtype", 0, "GLOBAL")
    unicode = Made(ref, ("U5", False, True))
    assert numpy_dtype(unicode) == np.dtype("<U5")
    unicode.state = (3, ">", None, None, None, 20, 4, 8)
    found = numpy_dtype(unicode)
    assert found is not None and found.itemsize == 20 and found.byteorder == ">"
    assert numpy_dtype(Made(ref, ("i4,(", False, True))) is None  # numpy's own parser raises SyntaxError
