"""Issue 15 follow-ups: the walker, its nested-pickle judgement and the joblib hook agree with the real loaders.

* A nested pickle is reported whenever a loader would act on it, not only when it parses.
* ``_compat_pickle`` names are remapped exactly when an unpickler remaps them (protocol < 3).
* A joblib ``NumpyArrayWrapper`` made by REDUCE runs ``__init__``; one made by NEWOBJ does not.
* A source that returns fewer bytes than its size says is truncation, never an exception.

Malicious fixtures are proven with the real loader in a subprocess (the payload only creates a
marker file) and must be rejected by ``weightguard.api.scan``.
"""

from __future__ import annotations

import pickle
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from pickle_builders import binbytes, blocking, codes_of, make_ctx, names, scan, su, walk

from tests.corpus.joblib_numpy_cases import _dtype, _int, _payload, _shape, _stream
from tests.corpus.spec import Payload
from weightguard.analysis.cpython_unpickler import Reach, model_load
from weightguard.analysis.interface import Location
from weightguard.analysis.joblib_format import JoblibAnalyzer
from weightguard.analysis.opcodes import AnomalyKind, walk_pickle
from weightguard.analysis.pickle_analyzer import PickleAnalyzer
from weightguard.api import scan as api_scan
from weightguard.findings import Finding
from weightguard.limits import Limits
from weightguard.sources.interface import BytesSource

# ---- 1. nested pickles are judged by what a loader does with them ---------------------------------


def _frame_split_stream() -> bytes:
    """A stream whose SHORT_BINUNICODE straddles its FRAME's end, then an invalid opcode: it never reaches STOP."""
    return b"\x80\x04\x95" + struct.pack("<Q", 4) + b"\x8c\x05abcde" + b"\xff"


def test_issue_15_a_nested_stream_with_a_frame_split_and_no_stop_is_reported() -> None:
    inner = _frame_split_stream()
    assert model_load(BytesSource(inner), 0, Limits()).reach is Reach.SPLIT
    trace = walk(inner)
    assert not trace.stopped and not trace.globals
    findings = scan(b"\x80\x04" + binbytes(inner) + b"0N.")
    assert "WG-PKL-009" in codes_of(findings)
    nested = [f for f in blocking(findings) if f.member.endswith("BINBYTES@7")]
    assert nested, [f.message for f in findings]


def test_issue_15_a_sentence_that_starts_like_a_pickle_is_not_a_nested_pickle() -> None:
    # "(" ... "." looks like a protocol-0 pickle, but CPython raises before resolving any name.
    sentence = "(see the paper)."
    assert model_load(BytesSource(sentence.encode()), 0, Limits()).reach is Reach.ERROR
    findings = scan(b"\x80\x04" + su(sentence) + b".")
    assert blocking(findings) == [], [f.message for f in findings]
    assert "WG-PKL-009" not in codes_of(findings)


def test_issue_15_random_bytes_with_a_pickle_header_that_cpython_rejects_are_not_reported() -> None:
    data = b"\x80\x04" + b"\xff" * 30  # invalid opcode right after PROTO: every loader raises
    assert blocking(scan(b"\x80\x04" + binbytes(data) + b".")) == []


# ---- 2. _compat_pickle remapping follows the stream's protocol ------------------------------------


def _global(module: str, name: str) -> bytes:
    return f"c{module}\n{name}\n".encode()


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        (b"\x80\x02" + _global("__builtin__", "set") + b")R.", {"builtins.set"}),
        (_global("copy_reg", "_reconstructor") + b"0N.", {"copyreg._reconstructor"}),  # no PROTO: protocol 0
        (b"\x80\x04" + su("copy_reg") + su("_reconstructor") + b"\x93" + b"0N.", {"copy_reg._reconstructor"}),
        (b"\x80\x04" + su("__builtin__") + su("set") + b"\x93)R.", {"__builtin__.set"}),
        # GLOBAL at protocol >= 3: CPython resolves the raw name, torch's weights_only unpickler the mapped one.
        (b"\x80\x04" + _global("copy_reg", "_reconstructor") + b"0N.",
         {"copy_reg._reconstructor", "copyreg._reconstructor"}),
        # The last PROTO decides, as load_proto sets the unpickler's protocol each time.
        (b"\x80\x04\x80\x02" + su("__builtin__") + su("set") + b"\x93)R.", {"builtins.set"}),
        (b"\x80\x02\x80\x03" + _global("__builtin__", "set") + b")R.", {"__builtin__.set", "builtins.set"}),
    ],
)  # fmt: skip
def test_issue_15_python2_names_are_remapped_only_below_protocol_3(stream: bytes, expected: set[str]) -> None:
    assert names(walk(stream)) == expected


