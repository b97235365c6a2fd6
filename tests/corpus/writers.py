"""Byte-level writers and patchers for corpus files: zip surgery, GGUF, legacy torch streams.

These helpers build or edit container bytes directly so the corpus can hold
what ordinary libraries refuse to write (duplicate zip names, wrong CRCs,
local/central name mismatches). Nothing here loads a pickle: the legacy
torch splitter only walks opcodes with :mod:`pickletools`, which parses and
never executes. Not handled here: choosing payloads or expected verdicts.
"""

from __future__ import annotations

import io
import json
import pickletools
import struct
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

_EOCD = b"PK\x05\x06"
_CENTRAL = b"PK\x01\x02"
_LOCAL = b"PK\x03\x04"


def zip_bytes(members: Sequence[tuple[str, bytes]], *, compress: bool = False) -> bytes:
    """A zip of ``members`` in this order (duplicate names allowed), fixed timestamps."""
    out = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(out, "w", method) as archive:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = method
            archive.writestr(info, data)
    return out.getvalue()


def zip_members(data: bytes) -> list[tuple[str, bytes]]:
    """The members of a zip we generated ourselves (never a scanned file), in order."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return [(info.filename, archive.read(info)) for info in archive.infolist()]


@dataclass(frozen=True, slots=True)
class _Entry:
    central: int  # offset of the central directory record
    local: int  # offset of the local file header
    name: str


def _entries(data: bytes) -> Iterator[_Entry]:
    eocd = data.rindex(_EOCD)
    count = struct.unpack_from("<H", data, eocd + 10)[0]
    pos = struct.unpack_from("<I", data, eocd + 16)[0]
    for _ in range(count):
        assert data[pos : pos + 4] == _CENTRAL
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", data, pos + 28)
        local = struct.unpack_from("<I", data, pos + 42)[0]
        yield _Entry(pos, local, data[pos + 46 : pos + 46 + name_len].decode())
        pos += 46 + name_len + extra_len + comment_len


def _entry(data: bytes, name: str) -> _Entry:
    for entry in _entries(data):
        if entry.name == name:
            return entry
    raise KeyError(name)


def patch_crc(data: bytes, name: str, crc: int) -> bytes:
    """Write ``crc`` into both the local header and the central record of ``name``."""
    entry, out = _entry(data, name), bytearray(data)
    struct.pack_into("<I", out, entry.local + 14, crc)
    struct.pack_into("<I", out, entry.central + 16, crc)
    return bytes(out)


def patch_flags(data: bytes, name: str, flags: int) -> bytes:
    """OR ``flags`` into the general-purpose flag bits of ``name`` (local and central)."""
    entry, out = _entry(data, name), bytearray(data)
    for offset in (entry.local + 6, entry.central + 8):
        struct.pack_into("<H", out, offset, struct.unpack_from("<H", out, offset)[0] | flags)
    return bytes(out)


def rename_local(data: bytes, name: str, new: str) -> bytes:
    """Rename ``name`` in its local header only (same length, so no offset moves)."""
    assert len(new.encode()) == len(name.encode())
    entry, out = _entry(data, name), bytearray(data)
    out[entry.local + 30 : entry.local + 30 + len(new)] = new.encode()
    return bytes(out)


def rename_central(data: bytes, name: str, new: str) -> bytes:
    """Rename ``name`` in the central directory only (same length)."""
    assert len(new.encode()) == len(name.encode())
    entry, out = _entry(data, name), bytearray(data)
    out[entry.central + 46 : entry.central + 46 + len(new)] = new.encode()
    return bytes(out)


def pickle_spans(data: bytes, count: int) -> list[tuple[int, int]]:
    """Byte spans of the first ``count`` stacked pickle streams (parsed, never loaded)."""
    spans: list[tuple[int, int]] = []
    start = 0
    for _ in range(count):
        end = start
        for opcode, _arg, pos in pickletools.genops(data[start:]):
            if opcode.name == "STOP":
                end = start + (pos or 0) + 1
                break
        spans.append((start, end))
        start = end
    return spans


def replace_span(data: bytes, span: tuple[int, int], new: bytes) -> bytes:
    """``data`` with ``span`` replaced by ``new``."""
    return data[: span[0]] + new + data[span[1] :]


# GGUF value types (ggml/docs/gguf.md).
_GGUF_U32, _GGUF_STRING, _GGUF_ARRAY, _GGUF_U64, _GGUF_F32 = 4, 8, 9, 10, 6
GGUF_ALIGNMENT = 32


def _gguf_str(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def _gguf_value(value: object) -> bytes:
    if isinstance(value, str):
        return struct.pack("<I", _GGUF_STRING) + _gguf_str(value)
    if isinstance(value, bool | int):
        return struct.pack("<I", _GGUF_U32) + struct.pack("<I", int(value))
    if isinstance(value, float):
        return struct.pack("<I", _GGUF_F32) + struct.pack("<f", value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        body = b"".join(_gguf_str(v) for v in value)
        return struct.pack("<I", _GGUF_ARRAY) + struct.pack("<IQ", _GGUF_STRING, len(value)) + body
    raise TypeError(type(value).__name__)


def gguf_bytes(metadata: Mapping[str, object], tensors: Mapping[str, Sequence[float]]) -> bytes:
    """A GGUF v3 file with ``metadata`` and 1-D float32 ``tensors``."""
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(metadata))
    head += b"".join(_gguf_str(k) + _gguf_value(v) for k, v in metadata.items())
    infos, blobs = b"", b""
    for name, values in tensors.items():
        blobs += b"\0" * (-len(blobs) % GGUF_ALIGNMENT)  # each tensor starts aligned; no trailing padding
        infos += _gguf_str(name) + struct.pack("<IQIQ", 1, len(values), 0, len(blobs))
        blobs += struct.pack(f"<{len(values)}f", *values)
    out = head + infos
    return out + b"\0" * (-len(out) % GGUF_ALIGNMENT) + blobs


def keras_config(layers: Sequence[Mapping[str, object]]) -> bytes:
    """A Keras 3 ``config.json`` for a Sequential model of ``layers``."""
    config = {
        "module": "keras",
        "class_name": "Sequential",
        "config": {"name": "sequential", "layers": list(layers)},
        "registered_name": None,
    }
    return json.dumps(config, sort_keys=True).encode()


def keras_layer(class_name: str, config: Mapping[str, object]) -> dict[str, object]:
    """One Keras 3 layer record."""
    return {"module": "keras.layers", "class_name": class_name, "config": dict(config), "registered_name": None}


def patch_sizes(data: bytes, name: str, compressed: int, size: int) -> bytes:
    """Declare other compressed/uncompressed sizes for ``name`` (local and central), data unchanged."""
    entry, out = _entry(data, name), bytearray(data)
    struct.pack_into("<II", out, entry.local + 18, compressed, size)
    struct.pack_into("<II", out, entry.central + 20, compressed, size)
    return bytes(out)
