"""Issue 15: the model of CPython's Unpickler says "reaches code" whenever ``pickle.load`` does.

CPython itself is the reference: a worker process loads each input with an unpickler
whose ``find_class`` only records and raises (see :mod:`tests.analysis.cpython_oracle`).
The property test feeds opcode soups and mutations of small real pickles to both.
Each documented difference from :mod:`pickletools` has its own test.
"""

from __future__ import annotations

import collections
import io
import pickle
import pickletools
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.analysis.cpython_oracle import Oracle
from tests.analysis.pickle_builders import make_ctx
from tests.corpus.pickle_grammar_cases import frame_split
from tests.corpus.spec import Payload
from weightguard.analysis.cpython_unpickler import Reach, Walk, model_load
from weightguard.analysis.opcodes import AnomalyKind, walk_pickle
from weightguard.limits import Limits
from weightguard.sources.interface import BytesSource


@pytest.fixture(scope="module")
def oracle() -> Iterator[Oracle]:
    worker = Oracle()
    yield worker
    worker.close()


def _walk(data: bytes, limits: Limits | None = None) -> Walk:
    return model_load(BytesSource(data), 0, limits or Limits())


def _pickletools_rejects(data: bytes) -> bool:
    try:
        for op, _arg, _pos in pickletools.genops(io.BytesIO(data)):
            if op.name in ("GLOBAL", "INST", "STACK_GLOBAL"):
                return False
    except ValueError:
        return True
    return False


_CALL = b"cos\nsystem\n(Vtrue\ntR."  # GLOBAL os.system; the worker's find_class never imports it

# (name, stream, what the model says, whether pickletools' genops fails before any global)
_DIFFERENCES = [
    ("int with a hex prefix (strtol base 0)", b"I0x1F\n0" + _CALL, Reach.GLOBAL, True),
    ("int with a leading zero is octal", b"I017\n0" + _CALL, Reach.GLOBAL, False),
    ("int ended by a NUL", b"I5\x00junk\n0" + _CALL, Reach.GLOBAL, True),
    ("int that is only a NUL", b"I\x00\n0" + _CALL, Reach.GLOBAL, True),
    ("long with an octal prefix", b"L0o17L\n0" + _CALL, Reach.GLOBAL, True),
    ("long ended by a NUL", b"L5\x00x\n0" + _CALL, Reach.GLOBAL, True),
    ("memo index ended by a NUL", b"Np0\x00x\n0g0\n0" + _CALL, Reach.GLOBAL, True),
    ("float ended by a NUL", b"F1.5\x00x\n0" + _CALL, Reach.GLOBAL, True),
    ("float with whitespace: the pure-Python unpickler (joblib) reads it", b"F 1.5\n0" + _CALL, Reach.GLOBAL, False),
    ("float with underscores: so does float()", b"F1_0.5\n0" + _CALL, Reach.GLOBAL, False),
    ("float that is no number", b"F1.5x\n0" + _CALL, Reach.ERROR, True),
    ("string with UTF-8 bytes", b"S'caf\xc3\xa9'\n0" + _CALL, Reach.GLOBAL, True),
    ("string with a single quote only is rejected", b"S'\n0" + _CALL, Reach.ERROR, False),
    ("string with a bad \\x escape is rejected", b"S'\\x4'\n0" + _CALL, Reach.ERROR, True),
    ("no STOP: the call runs first", _CALL[:-1], Reach.GLOBAL, False),
    ("stack underflow before the global", b"]a" + _CALL, Reach.ERROR, False),
    ("MARK fence: APPENDS right after MARK at the bottom", b"(e" + _CALL, Reach.ERROR, False),
    ("POP removes a MARK on an empty frame", b"(0" + _CALL, Reach.GLOBAL, False),
    ("STACK_GLOBAL on two non-strings is rejected", b"NN\x93" + _CALL, Reach.ERROR, False),
    ("STACK_GLOBAL operands from the memo", b"Vos\np0\nVsystem\n\x94h\x00h\x01\x93.", Reach.GLOBAL, False),
    ("INST without a MARK: the pure-Python unpickler calls find_class first", b"ios\nsystem\n.", Reach.GLOBAL, False),
    ("GLOBAL whose last line has no newline (pure-Python readline)", b"cos\nsystem", Reach.GLOBAL, True),
    (
        "a FRAME past the end: the pure-Python unpickler reads a short frame",
        b"\x95\xff\x00\x00\x00\x00\x00\x00\x00" + _CALL,
        Reach.GLOBAL,
        False,
    ),
    ("EXT with code 0 is rejected", b"\x82\x00" + _CALL, Reach.ERROR, False),
    ("EXT with code 1 consults the registry", b"\x82\x01.", Reach.EXTENSION, False),
    ("a protocol 4 opcode in a protocol 0 stream", b"\x8c\x02os\x8c\x06system\x93.", Reach.GLOBAL, False),
    ("PROTO 6 is rejected", b"\x80\x06" + _CALL, Reach.ERROR, False),
    ("a persistent id goes on with an unknown value", b"P0\nQ" + _CALL, Reach.GLOBAL, False),
]