@pytest.mark.parametrize("unpickler", [pickle.Unpickler, pickle._Unpickler])  # noqa: SLF001 - the pure-Python one
def test_issue_15_cpython_unpicklers_remap_only_below_protocol_3(unpickler: type[pickle.Unpickler]) -> None:
    # Our own benign streams (``set()``): the rule the walker follows, shown on the real unpicklers.
    import io

    assert unpickler(io.BytesIO(b"\x80\x02" + _global("__builtin__", "set") + b")R.")).load() == set()
    with pytest.raises(ModuleNotFoundError):
        unpickler(io.BytesIO(b"\x80\x04" + su("__builtin__") + su("set") + b"\x93)R.")).load()


def test_issue_15_a_name_only_one_loaders_mapping_makes_dangerous_still_blocks() -> None:
    findings = scan(b"\x80\x04" + _global("__builtin__", "eval") + su("1") + b"\x85R.")
    assert any(f.evidence.get("global") == "builtins.eval" for f in blocking(findings))


def test_issue_15_protocol_4_python2_module_is_not_allowlisted_through_the_mapping() -> None:
    # At protocol 4 CPython imports "copy_reg" itself, which is not the allowlisted copyreg.
    findings = scan(b"\x80\x04" + su("copy_reg") + su("_reconstructor") + b"\x93" + b"0N.")
    assert any(f.evidence.get("global") == "copy_reg._reconstructor" for f in blocking(findings))


# ---- 3. joblib wrappers made by REDUCE run __init__, by NEWOBJ do not ------------------------------

_WRAPPER = su("joblib.numpy_pickle") + su("NumpyArrayWrapper") + b"\x93"
_NDARRAY = su("numpy") + su("ndarray") + b"\x93"


def _init_wrapper(n: int, *, align: bytes | None = b"N", state: bytes = b"}") -> bytes:
    """``NumpyArrayWrapper(ndarray, (n,), "C", dtype("u1"), False[, align])`` by REDUCE, then BUILD ``state``."""
    args = _NDARRAY + _shape(n) + su("C") + _dtype("u1") + (b"\x89" + align if align is not None else b"")
    return _WRAPPER + b"(" + args + b"tR" + state + b"b"


def _newobj_wrapper(n: int) -> bytes:
    """A wrapper made by NEWOBJ with (ignored) arguments; its attributes come from BUILD only."""
    pairs = su("shape") + _shape(n) + su("dtype") + _dtype("u1") + su("order") + su("C")
    pairs += su("allow_mmap") + b"\x89" + su("numpy_array_alignment_bytes") + b"N"
    return _WRAPPER + b"(" + _int(1) + _int(2) + b"t\x81}(" + pairs + b"ub"


def init_shape_overridden_by_state(p: Payload) -> bytes:
    """__init__ says shape (N,); BUILD's state says (0,): joblib reads nothing and runs the payload."""
    hidden = _payload(p)
    return _stream(_init_wrapper(len(hidden), state=b"}" + su("shape") + _shape(0) + b"s") + hidden)


_JOBLIB_LOAD = """
import sys, joblib
try:
    print(repr(joblib.load(sys.argv[1])))
except Exception as exc:  # the payload has run by the time the load fails
    print(type(exc).__name__)
"""


