"""NumPy ``.npy`` files: a strict header parse, a size check, and object arrays as pickles.

The header is a Python dict literal; it is parsed with :func:`ast.literal_eval`
(which accepts literals only and never evaluates code) on the bounded header
string, then validated field by field. A numeric array's bytes must equal
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
from collections.abc import Iterator

import numpy as np
from numpy.lib import format as npy_format

from weightguard.analysis.interface import Location, ScanContext
from weightguard.errors import LimitExceeded
from weightguard.findings import Finding
from weightguard.formats import codes
from weightguard.formats.detect import NUMPY_MAGIC
from weightguard.formats.interface import FileFormat
from weightguard.sources.interface import ByteSource

_KEYS = frozenset({"descr", "fortran_order", "shape"})


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
    """Parse and validate the header; return it, or why it is malformed.

    Raises:
        LimitExceeded: the declared header is longer than ``max_header_bytes``.
    """
    preamble = source.read_at(0, 12)
    if len(preamble) < 10 or preamble[:6] != NUMPY_MAGIC:
        return "missing \\x93NUMPY magic"
    major = preamble[6]
    if major == 1:
        (length,) = struct.unpack_from("<H", preamble, 8)
        start = 10
    elif major in (2, 3) and len(preamble) == 12:
        (length,) = struct.unpack_from("<I", preamble, 8)
        start = 12
    else:
        return f"unsupported version {major}.{preamble[7]}"
    if length > max_header_bytes:
        raise LimitExceeded("max_header_bytes", max_header_bytes, length)
    raw = source.read_at(start, length)
    if len(raw) < length:
        return "header runs past the end of the file"
    try:
        text = raw.decode("utf-8" if major == 3 else "latin1")
        header = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError, UnicodeError) as exc:
        return f"header is not a literal dict: {type(exc).__name__}"
    if not isinstance(header, dict) or set(header) != _KEYS:
        return "header must have exactly the keys descr, fortran_order, shape"
    shape, fortran = header["shape"], header["fortran_order"]
    if not isinstance(shape, tuple) or not all(type(d) is int and d >= 0 for d in shape):
        return f"shape {shape!r} is not a tuple of non-negative ints"
    if not isinstance(fortran, bool):
        return f"fortran_order {fortran!r} is not a bool"
    try:
        # numpy's own parser for the descr literal: builds a dtype, runs no code.
        dtype = npy_format.descr_to_dtype(header["descr"])
    except (TypeError, ValueError, KeyError, IndexError, RecursionError) as exc:
        return f"descr {header['descr']!r} is not a dtype: {exc}"
    return NpyHeader(major, start + length, dtype, fortran, shape)


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
