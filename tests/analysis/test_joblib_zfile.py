"""Issue 15 (red team): a file joblib.load reads as an old ``ZF`` zfile is analysed as joblib reads it.

``joblib.load`` sends every file starting with ``b"ZF"`` to ``numpy_pickle_compat.read_zfile``:
``int(field, 16)`` over the next 19 bytes (upper-case ``0X``, whitespace, underscores and a sign
pass), one optional space, ``zlib.decompress`` of the rest, then ``ZipNumpyUnpickler``. Such a file
can be printable UTF-8 text; that must not make it inert. Every malicious case is first proven
real with the real loader in a subprocess.
"""

from __future__ import annotations

import io
import pickle
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pickle_builders import blocking, codes_of, make_ctx

from tests.corpus.joblib_numpy_cases import ZFILE_RAW, old_zfile_numbers
from tests.corpus.spec import Payload
from weightguard.analysis.interface import Location
from weightguard.analysis.joblib_format import JoblibAnalyzer
from weightguard.api import scan
from weightguard.formats.detect import detect_bytes, zfile_header
from weightguard.formats.interface import FileFormat
from weightguard.sources.interface import BytesSource

joblib = pytest.importorskip("joblib")

_LOAD = "import sys, warnings; warnings.simplefilter('ignore'); import joblib; joblib.load(sys.argv[1])"
_REPO = Path(__file__).resolve().parents[2]
_ZF_CASES = [name for name in ZFILE_RAW if name != "zlib_stored_text.joblib"]


def _write(tmp_path: Path, name: str) -> tuple[Path, Path]:
    marker = tmp_path / "PWNED"
    path = tmp_path / name
    path.write_bytes(ZFILE_RAW[name](Payload(marker)))
    return path, marker


def _reference(field: bytes) -> int | None:
    """What joblib's read_zfile gets from the field, or None when it raises before inflating."""
    try:
        length = int(field, 16)
        zlib.decompress(zlib.compress(b""), 15, length)  # bufsize: negative and > Py_ssize_t raise
    except (ValueError, OverflowError):
        return None
    return length


@pytest.mark.parametrize("name", sorted(ZFILE_RAW))
def test_each_case_runs_its_payload_under_the_real_joblib_load(tmp_path: Path, name: str) -> None:
    path, marker = _write(tmp_path, name)
    subprocess.run([sys.executable, "-c", _LOAD, str(path)], cwd=tmp_path, timeout=60, check=True)
    assert marker.exists(), f"{name} did not run under joblib.load"


@pytest.mark.parametrize("name", sorted(ZFILE_RAW))
def test_each_case_is_rejected_by_scan(tmp_path: Path, name: str) -> None:
    path, marker = _write(tmp_path, name)
    report = scan([path])
    assert report.verdict == "rejected", [f.message for f in report.findings]
    assert "WG-PKL-001" in {f.code for f in report.findings}
    assert not marker.exists()


@pytest.mark.parametrize("name", _ZF_CASES)
def test_each_zf_case_is_detected_as_joblib_first_even_when_it_is_valid_text(name: str) -> None:
    data = ZFILE_RAW[name](Payload(Path("/nonexistent/PWNED")))
    assert detect_bytes(data).format is FileFormat.JOBLIB


def test_a_zf_file_that_is_printable_utf8_is_joblib_not_text() -> None:
    data = ZFILE_RAW["upper_hex_text.txt"](Payload(Path("/nonexistent/PWNED")))
    data.decode("utf-8")
    formats = [c.format for c in detect_bytes(data).candidates]
    assert formats[0] is FileFormat.JOBLIB and FileFormat.TEXT in formats


