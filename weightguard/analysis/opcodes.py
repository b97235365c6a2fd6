"""Bounded pickle opcode walker with a symbolic stack and memo (never executes anything).

:func:`walk_pickle` decodes one pickle stream (protocols 0-5, with or without a
``PROTO`` opcode) and simulates the unpickler's stack, mark stack and memo with
inert placeholders, so that what a real ``pickle.load`` would import and call
is known exactly: ``STACK_GLOBAL`` operands fetched back from the memo by
``BINGET`` resolve to their real strings (the memo-desync bypass, THREATS 4),
and every callable reached by ``REDUCE``/``BUILD``/``INST``/``OBJ``/``NEWOBJ``/
``NEWOBJ_EX`` is recorded with its opcode and byte offset. Names are remapped
with :mod:`_compat_pickle` exactly when a loader remaps them (:func:`resolved_names`).

Why a hand-written decoder instead of :func:`pickletools.genops`: genops reads
every argument into memory (a 2 GiB ``BINBYTES8`` would be materialised),
raises on the first malformed byte instead of letting us record where and why,
and costs several Python calls per opcode. Here large constants are skipped by
offset, reads go through a window over the :class:`ByteSource`, and malformed
input becomes an :class:`Anomaly` (never an exception). Containers are never
materialised: lists and dicts keep a few items for inspection and a count, and
memo/``DUP`` share references, so billion-laughs expansion costs nothing.

Limits: ``max_pickle_bytes`` (stream length, not counting bytes a ``on_build``
hook skips), ``max_pickle_opcodes`` and ``max_memo_entries`` raise
:class:`~weightguard.errors.LimitExceeded`; the time budget is checked every
few thousand opcodes. Not handled here: deciding what is allowed (see
:mod:`weightguard.analysis.allowlist` and :mod:`weightguard.analysis.pickle_analyzer`).
"""

from __future__ import annotations

import _compat_pickle
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from weightguard.analysis import cpython_text
from weightguard.analysis.interface import ScanContext
from weightguard.sources.interface import ByteSource

_KEEP_ITEMS = 64  # items kept per symbolic list/dict (for inspection only)
_NESTED_MAGIC = (b"PK\x03\x04", b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"7z\xbc\xaf\x27\x1c", b"\x93NUMPY")


@dataclass(frozen=True, slots=True)
class GlobalRef:
    """One global the stream names, as a loader resolves it (see :func:`resolved_names`)."""

    module: str
    qualname: str
    offset: int
    opcode: str

    @property
    def name(self) -> str:
        """``module.qualname``."""
        return f"{self.module}.{self.qualname}"


@dataclass(frozen=True, slots=True)
class CallRef:
    """A callable reached by a call-like opcode (REDUCE, BUILD, INST, OBJ, NEWOBJ, NEWOBJ_EX)."""

    callee: GlobalRef
    opcode: str
    offset: int


