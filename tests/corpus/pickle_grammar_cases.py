"""Pickles that CPython loads (and runs) but a pickletools-based detector called text (issue 15).

Each bypass is one generator: a stream whose payload ``os.system`` call runs under the
real ``pickle.load`` (proven in a subprocess by ``tests/analysis/test_pickle_grammar_corpus.py``)
while the stream looks like text: every byte is printable ASCII or part of a valid UTF-8
character, so the old detector's "inert TEXT" verdict applied. Every bypass is written
raw and nested: in a zip, xz-compressed, in a tar, and as ``pytorch_model.bin`` in a
model folder (a mapping). Nothing here loads anything.

The bypasses (the feature of CPython's ``_pickle`` that pickletools does not share):
INT and LONG arguments with base prefixes (``strtol``/``PyLong_FromString`` base 0),
a first opcode whose argument is longer
than the old 64 KiB window, an unexpected first opcode (SHORT_BINBYTES), a STRING with
non-UTF-8-decodable-by-pickletools bytes (loaded with ``encoding="utf-8"``, as torch
does), a STACK_GLOBAL that is the last byte of a UTF-8 character, and a stream without
STOP (the payload runs before the end). One more is binary: an opcode straddling a FRAME's
end, which file readers and byte-exact readers read differently. Each of these 40 files
was approved before the fix; ``float_whitespace`` (for joblib's pure-Python unpickler) guards
the model against parsing FLOAT like the C unpickler only.
"""

from __future__ import annotations

import io
import lzma
import tarfile
from collections.abc import Callable

from tests.corpus.spec import Built, CaseList, Payload
from tests.corpus.writers import zip_bytes

GRAMMAR = CaseList("blocked")
REFERENCE = "issue 15: pickle grammar bypass of the text classification"


def _system(p: Payload, *, stop: bool = True) -> bytes:
    """``os.system(shell)`` in protocol 0 text: GLOBAL, MARK, UNICODE, TUPLE, REDUCE (, STOP)."""
    return b"cos\nsystem\n(V" + p.shell.encode() + b"\ntR" + (b"." if stop else b"")


def int_base_prefix(p: Payload) -> bytes:
    """``I0x1F``: ``strtol(s, &end, 0)`` reads hex; pickletools' ``int(s)`` rejects it."""
    return b"I0x1F\n0" + _system(p)


def long_base_prefix(p: Payload) -> bytes:
    """``L0o17L``: LONG goes to ``PyLong_FromString(s, NULL, 0)``; pickletools wants decimal."""
    return b"L0o17L\n0" + _system(p)


def first_argument_past_window(p: Payload) -> bytes:
    """A first UNICODE argument longer than the old 64 KiB detection window."""
    return b"V" + b"A" * (70 * 1024) + b"\n0" + _system(p)


def short_binbytes_first(p: Payload) -> bytes:
    """SHORT_BINBYTES first (length byte ``' '`` = 32): an opcode the old detector never expected first."""
    return b"C " + b"x" * 32 + b"0" + _system(p)


def non_ascii_string(p: Payload) -> bytes:
    """STRING with UTF-8 bytes: pickletools decodes STRING as ASCII; torch's utf-8 unpickler accepts it."""
    return b"S'caf\xc3\xa9'\n0" + _system(p)


def stack_global_in_utf8_char(p: Payload) -> bytes:
    """BINGET 0xC2 then STACK_GLOBAL 0x93 are the UTF-8 character U+0093; the stream has no STOP."""
    return b"Vos\nVsystem\np194\n0h\xc2\x93(V" + p.shell.encode() + b"\ntR"


def no_stop(p: Payload) -> bytes:
    """No STOP: ``pickle.load`` runs the call before it finds the stream truncated."""
    return b"I0x1\n0" + _system(p, stop=False)


def float_whitespace(p: Payload) -> bytes:
    """FLOAT `` 1_0.5``: the C unpickler rejects it, joblib's pure-Python unpickler (``float()``) reads it
    and runs the call (a model of the C parsers alone would have called this file text)."""
    return b"F 1_0.5\n0" + _system(p)


def frame_split(p: Payload) -> bytes:
    """A BININT straddles the end of a FRAME: ``pickle.load`` on an ``io.BytesIO`` (as torch reads
    ``data.pkl``) drops the frame's last byte and reads one byte later than ``pickle.loads`` and a
    byte-exact walk, so the bytes a walk sees as one SHORT_BINBYTES constant run as opcodes."""
    body = b"0" + _system(p)
    body += b" " * (143 - len(body))  # 143 = 0x8f, EMPTY_SET: the length byte is the file reader's first opcode
    assert len(body) == 143, "payload too long for the frame-split case"
    head = b"J\x01"  # BININT with one of its four bytes inside the frame
    return b"\x80\x04\x95" + len(head).to_bytes(8, "little") + head + b"\x00\x00\x00C\x8f" + body + b"0."


BYPASSES: dict[str, Callable[[Payload], bytes]] = {
    f.__name__: f
    for f in (
        int_base_prefix,
        long_base_prefix,
        first_argument_past_window,
        short_binbytes_first,
        non_ascii_string,
        stack_global_in_utf8_char,
        no_stop,
        float_whitespace,
        frame_split,
    )
}
TEXT_LIKE = frozenset(BYPASSES) - {"frame_split"}
LOAD_ENCODING = {"non_ascii_string": "utf-8"}  # what the proof loads with (torch.load's default)
PURE_PYTHON = frozenset({"float_whitespace"})  # proven with pickle._Unpickler, as joblib.load reads


def _tar(name: str, data: bytes) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mtime = len(data), 0
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


NESTINGS: dict[str, tuple[str, Callable[[bytes], Built]]] = {
    "raw": ("{}.pkl", lambda data: data),
    "zip": ("{}.zip", lambda data: zip_bytes([("model.pkl", data)])),
    "xz": ("{}.pkl.xz", lambda data: lzma.compress(data)),
    "tar": ("{}.tar", lambda data: _tar("model.pkl", data)),
    "folder": ("{}_model", lambda data: {"pytorch_model.bin": data}),
}


def _register(name: str, build: Callable[[Payload], bytes], nesting: str) -> None:
    pattern, wrap = NESTINGS[nesting]

    def builder(p: Payload) -> Built:
        return wrap(build(p))

    builder.__doc__ = f"{build.__doc__} ({nesting})"
    GRAMMAR.case(f"pickle_grammar/{pattern.format(name)}", REFERENCE)(builder)


for _name, _build in BYPASSES.items():
    for _nesting in NESTINGS:
        _register(_name, _build, _nesting)
