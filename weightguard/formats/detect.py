"""Format detection from content: ranked, polyglot-aware, bounded.

:func:`detect` reads only magic bytes, short prefixes, the zip end record and
central directory, tar headers and protobuf field tags (and checks the header
of magic-less legacy ``.lzma`` streams field by field), and walks a pickle
stream as far as CPython's unpickler would before it reaches a global, returns
or raises (a model of ``_pickle.c``, :mod:`weightguard.analysis.cpython_unpickler`;
text fails within a few bytes, issue 15); it never reads tensor
data and never looks at the file name (a ``.bin`` that is a zip and a
``.safetensors`` that is a pickle are reported as what they are). Every probe
runs independently, so a file valid as two formats (a pickle with a zip
appended, an ``.npy`` that is also a zip) yields two strong candidates and the
scanner analyses both. Candidates found at offset 0 rank before those found
elsewhere (what ``torch.load`` and most loaders see first), then by confidence.
A file over a limit (a safetensors header past ``max_header_bytes``, a zip
past ``max_archive_members``) is still named for its format, so that its
analyzer reports the limit by name instead of the file passing as unknown.

Not handled here: validating a format beyond what ranking needs (the
analyzers do that) and any policy decision.
"""

from __future__ import annotations

import codecs
import dataclasses
import json
import lzma
import re
import struct
import sys
import zlib

from weightguard.analysis.cpython_unpickler import Reach, Walk, model_load
from weightguard.errors import FormatError, LimitExceeded, WeightguardError
from weightguard.findings import Finding
from weightguard.formats import codes
from weightguard.formats.archives import (
    DEFLATED,
    EOCD_SIG,
    LOCAL_SIG,
    STORED,
    ZipDirectory,
    ZipMember,
    read_zip_directory,
)
from weightguard.formats.interface import Candidate, Confidence, Detection, FileFormat
from weightguard.formats.repo_assets import ASSET_PROBES as _ASSET_PROBES
from weightguard.formats.tar_reader import LEGACY_TORCH_MEMBERS, tar_names, tar_opens
from weightguard.formats.zip_names import miniz_key
from weightguard.limits import Limits, MiB
from weightguard.sources.interface import ByteSource, BytesSource

LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C
HDF5_SIG = b"\x89HDF\r\n\x1a\n"
NUMPY_MAGIC = b"\x93NUMPY"
SEVEN_ZIP_SIG = b"7z\xbc\xaf\x27\x1c"
XZ_SIG = b"\xfd7zXZ\x00"
_BZIP2_BLOCKS = (b"\x31\x41\x59\x26\x53\x59", b"\x17\x72\x45\x38\x50\x90")  # block or end-of-stream magic
ZFILE_PREFIX = b"ZF"  # joblib < 0.10 (numpy_pickle_compat.write_zfile); joblib's _detect_compressor tests it first
ZFILE_HEADER = len(ZFILE_PREFIX) + len(hex(2**64))  # the prefix and the 19-byte hex length field
PICKLE_PREFIX = 64 * 1024  # bytes read up front for the magic-number probes (the pickle model reads on)
JSON_MAX = 16 * MiB
_RANK = {Confidence.CERTAIN: 0, Confidence.LIKELY: 1, Confidence.POSSIBLE: 2}
_JOBLIB_MODULES = (b"joblib.numpy_pickle", b"sklearn.externals.joblib.numpy_pickle")
_ONNX_FIELDS = frozenset({1, 2, 3, 4, 5, 6, 7, 8, 14, 20, 25})


class _ProbeFailed(FormatError):  # noqa: N818 - internal: caught by detect()
    """A probe met bytes it cannot read; detect() records it and goes on."""


class _Found(list[tuple[int, Candidate]]):
    """Candidates with their ranking class: 0 = structure at offset 0, 1 = found elsewhere."""

    def add(self, where: int, fmt: FileFormat, confidence: Confidence, evidence: str) -> None:
        self.append((where, Candidate(fmt, confidence, evidence)))


