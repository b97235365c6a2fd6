"""joblib's ``NumpyArrayWrapper`` as ``joblib.load`` reads it: attributes, array bytes, frames.

``joblib.numpy_pickle.NumpyUnpickler`` is ``pickle._Unpickler`` (the pure-Python
unpickler) with a BUILD handler: after the ordinary BUILD, when the built
object is a wrapper, ``NumpyArrayWrapper.read_array`` reads the array from the
*file object* (``unpickler.file_handle``), not from the unpickler's frame
buffer. :class:`ArrayHook` is the ``on_build`` hook that tells the symbolic
walker how many bytes joblib reads there, following joblib's code:

* attributes are what the pure-Python ``load_build`` leaves in ``__dict__``:
  every BUILD on the same object updates it (``state``, then ``slotstate``),
  the LAST value of a duplicated key wins; before the first BUILD it is empty
  when the wrapper was made by ``__new__`` alone (NEWOBJ/NEWOBJ_EX with any
  arguments, INST/OBJ without, ``copyreg._reconstructor``) and holds what
  ``__init__(subclass, shape, order, dtype, allow_mmap=False,
  numpy_array_alignment_bytes=16)`` stores when REDUCE/INST/OBJ pass
  arguments (issue 15, :attr:`Made.opcode`); that default alignment is 16
  since joblib 1.2 and absent before, so a wrapper relying on it is refused;
* one padding-length byte and that many padding bytes are read when
  ``getattr(w, "numpy_array_alignment_bytes", None) is not None`` (0 and
  False included);
* the dtype is rebuilt with numpy itself (``numpy.dtype(*args)`` then
  ``__setstate__(state)``, exactly what unpickling it does) from the
  stream's constants only, so unicode, structured, datetime and byte-order
  item sizes are numpy's, not ours; ``hasobject`` arrays are a nested pickle
  that a fresh plain unpickler reads from the same file position;
* ``allow_mmap``/``order`` change how the bytes are viewed, not how many.

:func:`frame_desyncs` finds arrays that start inside a FRAME with bytes left:
joblib then reads the array after the frame while the unpickler keeps
executing the frame's bytes (which a skip would have hidden). ``joblib.dump``
never writes that (it ends the frame before each array), so it is reported,
not modelled. Not handled here: decompression and judging globals.
"""

from __future__ import annotations

import bisect
import math
from typing import TYPE_CHECKING

from weightguard.analysis import codes
from weightguard.analysis.interface import Location, ScanContext
from weightguard.analysis.opcodes import GlobalVal, Made, Opaque, SymDict, SymList
from weightguard.analysis.pickle_analyzer import analyze_stream
from weightguard.findings import Finding
from weightguard.sources.interface import ByteSource

if TYPE_CHECKING:
    # numpy is imported where a dtype is rebuilt: a scan that meets no numpy.dtype never pays for it
    import numpy as np

WRAPPERS = frozenset(
    {"joblib.numpy_pickle.NumpyArrayWrapper", "sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper"}
)
_INIT_PARAMS = ("subclass", "shape", "order", "dtype", "allow_mmap", "numpy_array_alignment_bytes")
_MIN_INIT_ARGS = 4
_ALIGN = "numpy_array_alignment_bytes"
# __init__'s default alignment is 16 since joblib 1.2 and absent before: which one loads decides the bytes read.
_VERSION_DEFAULT = Opaque("alignment default of the installed joblib")
_RECONSTRUCTOR = "copyreg._reconstructor"  # protocol 0/1: _reconstructor(cls, object, None)
_MAX_DTYPE_DEPTH = 8
_NOT_PLAIN = object()
_LATIN1 = frozenset({"latin1", "latin-1"})
# Everything numpy's dtype constructor and __setstate__ raise on bad plain input (numpy's string
# parser raises SyntaxError, warnings may be errors): a dtype joblib cannot build fails its load.
DTYPE_ERRORS: tuple[type[BaseException], ...] = (
    TypeError, ValueError, KeyError, IndexError, AttributeError, SyntaxError, RecursionError, MemoryError,
    OverflowError, ArithmeticError, UnicodeError, SystemError, Warning,
)  # fmt: skip