@pytest.mark.parametrize(("name", "data", "reach", "pickletools_fails"), _DIFFERENCES, ids=[d[0] for d in _DIFFERENCES])
def test_each_difference_from_pickletools_follows_cpython(
    oracle: Oracle, name: str, data: bytes, reach: Reach, pickletools_fails: bool
) -> None:
    walk = _walk(data)
    assert walk.reach is reach, (name, walk)
    cpython = oracle.load([data], "utf-8")[0]
    expected = {Reach.GLOBAL: "global", Reach.EXTENSION: "global", Reach.ERROR: "error", Reach.STOP: "stop"}[reach]
    assert cpython.outcome == expected, cpython.detail
    assert _pickletools_rejects(data) is pickletools_fails


def test_a_first_argument_longer_than_any_window_does_not_hide_the_call(oracle: Oracle) -> None:
    data = b"V" + b"A" * (200 * 1024) + b"\n0" + _CALL
    assert _walk(data).reach is Reach.GLOBAL
    assert oracle.load([data])[0].outcome == "global"


def test_the_model_is_conservative_where_cpython_depends_on_the_loader(oracle: Oracle) -> None:
    # ASCII-only INST names in 3.11, STRING under the default ASCII encoding, out-of-band buffers:
    # CPython's pickle.load raises, other loaders (encodings, buffers=) or versions may not.
    for data in (b"(i\xc3\xa9\nb\n.", b"S'\xff'\n0" + _CALL, b"Vos\n\x97\x93."):
        assert oracle.load([data])[0].outcome == "error"
        assert _walk(data).reach in (Reach.GLOBAL, Reach.STOP)


def test_imports_only_the_pure_python_unpickler_makes_count_when_the_module_can_be_imported(oracle: Oracle) -> None:
    # joblib's and dill's pure-Python unpickler calls find_class for INST before it looks for a
    # MARK, and reads a last line without newline; then it raises before any call. The import
    # alone runs code only if the name is importable ("mport torch" is not; "antigravity" is).
    outcomes = oracle.load([b"import torch\n", b"iantigravity\nx\n", b"cantigravity"])
    assert [o.outcome for o in outcomes] == ["import-only", "global", "global"]
    assert _walk(b"import torch\nimport numpy as np\n").reach is Reach.ERROR
    assert _walk(b"iantigravity\nx\n").reach is Reach.GLOBAL
    assert _walk(b"cantigravity").reach is Reach.GLOBAL


def test_limits_end_the_walk_as_a_pickle_not_as_an_error() -> None:
    data = b"N0" * 1000 + _CALL
    assert _walk(data, Limits(max_pickle_opcodes=100)).reach is Reach.LIMIT
    assert _walk(data, Limits(max_pickle_bytes=100)).reach is Reach.LIMIT
    memo = b"N" + b"".join(b"p%d\n" % i for i in range(50)) + b"."
    assert _walk(memo, Limits(max_memo_entries=10)).reach is Reach.LIMIT
    assert _walk(b"N" * 10, Limits(max_pickle_bytes=100)).reach is Reach.ERROR  # ends before STOP


@pytest.mark.parametrize(
    "text",
    [b"# Model card\n\nA model.\n", b'{"architectures": ["Bert"]}\n', b"[PAD]\n[UNK]\n", b"#version: 0.2\nh e\n",
     b"Apache License\nVersion 2.0\n", b"apple pie\n", b"---\nlicense: mit\n---\n", b"*.bin filter=lfs\n",
     b"import torch\n", b"<s>\n</s>\n", b"the\nof\nand\n", b"1. first\n"],
)  # fmt: skip
def test_common_text_is_rejected_within_a_few_bytes(text: bytes) -> None:
    walk = _walk(text)
    assert walk.reach is Reach.ERROR
    assert walk.opcodes <= 3