def test_verify_of_a_model_folder_with_the_text_zfile_as_model_joblib_is_rejected(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.joblib").write_bytes(ZFILE_RAW["space_text.joblib"](Payload(tmp_path / "PWNED")))
    (folder / "config.json").write_text('{"model_type": "sklearn"}')
    argv = [sys.executable, "-m", "weightguard", "verify", str(folder)]
    cli = subprocess.run(argv, capture_output=True, timeout=120, cwd=_REPO)
    assert cli.returncode == 1, cli.stdout.decode() + cli.stderr.decode()
    assert b"WG-PKL-001" in cli.stdout + cli.stderr


@pytest.mark.parametrize(
    "field",
    [b"0x10".ljust(19), b"0X" + b"%017X" % 16, b"\t0x10".ljust(19), b"0x_1_0".ljust(19), b"+0x10".ljust(19),
     b"10".rjust(19), b"-0x10".ljust(19), b"0x10L".ljust(19), b"0x1__0".ljust(19), b"\x1c0x10".ljust(19),
     b"\xa00x10".ljust(19), b"0x" + b"f" * 17, b"", b" " * 19, b"0x10\x00".ljust(19)],
)  # fmt: skip
def test_the_length_field_is_read_with_joblibs_own_semantics(field: bytes) -> None:
    header = zfile_header(b"ZF" + field + b"x")
    assert (header[0] if header else None) == _reference(field)


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(field=st.binary(min_size=19, max_size=19) | st.text("0123456789abcdefABCDEFxX_+- \t\n\r\x0b\x0c", min_size=19,
       max_size=19).map(str.encode))  # fmt: skip
def test_any_length_field_parses_exactly_when_joblib_parses_it(field: bytes) -> None:
    header = zfile_header(b"ZF" + field + b"x")
    assert (header[0] if header else None) == _reference(field)


def test_the_optional_space_after_the_field_is_skipped_as_joblib_does() -> None:
    assert zfile_header(b"ZF" + b"0x10".ljust(19) + b" x") == (16, 22)
    assert zfile_header(b"ZF" + b"0x10".ljust(19) + b"x ") == (16, 21)


def test_text_starting_with_zf_that_joblib_rejects_stays_text_and_is_approved(tmp_path: Path) -> None:
    for data in (b"ZFS pool notes: scrub weekly\n", b"ZF-0x10            " + b"a" * 40, b"ZF0x10L" + b" " * 30):
        assert detect_bytes(data).format is FileFormat.TEXT, data
        path = tmp_path / "notes.txt"
        path.write_bytes(data)
        assert scan([path]).verdict == "approved", data


def test_a_zfile_whose_zlib_data_is_corrupt_is_not_approved(tmp_path: Path) -> None:
    path = tmp_path / "model.joblib"
    path.write_bytes(b"ZF" + b"0x40".ljust(19) + b"x^ this is not deflate data at all")
    report = scan([path])
    assert report.verdict != "approved", [f.message for f in report.findings]


def test_a_numpy_array_wrapper_in_a_zfile_is_read_as_zipnumpyunpickler_reads_it() -> None:
    data = ZFILE_RAW["numpy_wrapper.joblib"](Payload(Path("/nonexistent/PWNED")))
    findings = list(JoblibAnalyzer().analyze(BytesSource(data), Location("model.joblib"), make_ctx()))
    assert "WG-PKL-001" in codes_of(blocking(findings))


def test_an_old_zfile_of_plain_numbers_is_approved_and_joblib_still_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "old.joblib"
    path.write_bytes(old_zfile_numbers(Payload(tmp_path / "unused")))
    assert scan([path]).verdict == "approved"
    with pytest.warns(DeprecationWarning, match="joblib version less than 0.10"):
        assert joblib.load(path)["n_iter"] == 7  # our own benign file


def test_joblibs_own_zfile_writer_output_is_approved() -> None:
    from joblib.numpy_pickle_compat import write_zfile

    out = io.BytesIO()
    write_zfile(out, pickle.dumps({"w": [1.0, 2.0], "b": -3}, protocol=2))
    findings = list(JoblibAnalyzer().analyze(BytesSource(out.getvalue()), Location("m.joblib"), make_ctx()))
    assert blocking(findings) == [], [f.message for f in findings]