def _initial_attrs(made: Made) -> dict[str, object] | str | None:
    """The wrapper's ``__dict__`` before any BUILD; a problem text when it cannot be modelled; None if not a wrapper."""
    name = made.callee.name
    if name in WRAPPERS:
        # NumpyArrayWrapper defines __init__ but not __new__: object.__new__ ignores NEWOBJ/NEWOBJ_EX
        # arguments, and INST/OBJ without arguments call __new__ only (pickle._Unpickler._instantiate).
        if made.opcode in ("NEWOBJ", "NEWOBJ_EX") or made.args == ():
            return {}  # REDUCE with no arguments raises TypeError in __init__: nothing after it loads
        return _init_attrs(made.args)
    if name == _RECONSTRUCTOR and isinstance(made.args, tuple) and made.args:
        cls = made.args[0]
        if not (isinstance(cls, GlobalVal) and cls.ref.name in WRAPPERS):
            return None
        base = made.args[1] if len(made.args) == 3 else None
        if isinstance(base, GlobalVal) and base.ref.name == "builtins.object":
            return {}
        return "wrapper rebuilt by copyreg._reconstructor with a base other than object"
    return None


def _init_attrs(args: object) -> dict[str, object] | str:
    """What ``NumpyArrayWrapper.__init__(*args)`` stores (REDUCE, or INST/OBJ with arguments)."""
    if not isinstance(args, tuple) or not _MIN_INIT_ARGS <= len(args) <= len(_INIT_PARAMS):
        return "wrapper created with constructor arguments __init__ does not take"
    attrs: dict[str, object] = {"allow_mmap": False, _ALIGN: _VERSION_DEFAULT}
    attrs.update(zip(_INIT_PARAMS, args, strict=False))
    return attrs


def _falsy(value: object) -> bool:
    if isinstance(value, SymDict | SymList):
        return value.count == 0
    return value is None or (isinstance(value, bool | int | float | str | bytes | tuple) and not value)


def apply_state(attrs: dict[str, object], state: object) -> str | None:
    """Update ``attrs`` as the pure-Python ``load_build`` updates ``__dict__``; return a problem or None."""
    slots: object = None
    if isinstance(state, tuple) and len(state) == 2:
        state, slots = state
    for part in (state, slots):
        if _falsy(part):
            continue
        if not isinstance(part, SymDict):
            return f"wrapper state is {type(part).__name__}, not a dict"
        if part.count > len(part.pairs):
            return f"wrapper state has {part.count} entries, more than are kept"
        for key, value in part.pairs:
            if type(key) is not str:
                return "wrapper state has a key that is not a string"
            attrs[key] = value  # the last duplicate wins, as in dict.update / setattr
    return None


def _plain(value: object, depth: int) -> object:
    """The stream's constant ``value`` as a real Python value, or ``_NOT_PLAIN``."""
    if value is None or isinstance(value, bool | int | float | str | bytes):
        return value
    items: list[object]
    if isinstance(value, tuple):
        items = [_plain(v, depth) for v in value]
        return _NOT_PLAIN if any(v is _NOT_PLAIN for v in items) else tuple(items)
    if isinstance(value, SymList) and value.count == len(value.items):
        items = [_plain(v, depth) for v in value.items]
        return _NOT_PLAIN if any(v is _NOT_PLAIN for v in items) else items
    if isinstance(value, SymDict) and value.count == len(value.pairs):
        pairs = [(_plain(k, depth), _plain(v, depth)) for k, v in value.pairs]
        if any(k is _NOT_PLAIN or v is _NOT_PLAIN or isinstance(k, list | dict) for k, v in pairs):
            return _NOT_PLAIN
        return dict(pairs)
    if isinstance(value, Made) and value.callee.name == "_codecs.encode":
        # How protocols 0-2 write bytes: _codecs.encode(text, "latin1"); no other codec is looked up.
        args = value.args
        if isinstance(args, tuple) and len(args) == 2 and isinstance(args[0], str) and args[1] in _LATIN1:
            return args[0].encode("latin-1", "strict") if args[0].isascii() or max(args[0]) <= "\xff" else _NOT_PLAIN
        return _NOT_PLAIN
    if isinstance(value, Made):
        built = numpy_dtype(value, depth + 1)
        return _NOT_PLAIN if built is None else built
    return _NOT_PLAIN


