r"""The text-argument parsers of CPython's ``_pickle.c`` Unpickler, reproduced exactly.

Protocol 0 opcodes carry their arguments as a line of text. What CPython accepts there
is set by C library calls, not by :mod:`pickletools` (which is stricter) nor by Python's
``int()``/``float()`` (which differ): a parser that rejects an argument CPython accepts
lets a stream stop "early" in a static walk while ``pickle.load`` goes on to import and
call (issue 15). Each function takes the line WITHOUT its ``\n`` and returns the value,
or :data:`None` where CPython raises. Checked against CPython 3.11's ``_pickle`` by
``tests/analysis/test_cpython_text.py`` (a differential test in a subprocess).

- INT: ``strtol(s, &end, 0)`` (C whitespace, sign, ``0x``, a leading ``0`` means octal,
  and the line may end at an embedded NUL), falling back to ``PyLong_FromString(s, 0)``.
- LONG: a trailing ``L`` is cut, then ``PyLong_FromString(s, 0)`` up to the first NUL.
- GET/PUT: ``PyLong_FromString(s, 10)`` (whitespace, sign, underscores, NUL ends it).
- FLOAT for the pure-Python unpickler (joblib, dill): ``float(line)``, see
  :func:`parse_float_either`; its other parsers accept a subset of the C ones.
- FLOAT: ``PyOS_string_to_double``: no leading whitespace, no underscores, ``inf``/
  ``infinity``/``nan`` in any case, overflow raises, the line may end at a NUL.
- STRING: one matching pair of outer quotes, then ``PyBytes_DecodeEscape`` (only a bad
  ``\x`` escape or a trailing backslash fail). Its bytes become ``str`` through the
  unpickler's *encoding*; loaders use ASCII, UTF-8, latin-1 or ``bytes``, so the bytes
  are returned and no encoding is assumed to fail (conservative).
- UNICODE: ``raw-unicode-escape`` (any byte, a bad ``\u`` escape fails).

Hand-written because no library exposes these parsers; ``int(bytes, base)`` is exactly
``PyLong_FromString`` on a NUL-free string, so it does that part. Not handled here:
locales whose ``isspace`` accepts bytes >= 0x80 for ``strtol`` (CPython's default
locales do not).
"""

from __future__ import annotations

import codecs
import re
import warnings
from collections.abc import Callable

_C_SPACE = b" \t\n\v\f\r"
_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1  # C long on the 64-bit platforms we support
_HEX = frozenset(b"0123456789abcdefABCDEF")
_DIGITS = {8: frozenset(b"01234567"), 10: frozenset(b"0123456789"), 16: _HEX}
_DTOA = re.compile(rb"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf(?:inity)?|nan)", re.IGNORECASE)
_ESCAPE = re.compile(rb"\\(.?)", re.DOTALL)
_TWO_HEX = re.compile(rb"[0-9a-fA-F]{2}")


def pylong(text: bytes, base: int) -> int | None:
    """``PyLong_FromString(text, NULL, base)`` on a C string (it ends at the first NUL)."""
    try:
        return int(text.split(b"\0", 1)[0], base)
    except ValueError as exc:
        # The digit limit is the loading process's setting (sys.set_int_max_str_digits), not
        # ours: a literal only that limit rejects may load elsewhere. Conservatively valid.
        return 0 if "limit" in str(exc) else None


def _strtol0(line: bytes) -> tuple[int, int, bool]:
    """Glibc ``strtol(line, &end, 0)``: (value, end index, overflowed); end 0 when nothing converts."""
    i, n = 0, len(line)
    while i < n and line[i] in _C_SPACE:
        i += 1
    negative = i < n and line[i] == 0x2D
    i += i < n and line[i] in b"+-"
    if line[i : i + 2] in (b"0x", b"0X") and i + 2 < n and line[i + 2] in _HEX:
        base, i = 16, i + 2
    else:
        base = 8 if line[i : i + 1] == b"0" else 10
    digits, j = _DIGITS[base], i
    while j < n and line[j] in digits:
        j += 1
    if j == i:
        return 0, 0, False
    if j - i > 64:  # far past a C long: ERANGE (and int() would meet its digit limit)
        return 0, j, True
    value = int(line[i:j], base) * (-1 if negative else 1)
    return value, j, not _LONG_MIN <= value <= _LONG_MAX