def detect(source: ByteSource, limits: Limits) -> Detection:
    """Return the ranked formats of ``source``, best first; never raises on hostile bytes.

    Args:
        source: The bytes to identify.
        limits: Bounds the central directory and header reads.
    """
    if source.size == 0:
        return Detection((Candidate(FileFormat.EMPTY, Confidence.CERTAIN, "zero bytes"),))
    head = source.read_at(0, PICKLE_PREFIX)
    found = _Found()
    for probe in (_zip, _pickle_family, _magic, _tar, _safetensors, _hdf5, _onnx, _text, *_ASSET_PROBES):
        try:
            probe(source, head, limits, found)
        except (WeightguardError, ValueError, struct.error, UnicodeError, RecursionError) as exc:
            # One probe failing (a limit, odd bytes) must not hide the others' results.
            found.add(1, FileFormat.UNKNOWN, Confidence.POSSIBLE, f"{probe.__name__.lstrip('_')} probe failed: {exc}")
    strong = [(w, c) for w, c in found if c.format is not FileFormat.UNKNOWN]
    if not strong:
        return Detection((Candidate(FileFormat.UNKNOWN, Confidence.CERTAIN, "no known magic or structure"),))
    strong.sort(key=lambda item: (item[0], _RANK[item[1].confidence]))
    seen: set[FileFormat] = set()
    ranked: list[Candidate] = []
    for _, cand in strong:
        if cand.format not in seen:
            seen.add(cand.format)
            ranked.append(cand)
    return Detection(tuple(ranked))


def detection_findings(detection: Detection, path: str, member: str = "") -> list[Finding]:
    """Findings about the detection itself: a polyglot, or an unknown binary format."""
    if detection.polyglot:
        strong = [c for c in detection.candidates if c.confidence is not Confidence.POSSIBLE]
        names = ", ".join(c.format.value for c in strong)
        evidence = " | ".join(f"{c.format.value}: {c.evidence}" for c in strong)
        return [codes.POLYGLOT.at(path, f"content is valid as {names}", member=member, evidence=evidence)]
    if detection.format is FileFormat.UNKNOWN:
        return [codes.UNKNOWN_FORMAT.at(path, "unrecognised binary content", member=member)]
    return []


# --- zip family ---------------------------------------------------------------------------
def _zip(source: ByteSource, head: bytes, limits: Limits, found: _Found) -> None:
    starts_local = head[:4] == LOCAL_SIG
    tail = source.read_at(max(0, source.size - 22 - 0xFFFF), 22 + 0xFFFF)
    if EOCD_SIG not in tail:
        if starts_local:
            found.add(0, FileFormat.ZIP, Confidence.LIKELY, "local file header at 0 but no end record (truncated?)")
        return
    try:
        directory = read_zip_directory(source, limits)
    except LimitExceeded as exc:
        # Still a zip: the analyzer meets the same limit and reports it by name.
        evidence = f"end record found; directory not listed: {exc.resource} {exc.limit:g} exceeded"
        found.add(0 if starts_local else 1, FileFormat.ZIP, Confidence.LIKELY, evidence)
        return
    if not directory.members:
        if starts_local:
            found.add(0, FileFormat.ZIP, Confidence.LIKELY, "local file header at 0, unreadable central directory")
        return
    where = 0 if directory.first_local == 0 else 1
    fmt, evidence = _zip_kind(source, directory)
    if directory.first_local:
        evidence += f"; first member at offset {directory.first_local}"
    found.add(where, fmt, Confidence.CERTAIN, evidence)


def _zip_kind(source: ByteSource, directory: ZipDirectory) -> tuple[FileFormat, str]:
    names = [m.name for m in directory.members]
    # torch's reader (miniz) matches names ignoring ASCII case: archive/DATA.PKL is its data.pkl (issue 15).
    keys = [miniz_key(m.raw or m.name.encode("utf-8", "surrogateescape")).split(b"/") for m in directory.members]
    pickles = [n for n, k in zip(names, keys, strict=True) if len(k) == 2 and k[1] == b"data.pkl"]
    if any(len(k) > 2 and k[1] == b"code" for k in keys) or any(k[-1] == b"constants.pkl" for k in keys):
        return FileFormat.TORCHSCRIPT, "zip with <root>/code/ or constants.pkl (TorchScript)"
    if pickles:
        return FileFormat.PYTORCH_ZIP, f"zip with {pickles[0]}"
    if "config.json" in names and ("model.weights.h5" in names or "metadata.json" in names):
        return FileFormat.KERAS, "zip with config.json and model.weights.h5/metadata.json (Keras v3)"
    files = [m for m in directory.members if not m.is_dir]
    # Member names, not the file name: numpy.load itself decides npz by its members.
    if files and all(m.name.rpartition(".")[2] == "npy" for m in files) and _npy_member(source, files[0]):
        return FileFormat.NUMPY_NPZ, f"zip of {len(files)} .npy members"
    return FileFormat.ZIP, f"zip with {len(names)} members"