def numpy_dtype(value: object, depth: int = 0) -> np.dtype[np.generic] | None:
    """Rebuild a symbolic ``numpy.dtype(...)`` with numpy, from constants only; None when that is not possible."""
    if not isinstance(value, Made) or value.callee.name != "numpy.dtype" or depth > _MAX_DTYPE_DEPTH:
        return None
    import numpy as np

    args, state = _plain(value.args, depth), _plain(value.state, depth)
    if not isinstance(args, tuple) or not args or not isinstance(args[0], str) or state is _NOT_PLAIN:
        return None
    try:
        dtype: np.dtype[np.generic] = np.dtype(*args)
        if state is not None:
            if not _state_as_numpy_writes(dtype, state):
                return None  # not understood: the wrapper's size is unknown, which blocks
            dtype.__setstate__(state)  # type: ignore[attr-defined]  # numpy stubs omit it; unpickling calls it
    except DTYPE_ERRORS:
        return None
    return dtype


_ALIGNMENTS = frozenset({-1, 1, 2, 4, 8, 16})


def _state_as_numpy_writes(dtype: np.dtype[np.generic], state: object) -> bool:
    """True when ``state`` has exactly the shape ``numpy.dtype.__reduce__`` writes for ``dtype``'s kind.

    ``dtype.__setstate__`` is numpy C code that trusts its argument: a hostile state (a subarray
    descriptor that is an int, six fields for an object dtype) crashed the scanner with SIGSEGV
    (differential campaign seed 101, indexes 18010 and 42273). Only numpy's own shapes reach it:
    the protocol-3 8-tuple (plain, flexible and structured types, with the flags numpy computes
    for a plain type) and the protocol-4 9-tuple of datetimes with its unit metadata.
    """
    if not isinstance(state, tuple) or len(state) not in (8, 9):
        return False
    version, byteorder, subdescr, names, fields, elsize, alignment, flags = state[:8]
    if (version, len(state)) not in ((3, 8), (4, 9)) or byteorder not in ("<", ">", "|", "="):
        return False
    if not all(type(v) is int for v in (elsize, alignment, flags)):
        return False
    if subdescr is not None and not _subarray_fits(subdescr, elsize, dtype):
        return False
    if alignment not in _ALIGNMENTS or not 0 <= flags <= 0xFF:
        return False
    if len(state) == 9 and not (dtype.kind in "mM" and _datetime_metadata(state[8])):
        return False
    if names is None and fields is None:
        return bool(flags == dtype.flags) and elsize in (-1, dtype.itemsize)
    if not isinstance(names, tuple) or not isinstance(fields, dict) or set(names) != set(fields):
        return False
    if not all(type(n) is str for n in names) or elsize != dtype.itemsize:
        return False
    return all(_field_fits(field, elsize) for field in fields.values())


def _subarray_fits(subdescr: object, elsize: int, dtype: np.dtype[np.generic]) -> bool:
    """A subarray descriptor as numpy writes it: ``(base dtype, shape)`` filling the whole item."""
    import numpy as np

    if not isinstance(subdescr, tuple) or len(subdescr) != 2 or not isinstance(subdescr[0], np.dtype):
        return False
    shape = subdescr[1]
    if not isinstance(shape, tuple) or len(shape) > 32 or not all(type(n) is int and n >= 0 for n in shape):
        return False
    return subdescr[0].itemsize * math.prod(shape) == elsize == dtype.itemsize


