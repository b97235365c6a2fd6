"""The symbolic unpickler behind :func:`weightguard.analysis.opcodes.walk_pickle` (private).

A dispatch table maps each opcode byte to a handler that decodes its argument from a window
over the source and updates a stack, mark stack and memo of inert placeholders, following
CPython's ``_pickle`` semantics. Nothing is imported, called or materialised. Not handled
here: the records, the public entry point and any judgement of what the stream does.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from weightguard.analysis import cpython_text
from weightguard.analysis import opcodes as oc
from weightguard.analysis.interface import ScanContext
from weightguard.analysis.opcodes import CallRef, GlobalRef, GlobalVal, Made, Opaque, SymDict, SymList
from weightguard.errors import LimitExceeded
from weightguard.sources.interface import ByteSource

_WINDOW = 1 << 20  # bytes read from the source at a time
_SMALL = 1 << 16  # str/bytes constants up to this size are kept as values
_MAX_ANOMALIES = 64  # after this many, the stream is not worth walking further
_TIME_EVERY = 4096  # opcodes between two ctx.check_time() calls
_STOP, _HALT = -2, -1  # handler results besides "next offset"
_UNSET = object()
_FLAGGED = oc.FLAGGED


class Machine:
    """The walker's state; one instance per stream. Handlers take the offset after the opcode byte."""

    def __init__(self, source: ByteSource, start: int, ctx: ScanContext, on_build: oc.BuildHook | None) -> None:
        self.src, self.size, self.start, self.ctx, self.on_build = source, source.size, start, ctx, on_build
        self.win, self.wbase = b"", start
        self.stack: list[object] = []
        self.marks: list[int] = []
        self.memo: dict[int, object] = {}
        self.globals: list[GlobalRef] = []
        self.calls: list[CallRef] = []
        self.pids: list[tuple[str, ...]] = []
        self.anomalies: list[oc.Anomaly] = []
        self.embedded: list[oc.EmbeddedBlob] = []
        self.first: object = _UNSET
        self.proto, self.maxproto, self.off, self.code = -1, 0, start, 0
        self.current_proto = 0  # the last PROTO's version, as the unpicklers keep it (decides remapping)
        self.limit_pos = start + ctx.limits.max_pickle_bytes
        self.table = self._table()
        self.frame_ends: list[int] = []

    def _bytes(self, pos: int, n: int) -> bytes | None:
        i = pos - self.wbase
        if i < 0 or i + n > len(self.win):
            if pos + n > self.size:
                self._trunc(f"needs {n} bytes at {pos}")
                return None
            self.win, self.wbase, i = self.src.read_at(pos, max(n, _WINDOW)), pos, 0
            if len(self.win) < n:
                self._trunc(f"needs {n} bytes at {pos}")
                return None
        return self.win[i : i + n]

    def _line(self, pos: int) -> tuple[bytes | None, int]:
        got = -1
        while True:
            i = pos - self.wbase
            have = len(self.win) - i if 0 <= i <= len(self.win) else 0
            if have:
                j = self.win.find(b"\n", i)
                if j >= 0:
                    return self.win[i:j], self.wbase + j + 1
            if pos + have >= self.size or have <= got:  # the end, or a short read (a file that shrank)
                self._trunc("line without newline")
                return None, pos
            if pos + have > self.limit_pos:
                raise LimitExceeded("max_pickle_bytes", self.ctx.limits.max_pickle_bytes, pos + have - self.start)
            self.win, self.wbase, got = self.src.read_at(pos, max(_WINDOW, 2 * have)), pos, have

    def _trunc(self, detail: str) -> int:
        self._anom(oc.AnomalyKind.TRUNCATED, detail)
        return _HALT

    def _anom(self, kind: oc.AnomalyKind, detail: str) -> None:
        self.anomalies.append(oc.Anomaly(kind, self.off, oc.OPCODE_NAMES.get(self.code, f"0x{self.code:02x}"), detail))

    def run(self) -> oc.PickleTrace:
        pos, count, ctx, table = self.start, 0, self.ctx, self.table
        max_ops, complete = ctx.limits.max_pickle_opcodes, False
        while True:
            if count % _TIME_EVERY == 0:
                ctx.check_time()
            i = pos - self.wbase
            if not 0 <= i < len(self.win):
                self.win, self.wbase, i = self.src.read_at(pos, _WINDOW) if pos < self.size else b"", pos, 0
                if not self.win:  # the end, or a source shorter than its size (a file that shrank): truncated
                    self.off, self.code, short = pos, 0x2E, pos < self.size
                    kind = oc.AnomalyKind.TRUNCATED if short else oc.AnomalyKind.MISSING_STOP
                    self._anom(kind, f"short read at {pos} of {self.size}" if short else "stream ended without STOP")
                    break
            self.off, self.code = pos, self.win[i]
            count += 1
            if count > max_ops:
                raise LimitExceeded("max_pickle_opcodes", max_ops, count)
            if pos >= self.limit_pos:
                raise LimitExceeded("max_pickle_bytes", ctx.limits.max_pickle_bytes, pos - self.start)
            handler = table.get(self.code)
            if handler is None:
                self._anom(oc.AnomalyKind.INVALID_OPCODE, f"byte 0x{self.code:02x} is not a pickle opcode")
                break
            if self.code >= 0x80 or self.code in oc.PROTO1_OPCODES:
                self.maxproto = max(self.maxproto, 2 if self.code >= 0x80 else 1)
            pos = handler(pos + 1)
            if self.frame_ends and pos >= 0 and any(self.off < end < pos for end in self.frame_ends):
                # pickle.load on a file drops the rest of a FRAME's buffer when an opcode straddles
                # its end: the bytes load differently than this walk reads them (issue 15).
                self._anom(oc.AnomalyKind.FRAME_SPLIT, "an opcode straddles the end of a FRAME")
            if pos < 0 or len(self.anomalies) > _MAX_ANOMALIES:
                complete = pos == _STOP
                if len(self.anomalies) > _MAX_ANOMALIES:
                    self._anom(oc.AnomalyKind.TOO_MANY, f"walk stopped after {_MAX_ANOMALIES} anomalies")
                pos = self.off + 1 if pos == _STOP else self.off
                break
        blocking = [a for a in self.anomalies if a.kind is not oc.AnomalyKind.UNUSED_VALUES]
        return oc.PickleTrace(
            start=self.start, end=pos, protocol=self.proto if self.proto >= 0 else self.maxproto,
            opcodes=count, globals=tuple(self.globals), calls=tuple(self.calls), persistent_ids=tuple(self.pids),
            anomalies=tuple(self.anomalies), first_value=None if self.first is _UNSET else self.first,
            complete=complete and not blocking, embedded=tuple(self.embedded), stopped=complete,
        )  # fmt: skip

    def _floor(self) -> int:
        return self.marks[-1] if self.marks else 0

    def _pop(self) -> object:
        if len(self.stack) > self._floor():
            return self.stack.pop()
        self._anom(oc.AnomalyKind.STACK_UNDERFLOW, "pop from an empty stack")
        return Opaque(_FLAGGED + "underflow")

    def _top(self) -> object:
        if len(self.stack) > self._floor():
            return self.stack[-1]
        self._anom(oc.AnomalyKind.STACK_UNDERFLOW, "no value on the stack")
        return Opaque(_FLAGGED + "underflow")

    def _pop_mark(self) -> list[object]:
        if not self.marks:
            self._anom(oc.AnomalyKind.STACK_UNDERFLOW, "no MARK on the stack")
            return []
        i = self.marks.pop()
        items = self.stack[i:]
        del self.stack[i:]
        return items

    def _push(self, value: object) -> None:
        if self.first is _UNSET:
            self.first = value if isinstance(value, int | str | bytes) and not isinstance(value, bool) else None
        self.stack.append(value)

    def _global(self, module: str, name: str, opcode: str) -> GlobalVal:
        # Every name some loader resolves is recorded; the first is what CPython's unpicklers resolve.
        names = oc.resolved_names(module, name, opcode, self.current_proto)
        self.globals.extend(refs := [GlobalRef(m, n, self.off, opcode) for m, n in names])
        return GlobalVal(refs[0])

    def _call(self, func: object, args: object, opcode: str) -> object:
        if isinstance(func, GlobalVal):
            self.calls.append(CallRef(func.ref, opcode, self.off))
            if (problem := oc.factory_problem(func.ref, args, opcode)) is not None:
                self._anom(oc.AnomalyKind.INDIRECT_CALL, problem)
            return Made(func.ref, args, opcode)
        if not (isinstance(func, Opaque) and func.what.startswith(_FLAGGED)):
            self._anom(oc.AnomalyKind.INDIRECT_CALL, f"{opcode} calls {oc.describe(func)}, which is not a named global")
        return Opaque(_FLAGGED + "call result")

    def _target(self, target: object, opcode: str, ok: type | tuple[type, ...]) -> bool:
        """Check the object a container opcode mutates; True when it is a plain container."""
        if isinstance(target, ok):
            return True
        if isinstance(target, GlobalVal):
            self._anom(oc.AnomalyKind.GLOBAL_MUTATION, f"{opcode} mutates the global {target.ref.name} itself")
        elif isinstance(target, Made):
            self.calls.append(CallRef(target.callee, opcode, self.off))
        elif not (isinstance(target, Opaque) and target.what.startswith(_FLAGGED)):
            self._anom(oc.AnomalyKind.BAD_ARGUMENT, f"{opcode} on {oc.describe(target)} fails when loaded")
        return False

    def _memo_get(self, idx: int | None, pos: int) -> int:
        if idx is None:
            return _HALT
        if idx in self.memo:
            self.stack.append(self.memo[idx])
        else:
            self._anom(oc.AnomalyKind.MEMO_MISS, f"memo index {idx} was never stored")
            self.stack.append(Opaque(_FLAGGED + "memo miss"))
        return pos

    def _memo_put(self, idx: int | None, pos: int) -> int:
        if idx is None:
            return _HALT
        if idx < 0:
            self._anom(oc.AnomalyKind.BAD_ARGUMENT, "negative memo index")
            return _HALT
        if idx not in self.memo and len(self.memo) >= self.ctx.limits.max_memo_entries:
            raise LimitExceeded("max_memo_entries", self.ctx.limits.max_memo_entries, len(self.memo) + 1)
        self.memo[idx] = self._top()
        return pos

    def _uint(self, pos: int, n: int) -> int | None:
        b = self._bytes(pos, n)
        return None if b is None else int.from_bytes(b, "little")

    def _text_int(self, pos: int) -> tuple[int | None, int]:
        line, nxt = self._line(pos)
        if line is not None and (idx := oc.parse_memo_index(line)) is not None:
            return idx, nxt
        if line is not None:
            self._anom(oc.AnomalyKind.BAD_ARGUMENT, f"bad memo index {line[:32]!r}")
        return None, nxt

    def _data(self, pos: int, n: int, opcode_kind: str) -> int:
        """Push a str/bytes constant of ``n`` bytes at ``pos`` (kind: 'bytes', 'utf8', 'latin1')."""
        if n < 0:
            self._anom(oc.AnomalyKind.BAD_ARGUMENT, "negative length")
            return _HALT
        if pos + n > self.size:
            return self._trunc(f"constant of {n} bytes runs past the end")
        if pos + n > self.limit_pos:
            raise LimitExceeded("max_pickle_bytes", self.ctx.limits.max_pickle_bytes, pos + n - self.start)
        if n > _SMALL:
            value: object = oc.Blob(pos, n)
            head, tail = self.src.read_at(pos, 4), self.src.read_at(pos + n - 1, 1)
        else:
            raw = self._bytes(pos, n)
            if raw is None:
                return _HALT
            head, tail = raw[:4], raw[-1:]
            try:
                codec = "latin-1" if opcode_kind == "latin1" else "utf-8"
                value = raw if opcode_kind == "bytes" else raw.decode(codec, "surrogatepass")
            except UnicodeDecodeError:
                self._anom(oc.AnomalyKind.BAD_ARGUMENT, "string constant is not valid UTF-8")
                return _HALT
        blob = oc.embedded_blob(value, head, tail, pos, oc.OPCODE_NAMES[self.code]) if n >= 16 else None
        if blob is not None:
            self.embedded.append(blob)
        self._push(value)
        return pos + n

    # ---- opcode handlers: each takes the offset after the opcode byte ------------------------
    def _table(self) -> dict[int, Callable[[int], int]]:
        """Map opcode bytes to handlers; similar opcodes share one parametrised handler."""
        fixed: dict[str, tuple[int, Callable[[bytes], object]]] = {
            "BININT": (4, lambda b: oc.UNPACK_I(b)[0]), "BININT1": (1, lambda b: b[0]),
            "BININT2": (2, lambda b: int.from_bytes(b, "little")), "BINFLOAT": (8, lambda b: oc.UNPACK_D(b)[0]),
        }  # fmt: skip
        # Exactly CPython's parsers (issue 15); None means the unpickler rejects the argument. FLOAT as
        # either unpickler reads it; STRING as str (latin-1 keeps every byte, as loaders may).
        text: dict[str, Callable[[bytes], object]] = {
            "FLOAT": cpython_text.parse_float_either, "INT": cpython_text.int_value,
            "LONG": cpython_text.parse_long, "UNICODE": cpython_text.parse_unicode,
            "STRING": lambda line: None if (raw := cpython_text.parse_string(line)) is None else raw.decode("latin-1"),
        }  # fmt: skip
        made: dict[str, Callable[[], object]] = {
            "NONE": lambda: None, "NEWTRUE": lambda: True, "NEWFALSE": lambda: False, "EMPTY_TUPLE": tuple,
            "EMPTY_DICT": SymDict, "EMPTY_LIST": lambda: SymList([]), "EMPTY_SET": lambda: SymList([]),
        }  # fmt: skip
        grouped: dict[str, Callable[[list[object]], object]] = {
            "LIST": SymList, "FROZENSET": SymList, "TUPLE": tuple, "DICT": SymDict.of,
        }  # fmt: skip
        by_name: dict[str, Callable[[int], int]] = {
            "TUPLE1": partial(self._tuple_n, 1), "TUPLE2": partial(self._tuple_n, 2),
            "TUPLE3": partial(self._tuple_n, 3), "EXT1": partial(self._ext, 1), "EXT2": partial(self._ext, 2),
            "EXT4": partial(self._ext, 4), "BINGET": partial(self._memo_bin, 1, True),
            "LONG_BINGET": partial(self._memo_bin, 4, True), "BINPUT": partial(self._memo_bin, 1, False),
            "LONG_BINPUT": partial(self._memo_bin, 4, False), "REDUCE": partial(self._call_op, "REDUCE"),
            "NEWOBJ": partial(self._call_op, "NEWOBJ"), "GLOBAL": partial(self._named, False),
            "INST": partial(self._named, True), "GET": partial(self._memo_text, True),
            "POP_MARK": partial(self._do, self._pop_mark), "READONLY_BUFFER": partial(self._do, self._top),
            "MARK": partial(self._do, lambda: self.marks.append(len(self.stack))),
            "DUP": partial(self._do, lambda: self._push(self._top())), "MEMOIZE": lambda p: self._memo_put(len(self.memo), p),
            "BINPERSID": partial(self._do, lambda: self._persistent(self._pop())),
            "PUT": partial(self._memo_text, False), "LONG1": partial(self._long, 1), "LONG4": partial(self._long, 4),
        }  # fmt: skip
        by_name.update({k: partial(self._sized, *v) for k, v in oc.SIZED_OPCODES.items()})
        by_name.update({k: partial(self._fixed, *v) for k, v in fixed.items()})
        by_name.update({k: partial(self._parsed, v) for k, v in text.items()})
        by_name.update({k: partial(self._const, v) for k, v in made.items()})
        by_name.update({k: partial(self._grouped, v) for k, v in grouped.items()})
        by_name.update({k: partial(self._mutate, k, *v) for k, v in oc.MUTATORS.items()})
        table: dict[int, Callable[[int], int]] = {}
        for code, name in oc.OPCODE_NAMES.items():
            table[code] = by_name.get(name) or getattr(self, "_op_" + name.lower())
        return table

    def _const(self, make: Callable[[], object], pos: int) -> int:
        self._push(make())
        return pos

    def _grouped(self, make: Callable[[list[object]], object], pos: int) -> int:
        self._push(make(self._pop_mark()))
        return pos

    def _tuple_n(self, n: int, pos: int) -> int:
        items = [self._pop() for _ in range(n)]
        self._push(tuple(reversed(items)))
        return pos

    def _parsed(self, parse: Callable[[bytes], object], pos: int) -> int:
        line, nxt = self._line(pos)
        if line is None:
            return _HALT
        try:
            value = parse(line)
        except (ValueError, UnicodeDecodeError):
            value = None
        if value is None:
            return self._bad(f"bad text argument {line[:32]!r}")
        self._push(value)
        return nxt

    def _fixed(self, n: int, convert: Callable[[bytes], object], pos: int) -> int:
        raw = self._bytes(pos, n)
        if raw is None:
            return _HALT
        self._push(convert(raw))
        return pos + n

    def _sized(self, width: int, kind: str, signed: bool, pos: int) -> int:
        raw = self._bytes(pos, width)
        if raw is None:
            return _HALT
        return self._data(pos + width, int.from_bytes(raw, "little", signed=signed), kind)

    def _long(self, width: int, pos: int) -> int:
        raw = self._bytes(pos, width)
        if raw is None:
            return _HALT
        n, pos = int.from_bytes(raw, "little", signed=width == 4), pos + width
        if n < 0 or n > 4096:  # a huge integer is data, not a name: keep its place only
            if n < 0 or pos + n > self.size:
                return self._bad("negative LONG4 length") if n < 0 else self._trunc("LONG4 runs past the end")
            self._push(oc.Blob(pos, n))
            return pos + n
        return self._fixed(n, lambda b: int.from_bytes(b, "little", signed=True), pos)

    def _op_stop(self, pos: int) -> int:
        self._pop()
        if self.stack or self.marks:
            left = f"{len(self.stack)} value(s) and {len(self.marks)} mark(s)"
            self._anom(oc.AnomalyKind.UNUSED_VALUES, f"{left} left on the stack at STOP")
        return _STOP

    def _op_pop(self, pos: int) -> int:
        if len(self.stack) > self._floor():
            self.stack.pop()
        elif self.marks:
            self.marks.pop()  # CPython: POP on an empty frame discards the mark
        else:
            self._anom(oc.AnomalyKind.STACK_UNDERFLOW, "pop from an empty stack")
        return pos

    def _persistent(self, pid: object) -> None:
        self.pids.append(tuple(oc.describe(v) for v in pid) if isinstance(pid, tuple) else (oc.describe(pid),))
        self._push(Opaque("persistent object"))

    def _op_persid(self, pos: int) -> int:
        line, nxt = self._line(pos)
        if line is None or not line.isascii():
            return _HALT if line is None else self._bad("PERSID argument is not ASCII")
        self._persistent(line.decode("ascii"))
        return nxt

    def _call_op(self, opcode: str, pos: int) -> int:
        args = self._pop()
        self._push(self._call(self._pop(), args, opcode))
        return pos

    def _op_newobj_ex(self, pos: int) -> int:
        kwargs, args = self._pop(), self._pop()
        self._push(self._call(self._pop(), (args, kwargs), "NEWOBJ_EX"))
        return pos

    def _op_obj(self, pos: int) -> int:
        items = self._pop_mark()
        if not items:
            self._anom(oc.AnomalyKind.STACK_UNDERFLOW, "OBJ without a class")
            items = [Opaque(_FLAGGED + "underflow")]
        self._push(self._call(items[0], tuple(items[1:]), "OBJ"))
        return pos

    def _named(self, inst: bool, pos: int) -> int:
        opcode = "INST" if inst else "GLOBAL"
        module, pos = self._line(pos)
        name, pos = self._line(pos) if module is not None else (None, pos)
        if module is None or name is None:
            return _HALT
        try:
            value = self._global(module.decode("utf-8"), name.decode("utf-8"), opcode)
        except UnicodeDecodeError:
            return self._bad(f"{opcode} name is not valid UTF-8")
        self._push(self._call(value, tuple(self._pop_mark()), "INST") if inst else value)
        return pos

    def _op_stack_global(self, pos: int) -> int:
        name, module = self._pop(), self._pop()
        if type(module) is str and type(name) is str:
            self._push(self._global(module, name, "STACK_GLOBAL"))
            return pos
        if not any(isinstance(v, Opaque) and v.what.startswith(_FLAGGED) for v in (module, name)):
            detail = f"operands {oc.describe(module)}, {oc.describe(name)} are not constant strings"
            self._anom(oc.AnomalyKind.NONCONST_GLOBAL, detail)
        self._push(Opaque(_FLAGGED + "non-constant global"))
        return pos

    def _ext(self, width: int, pos: int) -> int:
        code = self._uint(pos, width)
        if code is None:
            return _HALT
        self._anom(oc.AnomalyKind.EXTENSION, f"extension code {code} names a global through copyreg's registry")
        self._push(Opaque(_FLAGGED + "extension"))
        return pos + width

    def _op_build(self, pos: int) -> int:
        state = self._pop()
        target = self._top()
        if isinstance(target, Made):
            self.calls.append(CallRef(target.callee, "BUILD", self.off))
            if (problem := oc.factory_problem(target.callee, state, "BUILD")) is not None:
                self._anom(oc.AnomalyKind.INDIRECT_CALL, problem)
            target.state = state
            skip = self.on_build(target, pos) if self.on_build is not None else 0
            if skip > 0:
                if pos + skip > self.size:
                    return self._trunc(f"{skip} bytes of array data run past the end")
                self.limit_pos += skip  # skipped array bytes are data, not pickle
                self.frame_ends = [end for end in self.frame_ends if end > pos + skip]  # not a split: data
                return pos + skip
        elif isinstance(target, GlobalVal):
            self._anom(oc.AnomalyKind.GLOBAL_MUTATION, f"BUILD sets attributes on the global {target.ref.name} itself")
        elif isinstance(target, Opaque) and not target.what.startswith(_FLAGGED):
            self._anom(oc.AnomalyKind.INDIRECT_CALL, f"BUILD on a {target.what} runs code the stream does not name")
        elif not isinstance(target, Opaque):
            self._anom(oc.AnomalyKind.BAD_ARGUMENT, f"BUILD on {oc.describe(target)} fails when loaded")
        return pos

    def _mutate(self, opcode: str, marked: bool, kind: type, pos: int) -> int:
        items = self._pop_mark() if marked else [self._pop()]
        if not marked and kind is SymDict:
            items.insert(0, self._pop())  # SETITEM pops the value, then the key
        target = self._top()
        ok = (SymDict, SymList) if kind is SymDict else SymList
        if self._target(target, opcode, ok):
            if isinstance(target, SymDict) and kind is SymDict:
                target.update(items)
            elif isinstance(target, SymList) and kind is SymList:
                target.extend(items)
        return pos

    def _memo_text(self, get: bool, pos: int) -> int:
        idx, nxt = self._text_int(pos)
        return self._memo_get(idx, nxt) if get else self._memo_put(idx, nxt)

    def _memo_bin(self, width: int, get: bool, pos: int) -> int:
        idx = self._uint(pos, width)
        return self._memo_get(idx, pos + width) if get else self._memo_put(idx, pos + width)

    def _op_proto(self, pos: int) -> int:
        version = self._uint(pos, 1)
        if version is None:
            return _HALT
        if version > 5:
            self._anom(oc.AnomalyKind.UNKNOWN_PROTOCOL, f"unsupported pickle protocol {version}")
            return _HALT
        if self.proto < 0:
            self.proto = version
        self.current_proto = version  # load_proto: every PROTO sets it
        return pos + 1

    def _op_frame(self, pos: int) -> int:
        raw = self._bytes(pos, 8)
        if raw is None:
            return _HALT
        if pos + 8 + oc.UNPACK_Q(raw)[0] > self.size:
            return self._trunc(f"FRAME of {oc.UNPACK_Q(raw)[0]} bytes runs past the end")
        self.frame_ends = [end for end in self.frame_ends if end > pos] + [pos + 8 + oc.UNPACK_Q(raw)[0]]
        return pos + 8

    def _do(self, action: Callable[[], object], pos: int) -> int:
        action()
        return pos

    def _op_next_buffer(self, pos: int) -> int:
        self._anom(oc.AnomalyKind.OUT_OF_BAND, "NEXT_BUFFER needs out-of-band buffers a file cannot carry")
        self._push(Opaque(_FLAGGED + "buffer"))
        return pos

    def _bad(self, detail: str) -> int:
        self._anom(oc.AnomalyKind.BAD_ARGUMENT, detail)
        return _HALT
