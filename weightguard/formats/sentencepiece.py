"""SentencePiece ``tokenizer.model`` files: a strict walk of the ``ModelProto`` wire format.

Llama, Mistral, T5 and Gemma repositories ship their tokenizer as a serialized
``sentencepiece_model.proto`` ``ModelProto``: repeated ``pieces`` (field 1:
piece string, score float, type enum), ``trainer_spec`` (2),
``normalizer_spec`` (3), ``self_test_data`` (4) and ``denormalizer_spec`` (5).
Loading one parses a protobuf and runs no code, so a file whose *whole* wire
format walks cleanly with exactly these fields and types is inert. The same
walk decides detection (:func:`check_model_proto`, called by the detector, which
never looks at the name) and analysis.

Why hand-written: the ``sentencepiece`` and ``protobuf`` packages are native,
large and not core dependencies; the schema needed here is five fields deep.
Bounded: the file is read only when it is at most ``max_header_bytes``, and
each byte is visited once. Fail closed: unknown fields, groups, duplicated
singular fields, non-UTF-8 pieces and unknown piece types are malformations.

Not handled here: whether the tokenizer's vocabulary is sensible, or the
normalizer's precompiled character map (an opaque blob to the loader's parser).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from weightguard.errors import FormatError
from weightguard.findings import Finding
from weightguard.formats import asset_codes as codes
from weightguard.formats.interface import FileFormat

if TYPE_CHECKING:
    from weightguard.analysis.interface import Location, ScanContext
    from weightguard.sources.interface import ByteSource

_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5
_PIECE_TYPES = frozenset(range(1, 7))  # NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE
_MESSAGES = (1, 2, 3, 4, 5)  # every ModelProto field is a message
_SINGULAR = frozenset({2, 3, 4, 5})


class SentencePieceError(FormatError):
    """The bytes are not a well-formed SentencePiece ``ModelProto``."""


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while shift < 70:
        if pos >= end:
            raise SentencePieceError(f"truncated varint at offset {pos}")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
    raise SentencePieceError(f"varint longer than 10 bytes before offset {pos}")


def _fields(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """Yield ``(number, wire, value or payload offset, payload length)`` for one message."""
    pos = start
    while pos < end:
        tag, pos = _varint(data, pos, end)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise SentencePieceError(f"field number 0 at offset {pos}")
        if wire == _VARINT:
            value, pos = _varint(data, pos, end)
            yield number, wire, value, 0
        elif wire in (_FIXED64, _FIXED32):
            width = 8 if wire == _FIXED64 else 4
            if pos + width > end:
                raise SentencePieceError(f"truncated fixed-width field {number} at offset {pos}")
            yield number, wire, pos, width
            pos += width
        elif wire == _LEN:
            length, pos = _varint(data, pos, end)
            if pos + length > end:
                raise SentencePieceError(f"field {number} of {length} bytes runs past its message at offset {pos}")
            yield number, wire, pos, length
            pos += length
        else:
            raise SentencePieceError(f"wire type {wire} (groups are not used by SentencePiece) at offset {pos}")


def _utf8(data: bytes, start: int, length: int, what: str) -> None:
    try:
        data[start : start + length].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SentencePieceError(f"{what} at offset {start} is not UTF-8") from exc


def _piece(data: bytes, start: int, end: int) -> None:
    seen: set[int] = set()
    for number, wire, value, length in _fields(data, start, end):
        if number in seen:
            raise SentencePieceError(f"piece at offset {start} repeats field {number}")
        seen.add(number)
        if number == 1 and wire == _LEN:
            _utf8(data, value, length, "piece")
        elif number == 2 and wire == _FIXED32:
            pass  # score: any float
        elif number == 3 and wire == _VARINT:
            if value not in _PIECE_TYPES:
                raise SentencePieceError(f"piece at offset {start} has unknown type {value}")
        else:
            raise SentencePieceError(f"piece at offset {start} has field {number} of wire type {wire}")
    if 1 not in seen:
        raise SentencePieceError(f"piece at offset {start} has no piece string")


def _self_test(data: bytes, start: int, end: int) -> None:
    for number, wire, value, length in _fields(data, start, end):
        if number != 1 or wire != _LEN:
            raise SentencePieceError(f"self_test_data has field {number} of wire type {wire}")
        for sub, sub_wire, sub_value, sub_length in _fields(data, value, value + length):
            if sub not in (1, 2) or sub_wire != _LEN:
                raise SentencePieceError(f"self-test sample has field {sub} of wire type {sub_wire}")
            _utf8(data, sub_value, sub_length, "self-test sample")


def _plain(data: bytes, start: int, end: int) -> None:
    """Walk a scalar-only message (TrainerSpec, NormalizerSpec): the wire format must hold."""
    for _ in _fields(data, start, end):
        pass


def check_model_proto(data: bytes) -> str:
    """Walk ``data`` as a whole ``ModelProto``; return a one-line summary.

    Raises:
        SentencePieceError: The bytes are not a well-formed SentencePiece model.
    """
    if data[:1] != b"\x0a":  # protobuf writes fields in number order: pieces first
        raise SentencePieceError("does not start with a piece (field 1)")
    pieces = 0
    seen: set[int] = set()
    for number, wire, value, length in _fields(data, 0, len(data)):
        if number not in _MESSAGES or wire != _LEN:
            raise SentencePieceError(f"ModelProto field {number} of wire type {wire}")
        if number in _SINGULAR and number in seen:
            raise SentencePieceError(f"ModelProto repeats singular field {number}")
        seen.add(number)
        if number == 1:
            _piece(data, value, value + length)
            pieces += 1
        elif number == 4:
            _self_test(data, value, value + length)
        else:
            _plain(data, value, value + length)
    # Every trainer writes both specs after the pieces: without them the file is a cut-off prefix
    # (a protobuf has no end marker, so a truncation at a field boundary still parses).
    missing = [name for n, name in ((2, "trainer_spec"), (3, "normalizer_spec")) if n not in seen]
    if missing:
        raise SentencePieceError(f"no {' or '.join(missing)} after {pieces} pieces (a truncated model?)")
    return f"SentencePiece ModelProto, {pieces} pieces, trainer_spec, normalizer_spec"


def first_piece_ok(head: bytes) -> bool:
    """True when ``head`` opens with one well-formed piece (for files too large to walk whole)."""
    try:
        for number, wire, value, length in _fields(head, 0, len(head)):
            if number != 1 or wire != _LEN:
                return False
            _piece(head, value, value + length)
            return True
    except SentencePieceError:
        return False
    return False


class SentencePieceAnalyzer:
    """Analyzer for SentencePiece models: the whole wire format, strictly."""

    name = "sentencepiece"
    formats = frozenset({FileFormat.SENTENCEPIECE})

    def analyze(self, source: ByteSource, where: Location, ctx: ScanContext) -> Iterator[Finding]:
        """Yield a finding when the model is malformed or too large to walk."""
        ctx.check_time()
        if source.size > ctx.limits.max_header_bytes:
            limit = ctx.limits.max_header_bytes
            message = f"{source.size} bytes > max_header_bytes {limit}"
            yield codes.SPM_TOO_LARGE.at(where.path, message, member=where.member, size=source.size)
            return
        try:
            check_model_proto(source.read_at(0, source.size))
        except SentencePieceError as exc:
            yield codes.SPM_MALFORMED.at(where.path, exc.message, member=where.member)
