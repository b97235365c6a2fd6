"""Would ``pickle.load`` reach code on these bytes? A model of CPython's unpicklers.

:func:`model_load` walks bytes the way CPython's C Unpickler (``_pickle.c``) and its
pure-Python one (``pickle._Unpickler``, which joblib and dill subclass) read them, and
answers where loading would first hand a name to something that can run code:
``find_class`` (GLOBAL, INST, STACK_GLOBAL on two strings) or the copyreg extension
registry (EXT1/2/4, code > 0) -- or that it returns a value (STOP), raises first
(ERROR), or is still valid where a limit stops the walk (LIMIT). Where the two
unpicklers differ the walk takes the more permissive reading: FLOAT is C's or
``float()``'s, memo indices past ``Py_ssize_t`` are kept, a FRAME past the end is a
short frame; INST without a MARK, a last line without newline and empty names reach
``find_class`` in Python only, which imports and then raises before any call, so they
count when the module name is importable. A persistent id is recorded and the walk goes
on with an unknown value, as torch's ``persistent_load`` returns objects (alone it makes
no pickle: zips start with PERSID ``PK``). Detection calls this on every file (issue 15).

The walk stops only where CPython certainly raises: an invalid opcode, input that ends,
a memo miss, a stack or mark underflow with CPython's fence semantics (``marker()``,
``Pdata_pop``, ``load_pop`` popping a MARK, ``do_append``'s ``x <= fence``), an argument
the parsers reject (:mod:`weightguard.analysis.cpython_text`), an unsupported PROTO.
Where the outcome depends on what is not modelled it goes on (conservative): BUILD,
hashability, a ``bytearray`` extended by APPENDS, STRING/BINSTRING under any *encoding*,
``NEXT_BUFFER`` (a caller may pass buffers), huge memo indices, INST names in UTF-8.
Before the first global every value is a constant, so REDUCE/NEWOBJ/NEWOBJ_EX/OBJ on a
constant certainly raise; values are tracked by kind only (int, str, list...).

Where it differs from :mod:`pickletools` (``genops``), each with a test in
``tests/analysis/test_cpython_unpickler.py`` (``test_each_difference_from_pickletools...``):

- INT/LONG/GET/PUT/FLOAT arguments as :mod:`~weightguard.analysis.cpython_text` reads
  them: ``0x``/``0o`` prefixes, a leading ``0`` as octal, an embedded NUL ending the
  argument (pickletools rejects these; CPython accepts them).
- STRING: non-ASCII bytes are accepted (loaders pass ``encoding="utf-8"``, ``"latin1"``,
  ``"bytes"``); a lone ``'`` is rejected (pickletools accepts it).
- A stream without STOP still runs everything before its end (genops raises at the end).
- Stack and MARK semantics are CPython's; genops checks none of them.
- FRAME boundaries: ``pickle.loads`` ignores them, but ``pickle.load`` on a file without
  ``peek`` (the ``io.BytesIO`` torch hands its unpickler), or with a FRAME of 64 KiB or
  more, reads a frame into its own buffer and DROPS the buffer's rest when an opcode
  straddles its end, reading that opcode from after the frame: the same bytes load two
  ways. The walk stops there with :attr:`Reach.SPLIT`, which counts as reaching code
  (the pickle analyzer reports the split as an anomaly).

Unlike the prefix heuristics detection used before: any opcode may come first, of any
protocol, and the walk covers the whole stream up to the ``Limits``, not 64 KiB.

Not handled here: what the globals are (:mod:`weightguard.analysis.pickle_analyzer`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import NoReturn

from weightguard.analysis import cpython_text as text
from weightguard.errors import AnalysisError
from weightguard.limits import Limits
from weightguard.sources.interface import ByteSource

# Value kinds on the modelled stack. STRB: STRING/BINSTRING (str, or bytes with encoding='bytes').
ANY, INT, FLOAT, STR, BYTES, STRB, BYTEARRAY, NONE, TUPLE, LIST, DICT, SET, FROZENSET = range(13)
_MAYBE_STR = frozenset({ANY, STR, STRB})
_LIST_LIKE = frozenset({ANY, LIST, BYTEARRAY})  # has extend()/append()
_ITEM_SETTABLE = frozenset({ANY, DICT, LIST, BYTEARRAY})
_BUFFER = frozenset({ANY, BYTES, BYTEARRAY, STRB})
_WINDOW = 1 << 20  # the largest read at once; the first is small (text is decided in a few bytes)
_FIRST_WINDOW = 4096
_LONG_LINE = 1 << 20  # text arguments longer than this are assumed valid (conservative)
_BIG_TEXT = 1 << 20  # BINUNICODE constants larger than this are not UTF-8-checked (conservative)


_Handler = Callable[["_Model"], None]


class Reach(StrEnum):
    """How ``pickle.load`` ends up on the bytes."""

    GLOBAL = "global"  # find_class was called
    EXTENSION = "extension"  # the copyreg extension registry was consulted
    SPLIT = "frame-split"  # an opcode straddles a FRAME's end: loaders reading a file may read other bytes
    STOP = "stop"  # a value was returned, nothing above reached
    ERROR = "error"  # CPython raised before any of the above
    LIMIT = "limit"  # still valid when a limit ended the walk


@dataclass(frozen=True, slots=True)
class Walk:
    """The answer of :func:`model_load`: the outcome, where, after how many opcodes."""

    reach: Reach
    offset: int  # of the opcode that decided
    opcodes: int
    detail: str
    first_int: int | None = None  # the first value pushed, when it is an integer (torch's legacy magic)
    persistent_at: int | None = None  # offset of the first persistent id passed to persistent_load

    @property
    def runs_code(self) -> bool:
        """True when loading hands a name to find_class or the extension registry (or may: SPLIT)."""
        return self.reach in (Reach.GLOBAL, Reach.EXTENSION, Reach.SPLIT)

    @property
    def is_pickle(self) -> bool:
        """True when CPython reads these bytes as a pickle (code, a value, or valid up to a limit)."""
        return self.reach is not Reach.ERROR


class _Halt(AnalysisError):  # noqa: N818 - private control flow, never escapes model_load
    def __init__(self, reach: Reach, detail: str) -> None:
        super().__init__(detail)
        self.reach, self.detail = reach, detail


class _Raises(_Halt):  # CPython raises here: the walk ends with Reach.ERROR
    def __init__(self, detail: str) -> None:
        super().__init__(Reach.ERROR, detail)


def model_load(source: ByteSource, start: int, limits: Limits, head: bytes = b"") -> Walk:
    """Walk the stream at ``start`` as CPython's Unpickler would; never raises on hostile bytes.

    Args:
        source: The bytes.
        start: Offset of the stream's first opcode.
        limits: ``max_pickle_bytes``, ``max_pickle_opcodes`` and ``max_memo_entries`` end the
            walk with :attr:`Reach.LIMIT`.
        head: Bytes from ``start`` the caller already read (saves reading them again).
    """
    return _Model(source, start, limits, head).run()


class _Model:
    def __init__(self, source: ByteSource, start: int, limits: Limits, head: bytes) -> None:
        self.src, self.size, self.limits = source, source.size, limits
        self.end = min(self.size, start + limits.max_pickle_bytes)
        self.pos, self.win, self.wbase, self.chunk = start, head, start, _FIRST_WINDOW
        self.stack: list[int] = []
        self.marks: list[int] = []
        self.memo: dict[int, int] = {}
        self.first_int: int | None = None
        self.pushed = False
        self.wild = False  # a PUT stored under an index the model could not read
        self.persistent_at: int | None = None
        self.frame_ends: list[int] = []
        self.eof_line = False  # the last lenient line() ended at the end of input, not at a newline

    # ---- reading ------------------------------------------------------------------------------
    def _limit(self, need_end: int) -> None:
        if need_end > self.size:
            raise _Raises("pickle data was truncated")
        raise _Halt(Reach.LIMIT, f"stream longer than max_pickle_bytes {self.limits.max_pickle_bytes}")

    def read(self, n: int) -> bytes:
        if self.pos + n > self.end:
            self._limit(self.pos + n)
        i = self.pos - self.wbase
        if i + n > len(self.win):
            self.win, self.wbase, i = self.src.read_at(self.pos, max(n, self._grow())), self.pos, 0
            if len(self.win) < n:  # a source shorter than its size (a file that shrank): truncated
                raise _Raises("pickle data was truncated (short read)")
        self.pos += n
        return self.win[i : i + n]

    def skip(self, n: int) -> None:
        if self.pos + n > self.end:
            self._limit(self.pos + n)
        self.pos += n

    def line(self, check: Callable[[bytes], bool] | None = None, *, lenient: bool = False) -> bytes | None:
        """One line without its newline (``_Unpickler_Readline``: a line must end in a newline).

        None for a line longer than :data:`_LONG_LINE`: it is scanned, not held, and its
        parser is assumed to accept it (conservative). ``check`` sees each piece as it is
        scanned; False means CPython certainly rejects the line, so the scan stops early
        (a zip's ``PK`` is PERSID with a binary line that may run on for megabytes).
        ``lenient``: the pure-Python unpickler's ``readline()[:-1]``, where a last line
        without a newline loses its last byte instead of failing (GLOBAL/INST names).
        """
        parts: list[bytes] | None = []
        held, i = 0, self.pos - self.wbase
        while True:
            j = self.win.find(b"\n", i)
            chunk = self.win[i : j if j >= 0 else len(self.win)]
            held += len(chunk)
            at_eof = j < 0 and self.wbase + len(self.win) >= self.size
            if check is not None and not check(chunk[:-1] if lenient and at_eof else chunk):
                raise _Raises("the line cannot be valid")
            if parts is not None:
                parts = None if held > _LONG_LINE else [*parts, chunk]
            if j >= 0 and self.wbase + j < self.end:
                self.pos = self.wbase + j + 1
                return None if parts is None else b"".join(parts)
            nxt = self.wbase + len(self.win)
            if lenient and at_eof and self.end == self.size:
                self.pos, self.eof_line = self.size, True
                return None if parts is None else b"".join(parts)[:-1]
            if nxt >= self.end or j >= 0:
                self._limit(self.size + 1 if self.end == self.size else self.end + 1)
            self.win, self.wbase, i = self.src.read_at(nxt, self._grow()), nxt, 0
            if not self.win:  # short read: the line can never end
                raise _Raises("pickle data was truncated (short read)")

    def _grow(self) -> int:
        self.chunk = min(self.chunk * 4, _WINDOW)
        return self.chunk

    # ---- the stack, as Pdata ------------------------------------------------------------------
    @property
    def fence(self) -> int:
        return self.marks[-1] if self.marks else 0

    def push(self, kind: int, value: int | None = None) -> None:
        if not self.pushed:
            self.pushed, self.first_int = True, value
        self.stack.append(kind)

    def pop(self) -> int:
        if len(self.stack) <= self.fence:
            raise _Raises("unpickling stack underflow")
        return self.stack.pop()

    def top(self) -> int:
        if len(self.stack) <= self.fence:
            raise _Raises("unpickling stack underflow")
        return self.stack[-1]

    def marker(self) -> int:
        if not self.marks:
            raise _Raises("could not find MARK")
        return self.marks.pop()

    def run(self) -> Walk:
        offset, count = self.pos, 0
        try:
            while True:
                offset, count = self.pos, count + 1
                self.step(count)
        except _Halt as halt:
            return Walk(halt.reach, offset, count, halt.detail, self.first_int, self.persistent_at)

    def step(self, count: int) -> None:
        if count > self.limits.max_pickle_opcodes:
            raise _Halt(Reach.LIMIT, f"more than max_pickle_opcodes {self.limits.max_pickle_opcodes}")
        if self.pos >= self.size:
            raise _Raises("ran out of input before STOP")
        start = self.pos
        code = self.read(1)[0]  # past max_pickle_bytes: LIMIT
        handler = _TABLE.get(code)
        if handler is None:
            _invalid(code)
        try:
            handler(self)
        except _Halt as halt:
            if halt.reach is Reach.ERROR and self.frame_ends:
                self.split(start)  # the bytes after the frame might have parsed
            raise
        if self.frame_ends:
            self.split(start)
            self.frame_ends = [end for end in self.frame_ends if end > self.pos]

    def split(self, start: int) -> None:
        if any(start < end < self.pos for end in self.frame_ends):
            raise _Halt(Reach.SPLIT, "an opcode straddles the end of a FRAME")


def _table() -> dict[int, _Handler]:  # noqa: C901, PLR0915 - one closure per opcode
    """One small closure per opcode, following ``_pickle.c``'s ``load_*`` functions."""

    def const(kind: int) -> _Handler:
        return lambda m: m.push(kind)

    def fixed(n: int, kind: int, signed: bool = False) -> _Handler:
        def load(m: _Model) -> None:
            raw = m.read(n)
            m.push(kind, int.from_bytes(raw, "little", signed=signed) if kind == INT else None)

        return load

    def counted(width: int, kind: int, signed: bool = False, utf8: bool = False) -> _Handler:
        def load(m: _Model) -> None:
            size = int.from_bytes(m.read(width), "little", signed=signed)
            if size < 0 or size > (1 << 63) - 1:
                raise _Raises("negative or oversized byte count")
            if utf8 and size <= _BIG_TEXT:
                try:
                    m.read(size).decode("utf-8", "surrogatepass")
                except UnicodeDecodeError as exc:
                    raise _Raises("BINUNICODE is not UTF-8") from exc
            elif kind == INT and size <= 64:
                value = int.from_bytes(m.read(size), "little", signed=True)
                m.push(kind, value)
                return
            else:
                m.skip(size)
            m.push(kind)

        return load

    def parsed(parse: Callable[[bytes], object], kind: int) -> _Handler:
        def load(m: _Model) -> None:
            line = m.line()
            value = parse(line) if line is not None else _ASSUMED
            if value is None:
                raise _Raises(f"{parse.__name__} rejects the argument")
            m.push(kind, value if isinstance(value, int) and not isinstance(value, bool) else None)

        return load

    def marked(kind: int, pairs: bool = False) -> _Handler:
        def load(m: _Model) -> None:
            mark = m.marker()
            if pairs and (len(m.stack) - mark) % 2:
                raise _Raises("odd number of items for DICT")
            del m.stack[mark:]
            m.push(kind)

        return load

    def counted_tuple(n: int) -> _Handler:
        def load(m: _Model) -> None:
            if len(m.stack) - n < m.fence:
                raise _Raises("unpickling stack underflow")
            del m.stack[len(m.stack) - n :]
            m.push(TUPLE)

        return load

    def fill(m: _Model, x: int, ok: frozenset[int], pairs: bool) -> None:
        """``do_append``/``do_setitems``/``load_additems`` from stack index ``x``."""
        if x > len(m.stack) or x <= m.fence:
            raise _Raises("unpickling stack underflow")
        if x == len(m.stack):
            return
        if pairs and (len(m.stack) - x) % 2:
            raise _Raises("odd number of items for SETITEMS")
        if m.stack[x - 1] not in ok:
            raise _Raises("the target has no extend/__setitem__/add")
        del m.stack[x:]

    def call(pops: int) -> _Handler:
        def load(m: _Model) -> None:
            if len(m.stack) - pops < m.fence:
                raise _Raises("unpickling stack underflow")
            callee = m.stack[-pops]
            if callee != ANY:  # every value before a global is a constant: not callable, not a type
                raise _Raises("the callable is a constant")
            del m.stack[-pops:]
            m.push(ANY)

        return load

    def op_obj(m: _Model) -> None:
        mark = m.marker()
        if len(m.stack) - mark < 1:
            raise _Raises("unpickling stack underflow")
        if m.stack[mark] != ANY:
            raise _Raises("OBJ class is a constant")
        del m.stack[mark:]
        m.push(ANY)

    def op_pop(m: _Model) -> None:
        if m.marks and m.marks[-1] == len(m.stack):
            m.marks.pop()
        else:
            m.pop()

    def op_build(m: _Model) -> None:
        if len(m.stack) - 2 < m.fence:
            raise _Raises("unpickling stack underflow")
        m.stack.pop()  # the top keeps its identity; whether __setstate__/__dict__ accept is not modelled

    def named(inst: bool) -> _Handler:
        def load(m: _Model) -> None:
            marked, m.eof_line = bool(m.marks) or not inst, False
            module = m.line(text.utf8_check(), lenient=True)
            name = m.line(text.utf8_check(), lenient=True)
            c_reads = (
                marked and not m.eof_line and all(line is None or text.parse_name(line) for line in (module, name))
            )
            # The pure-Python unpickler (joblib, dill) also imports a module for INST without a MARK,
            # a last line without newline and empty names, then raises before any call: that
            # import runs code only when the module name can be imported at all.
            if c_reads or module is None or text.importable(module):
                raise _Halt(Reach.GLOBAL, "INST" if inst else "GLOBAL")
            raise _Raises("bad GLOBAL/INST line")

        return load

    def op_stack_global(m: _Model) -> None:
        name, module = m.pop(), m.pop()
        if name not in _MAYBE_STR or module not in _MAYBE_STR:
            raise _Raises("STACK_GLOBAL requires str")
        raise _Halt(Reach.GLOBAL, "STACK_GLOBAL")

    def ext(n: int) -> _Handler:
        def load(m: _Model) -> None:
            if int.from_bytes(m.read(n), "little", signed=n == 4) <= 0:
                raise _Raises("EXT specifies code <= 0")
            raise _Halt(Reach.EXTENSION, f"EXT{n}")

        return load

    def op_persid(m: _Model) -> None:
        at = m.pos - 1
        pid = m.line(bytes.isascii)
        if pid is not None and not pid.isascii():
            raise _Raises("persistent IDs in protocol 0 must be ASCII strings")
        persistent(m, at)

    def op_binpersid(m: _Model) -> None:
        m.pop()
        persistent(m, m.pos - 1)

    def persistent(m: _Model, at: int) -> None:
        # pickle.load without persistent_load raises here; torch's loaders call theirs, which
        # may return anything (even a callable): go on with an unknown value (conservative).
        if m.persistent_at is None:
            m.persistent_at = at
        m.push(ANY)

    def memo_get(m: _Model, idx: int | None) -> None:
        if idx == _WILD or (idx not in m.memo and m.wild):
            m.stack.append(ANY)  # an index the model could not read, or a memo it lost track of
            return
        if idx is None or idx not in m.memo:
            raise _Raises("memo miss")
        m.stack.append(m.memo[idx])

    def memo_put(m: _Model, idx: int | None) -> None:
        if idx == _WILD:
            m.top()
            m.wild = True
            return
        if idx is None:
            raise _Raises("bad memo index")
        kind = m.top()
        if idx not in m.memo and len(m.memo) >= m.limits.max_memo_entries:
            raise _Halt(Reach.LIMIT, f"more than max_memo_entries {m.limits.max_memo_entries}")
        m.memo[idx] = kind

    def op_proto(m: _Model) -> None:
        if m.read(1)[0] > 5:
            raise _Raises("unsupported pickle protocol")

    def op_frame(m: _Model) -> None:
        size = int.from_bytes(m.read(8), "little")
        if size > (1 << 63) - 1:
            raise _Raises("FRAME length exceeds the system's maximum")
        if m.pos + size <= m.size:  # past the end, C raises; the pure-Python unpickler reads a short frame
            m.frame_ends.append(m.pos + size)

    def op_readonly_buffer(m: _Model) -> None:
        if m.top() not in _BUFFER:
            raise _Raises("memoryview: a bytes-like object is required")
        m.stack[-1] = ANY

    def op_stop(m: _Model) -> None:
        m.pop()
        raise _Halt(Reach.STOP, "STOP")

    by_char: dict[bytes, _Handler] = {
        b"(": lambda m: m.marks.append(len(m.stack)), b".": op_stop, b"0": op_pop,
        b"1": lambda m: m.stack.__delitem__(slice(m.marker(), None)), b"2": lambda m: m.stack.append(m.top()),
        b"F": parsed(text.parse_float_either, FLOAT), b"I": parsed(text.parse_int, INT),
        b"J": fixed(4, INT, True), b"K": fixed(1, INT), b"L": parsed(text.parse_long, INT), b"M": fixed(2, INT),
        b"N": const(NONE), b"P": op_persid, b"Q": op_binpersid, b"R": call(2), b"S": parsed(text.parse_string, STRB),
        b"T": counted(4, STRB, signed=True), b"U": counted(1, STRB), b"V": parsed(text.parse_unicode, STR),
        b"X": counted(4, STR, utf8=True), b"a": lambda m: fill(m, len(m.stack) - 1, _LIST_LIKE, False),
        b"b": op_build, b"c": named(False), b"d": marked(DICT, pairs=True), b"}": const(DICT),
        b"e": lambda m: fill(m, m.marker(), _LIST_LIKE, False), b"g": lambda m: memo_get(m, _index(m.line())),
        b"h": lambda m: memo_get(m, m.read(1)[0]), b"i": named(True), b"j": lambda m: memo_get(m, int.from_bytes(m.read(4), "little")),
        b"l": marked(LIST), b"]": const(LIST), b"o": op_obj,
        b"p": lambda m: memo_put(m, _index(m.line())), b"q": lambda m: memo_put(m, m.read(1)[0]),
        b"r": lambda m: memo_put(m, int.from_bytes(m.read(4), "little")), b"s": lambda m: fill(m, len(m.stack) - 2, _ITEM_SETTABLE, True),
        b"t": marked(TUPLE), b")": counted_tuple(0), b"u": lambda m: fill(m, m.marker(), _ITEM_SETTABLE, True),
        b"G": fixed(8, FLOAT), b"\x80": op_proto, b"\x81": call(2), b"\x82": ext(1), b"\x83": ext(2),
        b"\x84": ext(4), b"\x85": counted_tuple(1), b"\x86": counted_tuple(2), b"\x87": counted_tuple(3),
        b"\x88": const(INT), b"\x89": const(INT), b"\x8a": counted(1, INT), b"\x8b": counted(4, INT, signed=True),
        b"B": counted(4, BYTES), b"C": counted(1, BYTES), b"\x8c": counted(1, STR, utf8=True),
        b"\x8d": counted(8, STR, utf8=True), b"\x8e": counted(8, BYTES), b"\x8f": const(SET),
        b"\x90": lambda m: fill(m, m.marker(), frozenset({ANY, SET}), False), b"\x91": marked(FROZENSET),
        b"\x92": call(3), b"\x93": op_stack_global, b"\x94": lambda m: memo_put(m, len(m.memo)), b"\x95": op_frame,
        b"\x96": counted(8, BYTEARRAY), b"\x97": const(ANY), b"\x98": op_readonly_buffer,
    }  # fmt: skip
    return {k[0]: v for k, v in by_char.items()}


def _invalid(code: int) -> NoReturn:
    raise _Raises(f"invalid load key 0x{code:02x}")


_TABLE = _table()
_ASSUMED = object()  # the value of a text argument too long to parse (assumed valid)
_WILD = -1  # a GET/PUT index too long to parse (1 MiB of leading whitespace is still valid)


def _index(line: bytes | None) -> int | None:
    return _WILD if line is None else text.parse_memo_index(line)