class AnomalyKind(StrEnum):
    """Why a stream is not a plain, well-formed pickle."""

    INVALID_OPCODE = "invalid-opcode"
    TRUNCATED = "truncated"
    MISSING_STOP = "missing-stop"
    STACK_UNDERFLOW = "stack-underflow"
    MEMO_MISS = "memo-miss"
    BAD_ARGUMENT = "bad-argument"
    UNKNOWN_PROTOCOL = "unknown-protocol"
    NONCONST_GLOBAL = "non-constant-global"
    EXTENSION = "extension-code"
    INDIRECT_CALL = "indirect-call"
    GLOBAL_MUTATION = "global-mutation"
    OUT_OF_BAND = "out-of-band-buffer"
    UNUSED_VALUES = "unused-values"
    FRAME_SPLIT = "frame-split"
    TOO_MANY = "too-many-anomalies"


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One parse or semantic anomaly, at the offset of the opcode that caused it."""

    kind: AnomalyKind
    offset: int
    opcode: str
    detail: str


@dataclass(frozen=True, slots=True)
class EmbeddedBlob:
    """A str/bytes constant that looks like a pickle or an archive.

    ``data`` is set only for str constants (their bytes differ from the stream's).
    """

    offset: int
    length: int
    opcode: str
    pickle_like: bool
    data: bytes | None = None


@dataclass(frozen=True, slots=True)
class PickleTrace:
    """What one pickle stream would do, as far as a static walk can tell."""

    start: int
    end: int
    protocol: int
    opcodes: int
    globals: tuple[GlobalRef, ...]
    calls: tuple[CallRef, ...]
    persistent_ids: tuple[tuple[str, ...], ...]
    anomalies: tuple[Anomaly, ...]
    first_value: object | None
    complete: bool
    embedded: tuple[EmbeddedBlob, ...] = ()
    stopped: bool = False  # a STOP opcode was reached (``end`` is just after it)


# Symbolic values. Constants (int, float, bool, None, small str/bytes) and tuples
# are plain Python values; everything else is one of these inert placeholders.
# Plain __slots__ classes, not dataclasses: they are created in the hot loop.
class GlobalVal:
    """The object a GLOBAL/STACK_GLOBAL/INST names."""

    __slots__ = ("ref",)

    def __init__(self, ref: GlobalRef) -> None:
        self.ref = ref


class Made:
    """The result of calling a global; ``state`` is what BUILD passed to it last.

    ``opcode`` is the opcode that created it: REDUCE calls the global (a class runs ``__init__``
    with ``args``); NEWOBJ/NEWOBJ_EX call ``cls.__new__`` only; INST/OBJ call the class when there
    are arguments and only ``__new__`` without (``pickle._Unpickler._instantiate``).
    """

    __slots__ = ("args", "callee", "opcode", "state")

    def __init__(self, callee: GlobalRef, args: object, opcode: str = "REDUCE") -> None:
        self.callee = callee
        self.args = args
        self.opcode = opcode
        self.state: object = None


class Opaque:
    """A value the walker does not model (persistent object, buffer, result of an odd call)."""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what


class Blob:
    """A large str/bytes constant, kept by position only."""

    __slots__ = ("length", "offset")

    def __init__(self, offset: int, length: int) -> None:
        self.offset = offset
        self.length = length


class SymList:
    """A list, set or frozenset: the first items and a count."""

    __slots__ = ("count", "items")

    def __init__(self, items: list[object]) -> None:
        self.items = items[:_KEEP_ITEMS]
        self.count = len(items)

    def extend(self, items: list[object]) -> None:
        """Add items, keeping only the first few."""
        room = _KEEP_ITEMS - len(self.items)
        if room > 0:
            self.items.extend(items[:room])
        self.count += len(items)


class SymDict:
    """A dict: the first (key, value) pairs and a count."""

    __slots__ = ("count", "pairs")

    def __init__(self) -> None:
        self.pairs: list[tuple[object, object]] = []
        self.count = 0

    @classmethod
    def of(cls, flat: list[object]) -> SymDict:
        """Build from a flat key, value, key, value list (the DICT opcode)."""
        made = cls()
        made.update(flat)
        return made

    def update(self, flat: list[object]) -> None:
        """Add pairs from a flat key, value, key, value list."""
        for i in range(0, len(flat) - 1, 2):
            if len(self.pairs) < _KEEP_ITEMS:
                self.pairs.append((flat[i], flat[i + 1]))
            self.count += 1

    def get(self, key: str) -> object:
        """Return the kept value for ``key`` (None when absent)."""
        return next((v for k, v in self.pairs if k == key), None)


FLAGGED = "!"
"""Prefix of :attr:`Opaque.what` when the value's cause was already recorded as an anomaly."""
_DEFAULTDICT = ("collections", "defaultdict")


def factory_problem(callee: GlobalRef, args: object, opcode: str) -> str | None:
    """Why calling or building ``callee`` could give a defaultdict an unnamed factory; None when it cannot.

    ``defaultdict(factory)`` calls ``factory()`` for each missing key after loading, so the
    factory is a callable the stream chooses (THREATS 5.1): it must be None or a named global,
    which the allowlist then judges like any other. ``NEWOBJ`` leaves it None; ``BUILD``
    could set it through slot state, and defaultdict's own pickles never use ``BUILD``.
    """
    if (callee.module, callee.qualname) != _DEFAULTDICT or opcode in ("NEWOBJ", "NEWOBJ_EX"):
        return None
    if opcode == "BUILD":
        return "BUILD on collections.defaultdict can set its default_factory to any value"
    factory = args[0] if isinstance(args, tuple) and args else None
    if factory is None or isinstance(factory, GlobalVal):
        return None
    if isinstance(factory, Opaque) and factory.what.startswith(FLAGGED):
        return None
    return f"collections.defaultdict factory is {describe(factory)}, not a named global"


BuildHook = Callable[[Made, int], int]
"""Called after BUILD on a :class:`Made` with the offset after BUILD; returns bytes to skip (joblib arrays)."""


def remap(module: str, name: str) -> tuple[str, str]:
    """Apply ``_compat_pickle``'s Python 2 -> 3 name remapping (unconditionally; see :func:`resolved_names`)."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def resolved_names(module: str, name: str, opcode: str, proto: int) -> list[tuple[str, str]]:
    """Every ``(module, name)`` a loader resolves for a global; CPython's resolution comes first.

    CPython's ``_pickle`` (``Unpickler_find_class``: ``if (self->proto < 3 && self->fix_imports)``)
    and ``pickle._Unpickler.find_class`` (``if self.proto < 3 and self.fix_imports``) remap only
    while the last PROTO seen (0 before any) is below 3, ``fix_imports`` being on by default.
    torch's ``weights_only`` unpickler remaps every GLOBAL opcode whatever the protocol (and
    reads no INST or STACK_GLOBAL). Where they differ, both names are judged (issue 15): a name
    that only one loader's mapping makes dangerous still blocks.
    """
    mapped = remap(module, name)
    if proto < 3:
        return [mapped]
    if opcode == "GLOBAL" and mapped != (module, name):
        return [(module, name), mapped]
    return [(module, name)]


def walk_pickle(source: ByteSource, start: int, ctx: ScanContext, *, on_build: BuildHook | None = None) -> PickleTrace:
    """Walk one pickle stream from ``start`` without executing it.

    Args:
        source: The bytes.
        start: Offset of the stream's first opcode.
        ctx: Limits and the time budget.
        on_build: Optional hook for formats that put raw data after a BUILD (joblib).

    Returns:
        The trace; malformed input is reported in ``anomalies``, never raised.

    Raises:
        LimitExceeded: a pickle limit or the time budget was reached.
    """
    # The machine lives in its own module to keep both under the 500-line budget.
    from weightguard.analysis._pickle_machine import Machine  # noqa: PLC0415 - circular by design

    return Machine(source, start, ctx, on_build).run()


def describe(value: object, depth: int = 0) -> str:
    """Render a symbolic value as short text (persistent ids, evidence)."""
    if isinstance(value, GlobalVal):
        return value.ref.name
    if isinstance(value, str | int | float | bool) or value is None:
        return str(value)
    if isinstance(value, bytes):
        return value[:64].hex()
    if isinstance(value, tuple) and depth < 3:
        return "(" + ", ".join(describe(v, depth + 1) for v in value[:16]) + ")"
    if isinstance(value, Made):
        return f"<{value.callee.name}(...)>"
    return f"<{type(value).__name__.lower()}>"


def looks_nested(head: bytes, tail: bytes) -> tuple[bool, bool]:
    """Return (nested?, pickle-like?) for a constant starting with ``head`` and ending with ``tail``."""
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return True, True
    if head[:1] in (b"(", b"c", b"}", b"]") and tail == b".":
        return True, True
    return any(head.startswith(m) for m in _NESTED_MAGIC), False


_NAMES = {
    b"(": "MARK", b".": "STOP", b"0": "POP", b"1": "POP_MARK", b"2": "DUP", b"F": "FLOAT", b"I": "INT",
    b"J": "BININT", b"K": "BININT1", b"L": "LONG", b"M": "BININT2", b"N": "NONE", b"P": "PERSID",
    b"Q": "BINPERSID", b"R": "REDUCE", b"S": "STRING", b"T": "BINSTRING", b"U": "SHORT_BINSTRING",
    b"V": "UNICODE", b"X": "BINUNICODE", b"a": "APPEND", b"b": "BUILD", b"c": "GLOBAL", b"d": "DICT",
    b"}": "EMPTY_DICT", b"e": "APPENDS", b"g": "GET", b"h": "BINGET", b"i": "INST", b"j": "LONG_BINGET",
    b"l": "LIST", b"]": "EMPTY_LIST", b"o": "OBJ", b"p": "PUT", b"q": "BINPUT", b"r": "LONG_BINPUT",
    b"s": "SETITEM", b"t": "TUPLE", b")": "EMPTY_TUPLE", b"u": "SETITEMS", b"G": "BINFLOAT",
    b"\x80": "PROTO", b"\x81": "NEWOBJ", b"\x82": "EXT1", b"\x83": "EXT2", b"\x84": "EXT4", b"\x85": "TUPLE1",
    b"\x86": "TUPLE2", b"\x87": "TUPLE3", b"\x88": "NEWTRUE", b"\x89": "NEWFALSE", b"\x8a": "LONG1",
    b"\x8b": "LONG4", b"B": "BINBYTES", b"C": "SHORT_BINBYTES", b"\x8c": "SHORT_BINUNICODE",
    b"\x8d": "BINUNICODE8", b"\x8e": "BINBYTES8", b"\x8f": "EMPTY_SET", b"\x90": "ADDITEMS", b"\x91": "FROZENSET",
    b"\x92": "NEWOBJ_EX", b"\x93": "STACK_GLOBAL", b"\x94": "MEMOIZE", b"\x95": "FRAME", b"\x96": "BYTEARRAY8",
    b"\x97": "NEXT_BUFFER", b"\x98": "READONLY_BUFFER",
}  # fmt: skip
OPCODE_NAMES: dict[int, str] = {k[0]: v for k, v in _NAMES.items()}
SIZED_OPCODES: dict[str, tuple[int, str, bool]] = {
    "BINSTRING": (4, "latin1", True), "SHORT_BINSTRING": (1, "latin1", False), "BINUNICODE": (4, "utf8", False),
    "SHORT_BINUNICODE": (1, "utf8", False), "BINUNICODE8": (8, "utf8", False), "BINBYTES": (4, "bytes", False),
    "SHORT_BINBYTES": (1, "bytes", False), "BINBYTES8": (8, "bytes", False), "BYTEARRAY8": (8, "bytes", False),
}  # fmt: skip
"""Length-prefixed constants: (prefix width, decoding, signed prefix)."""
MUTATORS: dict[str, tuple[bool, type]] = {
    "APPEND": (False, SymList), "APPENDS": (True, SymList), "ADDITEMS": (True, SymList),
    "SETITEM": (False, SymDict), "SETITEMS": (True, SymDict),
}  # fmt: skip
"""Container opcodes: (takes the items since MARK, container kind)."""
PROTO1_OPCODES = frozenset(b"JKMGQUThjqr]})BC")  # binary opcodes of protocol 1 (and 3 for bytes)


parse_memo_index = cpython_text.parse_memo_index
"""GET/PUT index exactly as CPython reads it (base 10, whitespace, underscores); None when rejected."""


def embedded_blob(value: object, head: bytes, tail: bytes, pos: int, opcode: str) -> EmbeddedBlob | None:
    """Return an :class:`EmbeddedBlob` when a str/bytes constant looks like a nested pickle or archive."""
    if isinstance(value, str):  # judge the characters, not their UTF-8 encoding in the stream
        head, tail = value[:4].encode("latin-1", "replace"), value[-1:].encode("latin-1", "replace")
    nested, pickle_like = looks_nested(head, tail)
    if not nested:
        return None
    length = value.length if isinstance(value, Blob) else len(value) if isinstance(value, str | bytes) else 0
    if not isinstance(value, str):
        return EmbeddedBlob(pos, length, opcode, pickle_like)
    try:  # what _codecs.encode(s, "latin1") would hand to pickle.loads
        return EmbeddedBlob(pos, length, opcode, pickle_like, value.encode("latin-1"))
    except UnicodeEncodeError:
        return None


UNPACK_D = struct.Struct(">d").unpack_from
UNPACK_I = struct.Struct("<i").unpack_from
UNPACK_UI = struct.Struct("<I").unpack_from
UNPACK_Q = struct.Struct("<Q").unpack_from
UNPACK_H = struct.Struct("<H").unpack_from