def _npy_member(source: ByteSource, member: ZipMember) -> bool:
    raw = source.read_at(member.offset_data, min(member.compressed_size, 256))
    if member.method == STORED:
        return raw[:6] == NUMPY_MAGIC
    if member.method == DEFLATED:
        try:
            return zlib.decompressobj(-15).decompress(raw, 6) == NUMPY_MAGIC
        except zlib.error:
            return False
    return False


# --- pickle family ---------------------------------------------------------------------------
_CONTROL = re.compile(rb"[\x00-\x08\x0e-\x1a\x1c-\x1f]")  # text has tabs, newlines, ESC; not these
# Detection stops the model here and calls the stream a pickle (LIMIT): no text stays a valid
# pickle that long, and the pickle analyzer walks it again under the real limits.
_DETECT_OPCODES = 200_000  # about 0.5-1 s of walking
_REACHED = {
    Reach.GLOBAL: "calls find_class",
    Reach.EXTENSION: "looks up an extension code",
    Reach.SPLIT: "reads an opcode across a FRAME's end (file readers read other bytes)",
    Reach.STOP: "returns a value",
    Reach.LIMIT: "is still valid at a limit",
}


def cpython_walk(source: ByteSource, offset: int, limits: Limits, head: bytes = b"") -> Walk:
    """What CPython's ``pickle.load`` does with the bytes at ``offset`` (bounded for detection)."""
    bounded = dataclasses.replace(limits, max_pickle_opcodes=min(limits.max_pickle_opcodes, _DETECT_OPCODES))
    return model_load(source, offset, bounded, head)


def _pickle_family(source: ByteSource, head: bytes, limits: Limits, found: _Found) -> None:
    # "Is this a pickle" is decided by a model of CPython's unpickler, whatever else the file is
    # (issue 15): one that reaches find_class or the extension registry, that returns a value,
    # or that is still valid at a limit is a PICKLE candidate. Text CPython
    # rejects before any of that is no pickle (and stays TEXT, which the scanner treats as inert).
    walk = cpython_walk(source, 0, limits, head)
    if not walk.is_pickle:
        return
    evidence = (
        f"CPython's unpickler {_REACHED[walk.reach]} ({walk.detail} at offset {walk.offset}, {walk.opcodes} opcodes)"
    )
    if walk.reach is Reach.STOP and walk.first_int == LEGACY_TORCH_MAGIC:
        found.add(0, FileFormat.PYTORCH_LEGACY, Confidence.LIKELY, "pickle whose first value is torch's legacy magic")
        found.add(0, FileFormat.PICKLE, Confidence.POSSIBLE, "legacy torch files are stacked pickles")
        return
    if any(module in head for module in _JOBLIB_MODULES):
        found.add(0, FileFormat.JOBLIB, Confidence.LIKELY, "pickle naming joblib.numpy_pickle")
        found.add(0, FileFormat.PICKLE, Confidence.POSSIBLE, "joblib files are pickles")
        return
    found.add(0, FileFormat.PICKLE, Confidence.LIKELY, evidence)


