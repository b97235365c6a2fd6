"""NumPy ``.npy`` files: a strict header parse, a size check, and object arrays as pickles.

The header is a Python dict literal; it is parsed with :func:`ast.literal_eval`
(which accepts literals only and never evaluates code) on the bounded header
string, then validated field by field exactly as ``numpy.lib.format.read_array``
does (versions 1.0/2.0/3.0, numpy's Python-2 header retry, ``descr_to_dtype``);
anything numpy's parsers raise on a hostile header is a finding, never an
exception that would end the run (issue 15). A numeric array's bytes must equal
``prod(shape) x itemsize`` exactly (extra bytes could hide a payload). An
object array (``dtype('O')`` or a structured dtype holding objects) stores a
pickle after the header, which ``numpy.load`` runs once pickles are allowed:
it is handed to the pickle engine. ``.npz`` archives are zips of ``.npy``
members and reach this analyzer through the zip analyzer.

Not handled here: the array values, and ``.npz`` container checks.
"""

from __future__ import annotations

import ast
import math
import struct
import tokenize
from collections.abc import Iterator
from typing import TYPE_CHECKING

from weightguard.analysis.interface import Location, ScanContext
from weightguard.errors import LimitExceeded
from weightguard.findings import Finding
from weightguard.formats import codes
from weightguard.formats.detect import NUMPY_MAGIC
from weightguard.formats.interface import FileFormat
from weightguard.sources.interface import ByteSource

if TYPE_CHECKING:
    # numpy is imported when a .npy header is parsed, not when the analyzer registry loads:
    # a scan of a plain pickle or safetensors file never pays numpy's import (tests/cli/test_import_budget.py).
    import numpy as np


def _filter_header(text: str) -> str:
    """Numpy's own Python-2 header filter (numpy >= 2 keeps it in _format_impl, 1.x in format)."""
    try:
        from numpy.lib._format_impl import _filter_header as numpy_filter  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.lib.format import _filter_header as numpy_filter  # type: ignore[attr-defined]
    return str(numpy_filter(text))


_KEYS = frozenset({"descr", "fortran_order", "shape"})
_HEADER_FORMATS = {(1, 0): ("<H", "latin1"), (2, 0): ("<I", "latin1"), (3, 0): ("<I", "utf8")}  # numpy's table
# What ast.literal_eval, numpy's tokenize-based header filter and its dtype parsers raise on hostile
# text (numpy's comma-string dtype parser raises SyntaxError; warnings may be configured as errors).
_PARSE_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, SyntaxError, TypeError, KeyError, IndexError, AttributeError, MemoryError, RecursionError,
    OverflowError, ArithmeticError, UnicodeError, LookupError, SystemError, tokenize.TokenError, Warning,
)  # fmt: skip


class NpyHeader:
    """A validated ``.npy`` header."""

    __slots__ = ("data_offset", "dtype", "fortran_order", "shape", "version")

    def __init__(
        self, version: int, data_offset: int, dtype: np.dtype[np.generic], fortran_order: bool, shape: tuple[int, ...]
    ) -> None:
        self.version = version
        self.data_offset = data_offset
        self.dtype = dtype
        self.fortran_order = fortran_order
        self.shape = shape


