"""A tiny pickle assembler for building attack streams opcode by opcode.

Building hostile pickles by hand lets the corpus express what ``pickle.dumps``
never emits (dotted proto-4 names, memo tricks, BUILD on a global, streams
that break after the payload). Nothing here loads or executes a pickle: it
only concatenates bytes. Not handled here: which payload a case uses (see
:mod:`tests.corpus.malicious`).
"""

from __future__ import annotations

import struct

MARK = b"("
STOP = b"."
POP = b"0"
TUPLE = b"t"
REDUCE = b"R"
BUILD = b"b"
STACK_GLOBAL = b"\x93"
MEMOIZE = b"\x94"
EMPTY_DICT = b"}"
EMPTY_LIST = b"]"
EMPTY_TUPLE = b")"
SETITEMS = b"u"
APPENDS = b"e"
NEWOBJ = b"\x81"


class Raw(bytes):
    """Bytes that are already opcodes (an expression leaving one value on the stack)."""


def proto(n: int) -> bytes:
    """The PROTO opcode for protocol ``n`` (protocols 2 and up)."""
    return b"\x80" + bytes([n])


def global_(module: str, name: str) -> Raw:
    """GLOBAL opcode (protocols 0-3): pushes ``module.name``."""
    return Raw(b"c" + module.encode() + b"\n" + name.encode() + b"\n")


def stack_global(module: str, name: str) -> Raw:
    """STACK_GLOBAL (protocol 4) with both names pushed as unicode strings."""
    return Raw(const(module) + const(name) + STACK_GLOBAL)


def binput(index: int) -> Raw:
    """BINPUT: store the top of the stack in memo slot ``index`` (< 256)."""
    return Raw(b"q" + bytes([index]))


def binget(index: int) -> Raw:
    """BINGET: push memo slot ``index`` (< 256)."""
    return Raw(b"h" + bytes([index]))


def const(value: object) -> Raw:
    """Opcodes that push ``value`` (str, bytes, int, bool, None, list, tuple, dict, or :class:`Raw`)."""
    if isinstance(value, Raw):
        return value
    if value is None:
        return Raw(b"N")
    if isinstance(value, bool):
        return Raw(b"\x88" if value else b"\x89")
    if isinstance(value, int):
        if -(2**31) <= value < 2**31:
            return Raw(b"J" + struct.pack("<i", value))
        body = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
        return Raw(b"\x8a" + bytes([len(body)]) + body)
    if isinstance(value, str):
        data = value.encode()
        return Raw(b"X" + struct.pack("<I", len(data)) + data)
    if isinstance(value, bytes):
        return Raw(b"B" + struct.pack("<I", len(value)) + value)
    if isinstance(value, list):
        return Raw(EMPTY_LIST + MARK + b"".join(const(v) for v in value) + APPENDS)
    if isinstance(value, tuple):
        return Raw(MARK + b"".join(const(v) for v in value) + TUPLE)
    if isinstance(value, dict):
        items = b"".join(const(k) + const(v) for k, v in value.items())
        return Raw(EMPTY_DICT + MARK + items + SETITEMS)
    raise TypeError(f"cannot assemble {type(value).__name__}")


def call(fn: bytes, *args: object) -> Raw:
    """``fn(*args)`` through REDUCE; ``fn`` is any expression (a global or a previous call)."""
    return Raw(fn + const(tuple(args)) + REDUCE)


def getattr_(obj: bytes, name: str, *, module: str = "builtins") -> Raw:
    """``getattr(obj, name)`` via the ``builtins.getattr`` global."""
    return call(global_(module, "getattr"), Raw(obj), name)


def program(body: bytes, protocol: int = 2) -> bytes:
    """A complete stream: PROTO (for protocol >= 2), the body, STOP."""
    head = proto(protocol) if protocol >= 2 else b""
    return head + body + STOP


def sequence(*parts: bytes) -> Raw:
    """Evaluate each part for its side effect and keep only the last value."""
    out = b""
    for part in parts[:-1]:
        out += part + POP
    return Raw(out + parts[-1])