def parse_int(line: bytes) -> int | None:
    """INT: ``load_int`` (``00``/``01`` give bools there; callers needing that use :func:`int_value`)."""
    if not line:
        return None  # bad_readline: the line holds only its newline
    if line.isdigit() and len(line) < 19 and (line[0] != 0x30 or len(line) == 1):
        return int(line)  # the common case: a plain decimal that fits a C long
    value, end, overflow = _strtol0(line)
    if not overflow and (end == len(line) or line[end] == 0):
        return value
    return pylong(line + b"\n", 0)


def int_value(line: bytes) -> int | bool | None:
    """INT as the loaded value: a two-character line that ``strtol`` reads as 0 or 1 is a bool."""
    value = parse_int(line)
    if value in (0, 1) and len(line) == 2:
        _, end, _ = _strtol0(line)
        if end == 2 or line[end] == 0:
            return bool(value)
    return value


def parse_long(line: bytes) -> int | None:
    """LONG: ``load_long`` cuts a final ``L`` (with the newline), then base 0."""
    if not line:
        return None
    return pylong(line[:-1] if line[-1:] == b"L" else line + b"\n", 0)


def parse_memo_index(line: bytes) -> int | None:
    """GET/PUT index: base 10; a negative index fails (None).

    An index past ``Py_ssize_t`` fails in the C unpickler but not in the pure-Python one
    (its memo is a dict), so it is accepted.
    """
    if not line:
        return None
    value = pylong(line + b"\n", 10)
    return value if value is not None and value >= 0 else None


def parse_float(line: bytes) -> float | None:
    """FLOAT: ``PyOS_string_to_double`` with an end pointer, then the end must be NUL or newline."""
    if not line:
        return None
    match = _DTOA.match(line)
    if match is None or (match.end() < len(line) and line[match.end()] != 0):
        return None
    value = float(match.group())
    if value in (float("inf"), float("-inf")) and b"n" not in match.group().lower():
        return None  # overflow: OverflowError "value too large to convert to float"
    return value


def parse_float_either(line: bytes) -> float | None:
    """FLOAT as the C unpickler OR the pure-Python one (``float(line)``, used by joblib and dill) reads it.

    The pure-Python unpickler accepts whitespace, underscores and overflow (``inf``) that
    ``PyOS_string_to_double`` rejects, so a loader-independent walk accepts either.
    """
    value = parse_float(line)
    if value is not None:
        return value
    try:
        return float(line)
    except ValueError:
        return None


def parse_string(line: bytes) -> bytes | None:
    """STRING: the escape-decoded bytes between the outer quotes (any encoding then applies)."""
    if len(line) < 2 or line[0] != line[-1] or line[0] not in b"'\"":
        return None  # "the STRING opcode argument must be quoted"
    body = line[1:-1]
    for escape in _ESCAPE.finditer(body):
        kind = escape.group(1)
        if not kind or (kind == b"x" and _TWO_HEX.fullmatch(body[escape.end() : escape.end() + 2]) is None):
            return None  # "Trailing \ in string" / "invalid \x escape"
    with warnings.catch_warnings():  # "invalid escape sequence" is a DeprecationWarning, never an error
        warnings.simplefilter("ignore")
        decoded: bytes = codecs.escape_decode(body)[0]
    return decoded


def parse_unicode(line: bytes) -> str | None:
    """UNICODE: ``raw-unicode-escape``."""
    try:
        return line.decode("raw-unicode-escape")
    except UnicodeDecodeError:
        return None


def parse_name(line: bytes) -> str | None:
    """A GLOBAL/INST name line: non-empty strict UTF-8.

    CPython 3.11 decodes INST names as ASCII, a subset: accepting UTF-8 there is conservative.
    """
    if not line:
        return None
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return None


def importable(module: bytes) -> bool:
    """True when a module line names something ``import`` could find (dotted identifiers)."""
    name = parse_name(module)
    return name is not None and all(part.isidentifier() for part in name.split("."))


def utf8_check() -> Callable[[bytes], bool]:
    """A check for the pieces of one line, in order: False once they cannot be strict UTF-8."""
    decoder = codecs.getincrementaldecoder("utf-8")()

    def check(piece: bytes) -> bool:
        try:
            decoder.decode(piece)
        except UnicodeDecodeError:
            return False
        return True

    return check