def _field_fits(field: object, elsize: int) -> bool:
    import numpy as np

    if not isinstance(field, tuple) or len(field) not in (2, 3) or not isinstance(field[0], np.dtype):
        return False
    offset = field[1]
    return type(offset) is int and offset >= 0 and offset + field[0].itemsize <= elsize


_DATETIME_UNITS = frozenset(b"Y M W D h m s ms us ns ps fs as generic".split())


def _datetime_metadata(metadata: object) -> bool:
    """The metadata numpy writes, ``(None, (unit, num, den, events))``, for a datetime64/timedelta64 dtype."""
    if not isinstance(metadata, tuple) or len(metadata) != 2 or metadata[0] is not None:
        return False
    unit = metadata[1]
    return (
        isinstance(unit, tuple)
        and len(unit) == 4
        and unit[0] in _DATETIME_UNITS
        and all(type(v) is int and 0 < v < 2**31 for v in unit[1:])
    )


class ArrayHook:
    """``on_build`` hook: after each wrapper BUILD, return how many bytes joblib reads from the file."""

    def __init__(self, source: ByteSource, where: Location, ctx: ScanContext) -> None:
        self.source, self.where, self.ctx = source, where, ctx
        self.findings: list[Finding] = []
        self.reads: dict[int, int] = {}  # offset after BUILD -> bytes joblib reads there
        self.nested_globals: set[tuple[str, int]] = set()  # (name, offset) in object-array pickles
        self._attrs: dict[int, tuple[Made, dict[str, object]]] = {}

    def __call__(self, made: Made, pos: int) -> int:
        """Return the bytes joblib reads from the file after this BUILD (0 for anything but a wrapper)."""
        initial = _initial_attrs(made)
        if initial is None:
            return 0
        if isinstance(initial, str):
            return self._unknown(pos, initial)
        kept = self._attrs.get(id(made))
        attrs = dict(kept[1]) if kept is not None else initial
        problem = apply_state(attrs, made.state)
        self._attrs[id(made)] = (made, attrs)  # the Made is kept so its id is never reused
        if problem is not None:
            return self._unknown(pos, problem)
        skip = self._size(attrs, pos)
        if skip > 0:
            self.reads[pos] = skip
        return skip

    def _size(self, attrs: dict[str, object], pos: int) -> int:
        dtype, shape = numpy_dtype(attrs.get("dtype")), attrs.get("shape")
        if dtype is None:
            return self._unknown(pos, f"dtype {attrs.get('dtype')!r} is not a numpy.dtype built from constants")
        if not isinstance(shape, tuple) or not all(type(d) is int and d >= 0 for d in shape):
            return self._unknown(pos, f"shape {shape!r} is not a tuple of non-negative ints")
        if dtype.hasobject:  # joblib: Unpickler(file_handle).load() right here, a nested plain pickle
            trace, findings = analyze_stream(self.source, pos, self.where.child(f"object-array@{pos}"), self.ctx)
            self.findings.extend(findings)
            self.nested_globals.update((g.name, g.offset) for g in trace.globals)
            return trace.end - pos if trace.stopped else 0
        if dtype.itemsize == 0:
            return self._unknown(pos, f"dtype {dtype.str} has item size 0 (joblib's read divides by it)")
        skip = 0
        if "numpy_array_alignment_bytes" in attrs:
            align = attrs["numpy_array_alignment_bytes"]
            if align is _VERSION_DEFAULT:
                return self._unknown(pos, "__init__'s default alignment differs across joblib versions")
            if isinstance(align, Opaque):
                return self._unknown(pos, "alignment is a value only known when loaded")
            if align is not None:  # joblib tests `is not None`: 0 and False still read the padding byte
                pad = self.source.read_at(pos, 1)
                skip = 1 + (pad[0] if pad else 0)
        return skip + math.prod(shape) * dtype.itemsize

    def _unknown(self, pos: int, why: str) -> int:
        message = f"joblib array wrapper before offset {pos}: {why}"
        self.findings.append(
            codes.JOBLIB_ARRAY.at(self.where.path, message, member=self.where.member, offset=pos, reason=why)
        )
        return 0