def _joblib_load(tmp_path: Path, data: bytes) -> str:
    path = tmp_path / "model.joblib"
    path.write_bytes(data)
    done = subprocess.run(
        [sys.executable, "-c", _JOBLIB_LOAD, str(path)], cwd=tmp_path, timeout=60, check=True, capture_output=True
    )
    return done.stdout.decode()


def _analyze_joblib(data: bytes) -> list[Finding]:
    return list(JoblibAnalyzer().analyze(BytesSource(data), Location("model.joblib"), make_ctx()))


@pytest.mark.parametrize("make", [_init_wrapper, _newobj_wrapper], ids=["reduce-init", "newobj-args"])
def test_issue_15_wrappers_made_by_reduce_or_newobj_are_sized_as_joblib_reads_them(
    tmp_path: Path, make: object
) -> None:
    pytest.importorskip("joblib")
    data = _stream(make(5) + b"\x01\x02\x03\x04\x05")  # type: ignore[operator]
    assert "array([1, 2, 3, 4, 5], dtype=uint8)" in _joblib_load(tmp_path, data)
    findings = _analyze_joblib(data)
    assert blocking(findings) == [], [f.message for f in findings]


def test_issue_15_init_state_overridden_by_build_runs_its_payload_and_is_rejected(tmp_path: Path) -> None:
    pytest.importorskip("joblib")
    marker = tmp_path / "PWNED"
    data = init_shape_overridden_by_state(Payload(marker))
    _joblib_load(tmp_path, data)
    assert marker.exists()
    marker.unlink()
    path = tmp_path / "model.joblib"
    assert api_scan([path]).verdict == "rejected"
    assert not marker.exists()
    assert any(f.evidence.get("global") == "os.system" for f in blocking(_analyze_joblib(data)))


def test_issue_15_a_wrapper_relying_on_inits_default_alignment_is_refused() -> None:
    # joblib >= 1.2 reads a padding byte (default 16), older joblib reads none: the bytes after it differ.
    findings = _analyze_joblib(_stream(_init_wrapper(5, align=None) + b"\x00" * 21))
    assert any(f.code == "WG-PKL-015" and "joblib versions" in f.message for f in findings)


def test_issue_15_a_wrapper_with_arguments_init_does_not_take_is_refused() -> None:
    findings = _analyze_joblib(_stream(_WRAPPER + b"(" + _int(1) + b"tR}b"))
    assert "WG-PKL-015" in codes_of(findings)


# ---- 4. a source shorter than its size is truncation ---------------------------------------------


class LyingSource:
    """A source whose size claims ``extra`` more bytes than it returns (a file that shrank mid-scan)."""

    def __init__(self, data: bytes, extra: int) -> None:
        self.data, self.extra = data, extra

    @property
    def size(self) -> int:
        return len(self.data) + self.extra

    def read_at(self, offset: int, length: int) -> bytes:
        return self.data[offset : offset + length]


@pytest.mark.parametrize(
    "data",
    [b"\x80\x04N", b"cos\nsys", b"\x80\x04B" + struct.pack("<I", 100_000) + b"x" * 10, b"\x80\x04\x95\x10",
     b"\x80\x04J\x01", b"I12"],
    ids=["after-opcode", "in-line", "large-constant", "frame-header", "fixed-argument", "text-argument"],
)  # fmt: skip
def test_issue_15_a_short_read_is_truncation_not_an_exception(data: bytes) -> None:
    source = LyingSource(data, 200_000)
    trace = walk_pickle(source, 0, make_ctx())
    assert AnomalyKind.TRUNCATED in {a.kind for a in trace.anomalies}
    assert not trace.stopped
    assert model_load(source, 0, Limits()).reach is Reach.ERROR
    findings = list(PickleAnalyzer().analyze(source, Location("model.pkl"), make_ctx()))
    assert "WG-PKL-006" in codes_of(findings)


def test_issue_15_a_short_read_inside_a_joblib_array_is_not_an_exception() -> None:
    data = _stream(_init_wrapper(5))[:-2]  # the array bytes and the rest are missing
    findings = list(JoblibAnalyzer().analyze(LyingSource(data, 1000), Location("model.joblib"), make_ctx()))
    assert blocking(findings)