# --- magic numbers ---------------------------------------------------------------------------
def _magic(source: ByteSource, head: bytes, limits: Limits, found: _Found) -> None:
    del limits
    if head[:6] == NUMPY_MAGIC and len(head) >= 10 and head[6] in (1, 2, 3):
        found.add(0, FileFormat.NUMPY, Confidence.LIKELY, f".npy magic, version {head[6]}.{head[7]}")
    elif head[:4] == b"GGUF" and len(head) >= 8 and 1 <= struct.unpack_from("<I", head, 4)[0] <= 3:
        found.add(0, FileFormat.GGUF, Confidence.LIKELY, f"GGUF magic, version {struct.unpack_from('<I', head, 4)[0]}")
    elif head[:3] == b"\x1f\x8b\x08":
        found.add(0, FileFormat.GZIP, Confidence.LIKELY, "gzip magic with deflate method")
    elif head[:3] == b"BZh" and head[3:4].isdigit() and head[4:10] in _BZIP2_BLOCKS:
        found.add(0, FileFormat.BZIP2, Confidence.LIKELY, "bzip2 magic and block header")
    elif head[:6] == XZ_SIG:
        found.add(0, FileFormat.XZ, Confidence.LIKELY, "xz magic")
    elif lzma_alone_header(head):
        # joblib's "lzma" compressor and `xz --format=lzma` write this legacy container;
        # it is analysed as the lzma family (FileFormat has no separate member for it).
        found.add(0, FileFormat.XZ, Confidence.LIKELY, "legacy .lzma (LZMA_alone) header")
    elif head[:6] == SEVEN_ZIP_SIG:
        found.add(0, FileFormat.SEVEN_ZIP, Confidence.LIKELY, "7z signature")
    elif head[:2] == ZFILE_PREFIX and (header := zfile_header(head)) is not None:
        # joblib.load reads every file starting with b"ZF" as a zfile (issue 15): whatever the
        # rest looks like (printable text included), it is analysed as joblib inflates it.
        evidence = f"old joblib 'ZF' zfile (length field {header[0]}, zlib data at {header[1]})"
        found.add(0, FileFormat.JOBLIB, Confidence.LIKELY, evidence)
    elif len(head) >= 2 and head[0] & 0x0F == 8 and head[0] >> 4 <= 7 and (head[0] << 8 | head[1]) % 31 == 0:
        confidence = Confidence.LIKELY if _zlib_ok(head) else Confidence.POSSIBLE
        found.add(0, FileFormat.ZLIB, confidence, "zlib header checksum")
    del source


def lzma_alone_header(head: bytes) -> bool:
    """True when ``head`` starts like a legacy ``.lzma`` (LZMA_alone) stream.

    Such streams have no magic number: a 13-byte header (properties byte, dictionary
    size, uncompressed size) then range-coder data whose first byte is always 0. Every
    field is checked as liblzma writes it, then the first bytes must decode.
    """
    if len(head) < 14 or head[0] >= 9 * 5 * 5 or head[13] != 0:
        return False
    dict_size = int.from_bytes(head[1:5], "little")
    size = int.from_bytes(head[5:13], "little")
    top = 1 << max(dict_size.bit_length() - 1, 0)
    # Encoders round the dictionary to 2^n or 2^n + 2^(n-1); liblzma rejects known sizes >= 2^38.
    if dict_size < 4096 or dict_size not in (top, top | top >> 1):
        return False
    if size != 2**64 - 1 and size >= 2**38:
        return False
    try:
        lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(head[:4096], 64)
    except (lzma.LZMAError, MemoryError):  # the header's dictionary size is allocated up front
        return False
    return True


def zfile_header(head: bytes) -> tuple[int, int] | None:
    """(length, offset of the zlib data) as joblib's ``read_zfile`` reads a ``ZF`` file, or None.

    ``numpy_pickle_compat.read_zfile`` parses the 19 bytes after ``ZF`` with ``int(field, 16)``
    (so upper-case ``0X``, ASCII whitespace, underscores and a sign are all accepted: ``int`` on
    these at most 19 bytes runs no code and is the reference itself), skips one space byte
    when there is one (joblib <= 0.8.4 wrote it) and passes the length to
    ``zlib.decompress`` as ``bufsize``. None when joblib.load raises before inflating: ``int``
    rejects the field, or ``zlib.decompress`` refuses the bufsize (negative, or past
    ``Py_ssize_t``). The ``len(data) == length`` check after inflating is an ``assert``
    (gone under ``python -O``), so a length that lies is still read.
    """
    try:
        length = int(head[len(ZFILE_PREFIX) : ZFILE_HEADER], 16)
    except ValueError:
        return None
    if not 0 <= length <= sys.maxsize:
        return None
    return length, ZFILE_HEADER + 1 if head[ZFILE_HEADER : ZFILE_HEADER + 1] == b" " else ZFILE_HEADER