# Argument layout of each opcode: a fixed byte count, a (width, signed) length prefix, or lines.
_FIXED = {ord(k): v for k, v in {"J": 4, "K": 1, "M": 2, "G": 8, "h": 1, "j": 4, "q": 1, "r": 4, "\x80": 1,
                                 "\x82": 1, "\x83": 2, "\x84": 4}.items()}  # fmt: skip
_COUNTED = {ord(k): v for k, v in {"\x8a": (1, False), "\x8b": (4, True), "T": (4, True), "U": (1, False),
                                   "X": (4, False), "\x8c": (1, False), "\x8d": (8, False), "B": (4, False),
                                   "C": (1, False), "\x8e": (8, False), "\x96": (8, False)}.items()}  # fmt: skip
_LINES = {**dict.fromkeys(b"FILPSVgp", 1), **dict.fromkeys(b"ci", 2)}
_FRAME = 0x95
_WINDOW = 1 << 20


class _Window:
    """Sequential reads over a source through a 1 MiB window (one read per window, not per opcode)."""

    def __init__(self, source: ByteSource) -> None:
        self.source, self.base, self.data = source, 0, b""

    def get(self, pos: int, n: int) -> bytes:
        i = pos - self.base
        if i < 0 or i + n > len(self.data):
            self.base, self.data, i = pos, self.source.read_at(pos, max(n, _WINDOW)), 0
        return self.data[i : i + n]

    def after_line(self, pos: int, end: int) -> int:
        while pos < end:
            i = pos - self.base
            if not 0 <= i < len(self.data):
                self.base, self.data, i = pos, self.source.read_at(pos, _WINDOW), 0
                if not self.data:
                    break
            cut = self.data.find(b"\n", i)
            if cut >= 0:
                return self.base + cut + 1
            pos = self.base + len(self.data)
        return end


def frame_desyncs(source: ByteSource, start: int, end: int, reads: dict[int, int]) -> list[tuple[int, int]]:
    """Return ``(array offset, frame end)`` for each array read that starts inside a FRAME with bytes left.

    Follows the opcode boundaries the symbolic walker followed (same argument lengths, same
    skips) outside frames, and hops over each FRAME: joblib's pure-Python unpickler fails on an
    opcode that straddles a frame's end or a FRAME inside a frame, so after a frame without an
    array read the next opcode starts exactly at its end. ``joblib.dump`` puts almost everything
    in frames, so this costs a few steps per array, not one per opcode.
    """
    found: list[tuple[int, int]] = []
    starts = sorted(reads)
    pos, window = start, _Window(source)
    while pos < end:
        if pos in reads:
            pos += reads[pos]
            continue
        head = window.get(pos, 9)
        if not head:
            break
        code, pos = head[0], pos + 1
        if code == _FRAME and len(head) == 9:
            pos += 8
            frame_end = pos + int.from_bytes(head[1:9], "little")
            first = bisect.bisect_left(starts, pos)
            found.extend((r, frame_end) for r in starts[first : bisect.bisect_left(starts, frame_end)])
            pos = frame_end
        elif (width := _FIXED.get(code)) is not None:
            pos += width
        elif (counted := _COUNTED.get(code)) is not None:
            size = int.from_bytes(head[1 : 1 + counted[0]], "little", signed=counted[1])
            pos += counted[0] + max(size, 0)
        elif (lines := _LINES.get(code)) is not None:
            for _ in range(lines):
                pos = window.after_line(pos, end)
    return found