# ---- the property: whenever CPython reaches find_class, the model says so ----------------------
_TOKENS = [
    b"(", b".", b"0", b"1", b"2", b"N", b"\x88", b")", b"]", b"}", b"\x8f", b"a", b"e", b"s", b"u", b"\x90", b"t",
    b"l", b"d", b"\x91", b"\x85", b"\x86", b"\x87", b"R", b"\x81", b"\x92", b"o", b"b", b"\x93", b"\x94", b"q\x00",
    b"q\x01", b"h\x00", b"h\x01", b"r\x00\x00\x00\x00", b"j\x01\x00\x00\x00", b"p0\n", b"g0\n", b"p 1_0\n",
    b"g10\n", b"I1\n", b"I0x1f\n", b"I010\n", b"I\x00\n", b"L5L\n", b"F1.5\n", b"S'a'\n", b"S'\xc3\xa9'\n",
    b"Vos\n", b"Vsystem\n", b"\x8c\x02os", b"\x8c\x06system", b"U\x02os", b"X\x02\x00\x00\x00os", b"T\x02\x00\x00\x00os",
    b"cos\nsystem\n", b"ios\nsystem\n", b"\x82\x01", b"\x82\x00", b"\x83\x02\x00", b"P0\n", b"Q", b"K\x01",
    b"J\x01\x00\x00\x00", b"M\x01\x00", b"\x80\x02", b"\x80\x06", b"\x95\x01\x00\x00\x00\x00\x00\x00\x00",
    b"C\x01x", b"B\x01\x00\x00\x00x", b"\x8e\x01\x00\x00\x00\x00\x00\x00\x00x", b"\x96\x01\x00\x00\x00\x00\x00\x00\x00x",
    b"\x8a\x01\x01", b"\x8b\x01\x00\x00\x00\x01", b"G\x3f\xf0\x00\x00\x00\x00\x00\x00", b"\x98", b"\x97",
    b"\x8d\x02\x00\x00\x00\x00\x00\x00\x00os",
]  # fmt: skip
_SOUP = st.lists(st.one_of(st.sampled_from(_TOKENS), st.binary(min_size=1, max_size=2)), max_size=14).map(b"".join)
_SEEDS = [
    pickle.dumps(obj, protocol=proto)
    for proto in range(6)
    for obj in ([1, "a", b"b", (2.5, None)], {"k": {1, 2}}, collections.OrderedDict(a=1), [collections.Counter])
]


@st.composite
def _mutant(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(_SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["flip", "insert", "delete", "splice"]))
        if action == "flip" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=3))
        elif action == "delete":
            del data[at : at + draw(st.integers(1, 3))]
        else:
            data[at:at] = draw(st.sampled_from(_TOKENS))
    return bytes(data)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(st.one_of(_SOUP, _mutant()), min_size=25, max_size=25), st.sampled_from(["ASCII", "latin1", "bytes"]))
def test_the_model_reaches_code_whenever_cpython_reaches_find_class(
    oracle: Oracle, inputs: list[bytes], encoding: str
) -> None:
    loaded = oracle.load(inputs, encoding)
    missed = [(data, got.detail, _walk(data)) for data, got in zip(inputs, loaded, strict=True)
              if got.reached and not _walk(data).runs_code]  # fmt: skip
    assert missed == []
    # and where the model calls it an error, CPython raised too (it never returned a value)
    wrong = [(data, got) for data, got in zip(inputs, loaded, strict=True)
             if _walk(data).reach is Reach.ERROR and got.outcome not in ("error", "timeout", "import-only")]  # fmt: skip
    assert wrong == []


def test_an_opcode_straddling_a_frame_end_is_a_split_that_file_readers_load_differently(oracle: Oracle) -> None:
    # issue 15: pickle.load(io.BytesIO(...)) drops the frame's rest and runs the call; pickle.loads does not.
    data = frame_split(Payload(Path("/nonexistent/marker")))
    assert _walk(data).reach is Reach.SPLIT
    assert _walk(data).runs_code
    assert oracle.load([data])[0].outcome == "global"
    trace = walk_pickle(BytesSource(data), 0, make_ctx())
    assert trace.globals == ()  # the byte-exact walk sees only constants...
    assert [a.kind for a in trace.anomalies] == [AnomalyKind.FRAME_SPLIT]  # ...and reports the split


def test_a_frame_that_opcodes_respect_is_no_split() -> None:
    data = pickle.dumps({"a": [1, 2, 3], "b": "x" * 100}, protocol=4)
    assert _walk(data).reach is Reach.STOP
    assert walk_pickle(BytesSource(data), 0, make_ctx()).anomalies == ()


class _Counting:
    """A source that counts the bytes read from it."""

    def __init__(self, data: bytes) -> None:
        self.data, self.read = data, 0

    @property
    def size(self) -> int:
        return len(self.data)

    def read_at(self, offset: int, length: int) -> bytes:
        self.read += length
        return self.data[offset : offset + length]


@pytest.mark.parametrize(
    "head",
    [b"PK\x03\x04\x14\x00\x00\x00\x08\x00\x83", b"c\xff", b"(i\xfe", b"cos\n\xc3("],
    ids=["zip local header: PERSID with a binary line", "GLOBAL module", "INST module", "GLOBAL name"],
)
def test_a_line_that_cannot_be_valid_ends_the_walk_without_reading_on(head: bytes) -> None:
    source = _Counting(head + b"\x00" * (64 << 20))  # no newline for 64 MiB
    assert model_load(source, 0, Limits()).reach is Reach.ERROR
    assert source.read <= 1 << 20


def test_the_analyzer_walks_on_where_cpython_accepts_an_argument_pickletools_rejects() -> None:
    # issue 15: the allowlist walker's text parsers are CPython's, so it never halts before the call.
    for prefix in (b"I0x1F\n0", b"L0o17L\n0", b"F1.5\x00x\n0", b"Np 1_0\n0g10\n0", b"S'caf\xc3\xa9'\n0", b"I\x00\n0"):
        trace = walk_pickle(BytesSource(prefix + _CALL), 0, make_ctx())
        assert [g.name for g in trace.globals] == ["os.system"], prefix
        assert [a.kind for a in trace.anomalies] == [], prefix