def _zlib_ok(data: bytes) -> bool:
    try:
        out = zlib.decompressobj().decompress(data[:4096], 64)
    except zlib.error:
        return False
    return bool(out)


def _tar(source: ByteSource, head: bytes, limits: Limits, found: _Found) -> None:
    # issue 15: tarfile itself decides (v7 headers without magic, signed checksums, long
    # names), because torch's legacy loader takes its tar path whenever tarfile opens the file.
    del head
    try:
        if not tar_opens(source, limits):
            return
        names = set(_tar_names(source, limits, min(limits.max_archive_members, 64)))
    except LimitExceeded as exc:
        # Still a tar to torch (tarfile reads any header size): the analyzer meets the same
        # limit and reports it by name, instead of another probe's format hiding the tar.
        found.add(0, FileFormat.TAR, Confidence.LIKELY, f"tar headers not read: {exc.resource} {exc.limit:g} exceeded")
        return
    legacy = sorted(names & LEGACY_TORCH_MEMBERS)
    if legacy:
        # torch.load unpickles these members; the legacy analyzer walks every other member too.
        evidence = f"tar with torch legacy member(s) {', '.join(legacy)}"
        found.add(0, FileFormat.PYTORCH_LEGACY, Confidence.LIKELY, evidence)
        return
    ustar = source.read_at(257, 6) in (b"ustar\x00", b"ustar ")
    kind = "ustar" if ustar else "v7 (no ustar magic)"
    confidence = Confidence.CERTAIN if ustar else Confidence.LIKELY
    found.add(0, FileFormat.TAR, confidence, f"tarfile opens it; first header {kind}")


def _tar_names(source: ByteSource, limits: Limits, most: int) -> list[str]:
    """The first members' names as ``TarFile.getmember`` compares them (normalised)."""
    return tar_names(source, limits, most)


# --- header formats -------------------------------------------------------------------------
def _safetensors(source: ByteSource, head: bytes, limits: Limits, found: _Found) -> None:
    # Only the bytes already read are looked at: a header that fits in them is parsed (cheap),
    # a longer one is recognised by its opening and parsed once, by the analyzer, which bounds
    # the memory that costs (issue 15: detection used to parse up to 16 MiB of JSON a second time).
    if len(head) < 10:
        return
    (length,) = struct.unpack_from("<Q", head, 0)
    if not 2 <= length <= source.size - 8 or head[8:9] != b"{":
        return
    if length > limits.max_header_bytes:
        # Recognised without reading the header, so the analyzer names the limit
        # (safetensors' own HeaderTooLarge) instead of the file passing as unknown.
        if _plausible_json_start(head[8 : 8 + min(length, 4096)]):
            evidence = f"{length}-byte header starting with '{{', over max_header_bytes {limits.max_header_bytes}"
            found.add(0, FileFormat.SAFETENSORS, Confidence.LIKELY, evidence)
        return
    # Not a PICKLE candidate: the file is no pickle at offset 0, where a pickle analyzer
    # would start. The safetensors analyzer reports this stream and analyses it in place.
    after = ""
    if pickle_stream_at(source, 8 + length):
        after = f"; a complete pickle stream starts the data region at offset {8 + length}"
    if 8 + length > len(head):
        if _plausible_json_start(head[8 : 8 + 4096]):
            evidence = f"{length}-byte header opening a JSON object (validated by the analyzer)"
            found.add(0, FileFormat.SAFETENSORS, Confidence.LIKELY, evidence + after)
        else:
            found.add(0, FileFormat.SAFETENSORS, Confidence.POSSIBLE, f"{length}-byte header starting with '{{'")
        return
    try:
        header = json.loads(head[8 : 8 + length].decode("utf-8"))
    except (ValueError, UnicodeError, RecursionError):
        found.add(0, FileFormat.SAFETENSORS, Confidence.POSSIBLE, "header starts with '{' but is not JSON")
        return
    if not isinstance(header, dict):
        return
    tensors = [v for k, v in header.items() if k != "__metadata__"]
    if not all(isinstance(v, dict) and "dtype" in v and "data_offsets" in v for v in tensors):
        found.add(0, FileFormat.SAFETENSORS, Confidence.POSSIBLE, "JSON header without tensor entries")
        return
    evidence = f"JSON header of {length} bytes, {len(tensors)} tensors"
    found.add(0, FileFormat.SAFETENSORS, Confidence.CERTAIN, evidence + after)


