"""Issue 15: the protocol-0 argument parsers accept exactly what CPython's ``_pickle`` accepts.

Each line is wrapped in its opcode and loaded by CPython in a worker process (the
stream holds no global, so nothing could run even in-process, but the rules keep all
loading out of the test process); the parser must accept it exactly when CPython does.
STRING is loaded with ``encoding="latin1"`` so that only the parsing can fail. The worker
also runs the pure-Python unpickler, whose FLOAT is ``float()``: FLOAT is compared with
:func:`~weightguard.analysis.cpython_text.parse_float_either`; the other parsers of the
pure-Python unpickler accept a subset of the C ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.analysis.cpython_oracle import Oracle
from weightguard.analysis import cpython_text as text


@pytest.fixture(scope="module")
def oracle() -> Iterator[Oracle]:
    worker = Oracle()
    yield worker
    worker.close()


# opcode, how its line is wrapped into a whole stream, the parser, encoding
_WRAP: dict[str, tuple[Callable[[bytes], bytes], Callable[[bytes], object], str]] = {
    "INT": (lambda line: b"I" + line + b"\n.", text.parse_int, "ASCII"),
    "LONG": (lambda line: b"L" + line + b"\n.", text.parse_long, "ASCII"),
    "FLOAT": (lambda line: b"F" + line + b"\n.", text.parse_float_either, "ASCII"),  # C or pure-Python
    "PUT+GET": (lambda line: b"Np" + line + b"\n0g" + line + b"\n.", text.parse_memo_index, "ASCII"),
    "STRING": (lambda line: b"S" + line + b"\n.", text.parse_string, "latin1"),
    "UNICODE": (lambda line: b"V" + line + b"\n.", text.parse_unicode, "ASCII"),
}

_CURATED = [
    b"", b"0", b"00", b"01", b"010", b"08", b"0x1f", b"0X1F", b"0x", b"0o17", b"0b101", b"1_000", b"_1", b"1_",
    b"1__0", b" 5", b"5 ", b"\t5\x0b", b"+5", b"-5", b"- 5", b"5\x00junk", b"\x00", b"\x00zz", b"0x1_f",
    b"99999999999999999999", b"-9223372036854775808", b"9223372036854775808", b"5L", b"0x5L", b"L", b" 5 L",
    b"1.5", b" 1.5", b"1.5 ", b"1_0.5", b"inf", b"-Infinity", b"infin", b"nan", b"NaN", b"1e999", b"-1e999",
    b"1e-999", b"1.5\x00x", b"1e", b"1e+", b".", b"1.", b".5", b"0x1p3", b"1,5",
    b"''", b"'a'", b'"a"', b"'a\"", b"'", b"'\\x4'", b"'\\x41'", b"'\\q'", b"'a\\'", b"'\\\\'", b"'\\777'",
    b"'\xc3\xa9'", b"a", b"\\u00e9", b"\\u00", b"\\U00110000", b"\xff", b"\\x41",
]  # fmt: skip


@pytest.mark.parametrize("opcode", sorted(_WRAP))
def test_curated_arguments_are_accepted_exactly_when_cpython_accepts_them(oracle: Oracle, opcode: str) -> None:
    wrap, parse, encoding = _WRAP[opcode]
    loaded = oracle.load([wrap(line) for line in _CURATED], encoding)
    differ = [(line, got.detail) for line, got in zip(_CURATED, loaded, strict=True)
              if (got.outcome == "stop") != (parse(line) is not None) and "MemoryError" not in got.detail]  # fmt: skip
    assert differ == []


_ALPHABET = list(b"0123456789abcdefxXoObBlLnNiItTyY_+-.'\"\\ \t\x0b\x0c\r\x00\xc3\xa9")


@settings(max_examples=400, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=12).map(lambda b: bytes(_ALPHABET[x % len(_ALPHABET)] for x in b)),
                min_size=20, max_size=20))  # fmt: skip
def test_generated_arguments_are_accepted_exactly_when_cpython_accepts_them(oracle: Oracle, lines: list[bytes]) -> None:
    for wrap, parse, encoding in _WRAP.values():
        loaded = oracle.load([wrap(line) for line in lines], encoding)
        differ = [(line, got.detail) for line, got in zip(lines, loaded, strict=True)
                  if (got.outcome == "stop") != (parse(line) is not None) and "MemoryError" not in got.detail]  # fmt: skip
        assert differ == []


def test_float_in_the_c_unpickler_is_pyos_string_to_double() -> None:
    assert text.parse_float(b"1.5\x00x") == 1.5
    for rejected in (b" 1.5", b"1.5 ", b"1_0.5", b"1e999", b"infin", b"0x1p3", b"\x00"):
        assert text.parse_float(rejected) is None, rejected
        assert text.parse_float_either(rejected) is None or rejected in (b" 1.5", b"1.5 ", b"1_0.5", b"1e999")


def test_int_follows_strtol_then_pylong_values() -> None:
    assert text.parse_int(b"010") == 8  # strtol base 0: octal
    assert text.parse_int(b"0x1f") == 31
    assert text.parse_int(b"5\x00junk") == 5  # strtol stops at the NUL and CPython accepts that end
    assert text.parse_int(b"\x00") == 0  # nothing converts, and the end is a NUL
    assert text.parse_int(b"1_0") == 10  # strtol stops at "_", PyLong_FromString reads it all
    assert text.int_value(b"01") is True
    assert text.int_value(b"1") == 1
    assert text.parse_long(b"0x5L") == 5


def test_a_digit_limit_rejection_counts_as_accepted_because_it_is_the_loading_process_setting() -> None:
    assert text.parse_long(b"9" * 5000) is not None