def parse_npy_header(source: ByteSource, max_header_bytes: int) -> NpyHeader | str:
    """Parse and validate the header as ``numpy.lib.format.read_array`` does; return it, or why it is malformed.

    Every check of numpy's ``read_magic``/``_check_version``/``_read_array_header`` is mirrored,
    in its order: versions (1, 0), (2, 0) and (3, 0) only; a Python-2 header (``3L``) of version
    1 or 2 is retried through numpy's own ``_filter_header``; ``shape`` a tuple of ints,
    ``fortran_order`` a bool, ``descr`` through ``descr_to_dtype``. Stricter than numpy's header
    parser: a negative or bool dimension is malformed here (numpy's reshape rejects a bool later;
    a negative one only makes sense to a hand-made file). Whatever numpy's parsers raise
    on a hostile header (``SyntaxError`` from its dtype-string parser included) becomes the text
    returned, never an exception (issue 15).

    Raises:
        LimitExceeded: the declared header is longer than ``max_header_bytes``.
    """
    preamble = source.read_at(0, 12)
    if len(preamble) < 10 or preamble[:6] != NUMPY_MAGIC:
        return "missing \\x93NUMPY magic"
    version = (preamble[6], preamble[7])
    if version not in _HEADER_FORMATS:
        return f"unsupported version {version[0]}.{version[1]} (numpy reads 1.0, 2.0 and 3.0)"
    length_format, encoding = _HEADER_FORMATS[version]
    start = 8 + struct.calcsize(length_format)
    if len(preamble) < start:
        return "header length runs past the end of the file"
    (length,) = struct.unpack_from(length_format, preamble, 8)
    if length > max_header_bytes:
        raise LimitExceeded("max_header_bytes", max_header_bytes, length)
    raw = source.read_at(start, length)
    if len(raw) < length:
        return "header runs past the end of the file"
    header = _literal(raw, encoding, version)
    if isinstance(header, str):
        return header
    if not isinstance(header, dict) or header.keys() != _KEYS:
        return "header must be a dict with exactly the keys descr, fortran_order, shape"
    shape, fortran = header["shape"], header["fortran_order"]
    if not isinstance(shape, tuple) or not all(type(d) is int and d >= 0 for d in shape):
        return f"shape {shape!r} is not a tuple of non-negative ints"
    if not isinstance(fortran, bool):
        return f"fortran_order {fortran!r} is not a bool"
    from numpy.lib import format as npy_format

    try:
        # numpy's own parser for the descr literal: builds a dtype, runs no code.
        dtype = npy_format.descr_to_dtype(header["descr"])
    except _PARSE_ERRORS as exc:
        return f"descr {header['descr']!r} is not a dtype: {type(exc).__name__}: {exc}"
    return NpyHeader(version[0], start + length, dtype, fortran, shape)


def _literal(raw: bytes, encoding: str, version: tuple[int, int]) -> object:
    """The header's literal value as numpy reads it, or a text saying why it is not one."""
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        return f"header is not {encoding}: {exc}"
    try:
        return ast.literal_eval(text)
    except SyntaxError as exc:
        if version > (2, 0):
            return f"header is not a literal: {type(exc).__name__}"
    except _PARSE_ERRORS as exc:
        return f"header is not a literal: {type(exc).__name__}"
    try:  # numpy retries a Python 2 header (``3L``) of version 1.0/2.0 without its 'L' suffixes
        return ast.literal_eval(_filter_header(text))
    except _PARSE_ERRORS as exc:
        return f"header is not a literal: {type(exc).__name__}"


class NumpyAnalyzer:
    """Analyzer for ``.npy`` files."""

    name = "numpy"
    formats = frozenset({FileFormat.NUMPY})

    def analyze(self, source: ByteSource, where: Location, ctx: ScanContext) -> Iterator[Finding]:
        """Yield header, size and (object arrays) pickle findings."""
        header = parse_npy_header(source, ctx.limits.max_header_bytes)
        if isinstance(header, str):
            yield codes.NPY_MALFORMED.at(where.path, header, member=where.member)
            return
        remaining = source.size - header.data_offset
        if header.dtype.hasobject:
            yield codes.NPY_OBJECT_ARRAY.at(
                where.path, f"dtype {header.dtype.str} stores a pickle", member=where.member, shape=header.shape
            )
            # Imported here so this module loads even where the pickle engine is being replaced.
            from weightguard.analysis.pickle_analyzer import analyze_stream

            trace, findings = analyze_stream(source, header.data_offset, where, ctx)
            yield from findings
            if trace.complete and trace.end != source.size:
                yield codes.NPY_SIZE_MISMATCH.at(
                    where.path, f"{source.size - trace.end} bytes after the pickle", member=where.member
                )
            return
        expected = math.prod(header.shape) * header.dtype.itemsize
        if expected != remaining:
            yield codes.NPY_SIZE_MISMATCH.at(
                where.path,
                f"{remaining} data bytes, shape x itemsize is {expected}",
                member=where.member,
                shape=header.shape,
                dtype=header.dtype.str,
            )