def pickle_stream_at(source: ByteSource, offset: int) -> bool:
    """True when a protocol 2-5 pickle stream that CPython would load starts at ``offset``.

    Used for bytes inside another format (a safetensors data region), where random
    data must not pass: PROTO 2-5 first, then the unpickler model must reach code,
    or a STOP after at least three opcodes, or a limit while still valid.
    """
    if source.read_at(offset, 2) not in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"):
        return False  # two bytes decide for almost every tensor region
    walk = cpython_walk(source, offset, Limits())
    return walk.runs_code or walk.reach is Reach.LIMIT or (walk.reach is Reach.STOP and walk.opcodes >= 3)


def _plausible_json_start(prefix: bytes) -> bool:
    """True when ``prefix`` opens a JSON object with a string key (``{"name"...``) and holds no control bytes."""
    return re.match(rb'\{\s*"', prefix) is not None and _CONTROL.search(prefix) is None


def _hdf5(source: ByteSource, head: bytes, limits: Limits, found: _Found) -> None:
    del limits
    offset = 0
    while offset + 8 <= source.size:
        sig = head[offset : offset + 8] if offset + 8 <= len(head) else source.read_at(offset, 8)
        if sig == HDF5_SIG:
            found.add(0 if offset == 0 else 1, FileFormat.HDF5, Confidence.LIKELY, f"HDF5 signature at {offset}")
            return
        offset = 512 if offset == 0 else offset * 2


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for shift in range(0, 70, 7):
        if pos >= len(data):
            raise _ProbeFailed("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
    raise _ProbeFailed("varint too long")


def _onnx(source: ByteSource, head: bytes, limits: Limits, found: _Found) -> None:
    del limits
    if head[:1] != b"\x08":  # field 1 (ir_version), varint: every exporter writes it first
        return
    ir_version, _ = _varint(head, 1)
    if not 1 <= ir_version <= 64:
        return
    offset = 0
    fields: list[int] = []
    while offset < source.size and len(fields) < 10_000:
        window = source.read_at(offset, 16)
        tag, pos = _varint(window, 0)
        number, wire = tag >> 3, tag & 7
        if number not in _ONNX_FIELDS or wire not in (0, 2):
            return
        value, pos = _varint(window, pos)
        offset += pos + (value if wire == 2 else 0)
        fields.append(number)
    if offset != source.size:
        return
    confidence = Confidence.LIKELY if 7 in fields else Confidence.POSSIBLE
    found.add(0, FileFormat.ONNX, confidence, f"ModelProto ir_version {ir_version}, {len(fields)} top-level fields")


def _text(source: ByteSource, head: bytes, limits: Limits, found: _Found) -> None:
    if _CONTROL.search(head):
        return
    if source.size <= min(JSON_MAX, limits.max_header_bytes) and head.lstrip()[:1] in (b"{", b"["):
        data = head if len(head) == source.size else source.read_at(0, source.size)
        try:
            json.loads(data.decode("utf-8"))
        except (ValueError, UnicodeError):
            pass
        else:
            found.add(0, FileFormat.JSON, Confidence.CERTAIN, "strict UTF-8 JSON")
            found.add(0, FileFormat.TEXT, Confidence.POSSIBLE, "JSON is text")
            return
    try:
        decoder = codecs.getincrementaldecoder("utf-8")()
        decoder.decode(head, final=len(head) >= source.size)
    except UnicodeError:
        return
    found.add(0, FileFormat.TEXT, Confidence.POSSIBLE, "UTF-8 without NUL or control bytes in the first bytes")


def detect_bytes(data: bytes, limits: Limits | None = None) -> Detection:
    """Detect the format of bytes in memory (convenience for tests and the API)."""
    return detect(BytesSource(data), limits or Limits())
