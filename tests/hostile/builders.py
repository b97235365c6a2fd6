"""Builders for hostile inputs: random bytes, huge declared lengths, deep nesting, bombs, limits.

Each :class:`Hostile` case builds bytes (or several files) with fixed seeds and,
where it tests one ``Limits`` field, names the small limits of the policy it
is scanned under. ``must_block`` is False only where the input is harmless
data whose hostility is to the scanner's cost alone (documented per case):
then the test only requires a bounded, crash-free scan. Nothing here loads
anything. Not handled here: scanning or asserting.
"""

from __future__ import annotations

import gzip
import io
import json
import pickle
import random
import struct
import tarfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.corpus.asm import call, global_
from tests.corpus.writers import patch_sizes, zip_bytes

Files = bytes | Mapping[str, bytes]


@dataclass(frozen=True, slots=True)
class Hostile:
    """One hostile input and how it must be judged."""

    name: str
    reference: str
    build: Callable[[], Files]
    limits: Mapping[str, object] = field(default_factory=dict)
    must_block: bool = True


HOSTILE: list[Hostile] = []


def hostile(
    name: str, reference: str, *, limits: Mapping[str, object] | None = None, must_block: bool = True
) -> Callable[[Callable[[], Files]], Callable[[], Files]]:
    """Register the decorated builder as a hostile case."""

    def register(build: Callable[[], Files]) -> Callable[[], Files]:
        HOSTILE.append(Hostile(name, reference, build, dict(limits or {}), must_block))
        return build

    return register


def policy_yaml(limits: Mapping[str, object]) -> str:
    """A policy (the default one plus ``spec.limits``) as YAML text."""
    lines = [
        "apiVersion: weightguard/v1alpha1",
        "kind: VerificationPolicy",
        "metadata:",
        "  name: hostile-limits",
        "spec:",
        "  pickle:",
        "    mode: analyze",
    ]
    if limits:
        lines.append("  limits:")
        lines += [f"    {key}: {value}" for key, value in limits.items()]
    return "\n".join(lines) + "\n"


def cut_points(size: int) -> list[int]:
    """Where to truncate a file of ``size`` bytes: the first bytes, thirds, middle, last byte."""
    return sorted({n for n in (1, 8, 16, size // 3, size // 2, (2 * size) // 3, size - 1) if 0 < n < size})


def non_text_random(size: int, seed: int) -> bytes:
    """``size`` random bytes (seeded) that are not valid UTF-8 text, so no detector may call them text."""
    rng = random.Random(seed)  # noqa: S311 - test data, not cryptography
    while True:
        data = bytes([rng.randrange(0x80, 0x100)]) + rng.randbytes(size - 1)
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return data


# -- Random bytes, alone and behind every format's magic ----------------------------------------


def _const(data: bytes) -> Callable[[], bytes]:
    return lambda: data


for _size in (1, 2, 7, 64, 512, 4096, 65536):
    hostile(f"random/{_size}", "THREATS 4.4 (crashes on odd files)")(_const(non_text_random(_size, _size)))

_MAGICS = {
    "zip_local": b"PK\x03\x04",
    "zip_eocd": b"PK\x05\x06",
    "pickle_proto4": b"\x80\x04",
    "pickle_proto2": b"\x80\x02",
    "npy": b"\x93NUMPY\x01\x00",
    "gguf": b"GGUF\x03\x00\x00\x00",
    "hdf5": b"\x89HDF\r\n\x1a\n",
    "gzip": b"\x1f\x8b\x08\x00",
    "bzip2": b"BZh9",
    "xz": b"\xfd7zXZ\x00",
    "7z": b"7z\xbc\xaf\x27\x1c",
    "zlib": b"x\x9c",
    "safetensors": struct.pack("<Q", 64) + b'{"',
    "torch_legacy": b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.",
}
for _seed, (_label, _magic) in enumerate(_MAGICS.items()):
    hostile(f"magic_then_random/{_label}", "picklescan #18; THREATS 4.4 (crash on odd files)")(
        _const(_magic + non_text_random(4096, 1000 + _seed))
    )


@hostile("magic_then_random/tar_header", "THREATS 4.4")
def tar_header_random() -> bytes:
    """A 512-byte block with the ustar magic at 257 and random fields elsewhere."""
    block = bytearray(non_text_random(2048, 99))
    block[257:263] = b"ustar\x00"
    return bytes(block)


# -- Huge declared lengths --------------------------------------------------------------------


def _st(length: int, rest: bytes) -> bytes:
    return struct.pack("<Q", length) + rest


hostile("lengths/safetensors_header_2_63", "safetensors HeaderTooLarge")(lambda: _st(2**63, b"{}"))
hostile("lengths/safetensors_header_2_64_minus_1", "safetensors HeaderTooLarge")(lambda: _st(2**64 - 1, b"{}"))
hostile("lengths/safetensors_header_past_eof", "safetensors InvalidHeaderLength")(lambda: _st(10**6, b'{"a":'))


@hostile("lengths/safetensors_huge_offsets", "safetensors InvalidOffset")
def safetensors_huge_offsets() -> bytes:
    """A well-formed header whose tensor claims 2^62 bytes at shape [2^31, 2^31]."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [2**31, 2**31], "data_offsets": [0, 2**62]}}).encode()
    return _st(len(header), header) + b"\0" * 16


def _npy(version: bytes, length_field: bytes, header: bytes) -> bytes:
    return b"\x93NUMPY" + version + length_field + header


hostile("lengths/npy_v1_header_65535", "THREATS 5.6 (header caps)")(
    lambda: _npy(b"\x01\x00", struct.pack("<H", 65535), b"{'descr': '<f4', ")
)
hostile("lengths/npy_v2_header_4gib", "THREATS 5.6 (header caps)")(
    lambda: _npy(b"\x02\x00", struct.pack("<I", 2**32 - 1), b"{'descr': '<f4', ")
)


@hostile("lengths/npy_shape_2_40", "THREATS 5.6 (never trust declared sizes)")
def npy_huge_shape() -> bytes:
    """A valid .npy header declaring 2^40 float32 elements, followed by 16 bytes."""
    header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776,), }"
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    return _npy(b"\x01\x00", struct.pack("<H", len(header)), header) + b"\0" * 16


@hostile("lengths/zip_member_declares_2gib", "modelscan #263; THREATS 2.8")
def zip_member_declares_2gib() -> bytes:
    """A stored zip member whose headers declare 2 GiB while 8 bytes follow."""
    return patch_sizes(zip_bytes([("a/data.pkl", b"\x80\x02N.\x00\x00\x00\x00")]), "a/data.pkl", 2**31, 2**31)


@hostile("lengths/zip_eocd_claims_65535_entries", "THREATS 2.8 (zip parser differentials)")
def zip_eocd_claims() -> bytes:
    """An end-of-central-directory record claiming 65535 entries and a 4 GiB directory at offset 0."""
    return b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, 65535, 65535, 2**32 - 1, 0, 0)


@hostile("lengths/zip64_claims_2_63_entries", "THREATS 2.8 (zip parser differentials)")
def zip64_claims() -> bytes:
    """A zip64 end record claiming 2^63 entries, with its locator and a classic EOCD."""
    record = b"PK\x06\x06" + struct.pack("<QHHIIQQQQ", 44, 45, 45, 0, 0, 2**63, 2**63, 2**62, 0)
    locator = b"PK\x06\x07" + struct.pack("<IQI", 0, 0, 1)
    return record + locator + b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, 0xFFFF, 0xFFFF, 2**32 - 1, 2**32 - 1, 0)


_PICKLE_LENGTHS = {
    "binunicode8_2_63": b"\x80\x04\x8d" + struct.pack("<Q", 2**63) + b"abc",
    "binbytes8_2_64_minus_1": b"\x80\x04\x8e" + struct.pack("<Q", 2**64 - 1) + b"abc",
    "bytearray8_2_63": b"\x80\x05\x96" + struct.pack("<Q", 2**63) + b"abc",
    "frame_2_63": b"\x80\x04\x95" + struct.pack("<Q", 2**63) + b"N.",
    "long4_2_31": b"\x80\x02\x8b" + struct.pack("<i", 2**31 - 1) + b"\x01",
    "binunicode_4gib": b"\x80\x02X" + struct.pack("<I", 2**32 - 1) + b"abc",
}
for _label, _data in _PICKLE_LENGTHS.items():
    hostile(f"lengths/pickle_{_label}", "picklescan #18; THREATS 5.3 (fail closed)")(_const(_data))

hostile("lengths/gguf_counts_2_63", "THREATS 5.6 (header caps)")(lambda: b"GGUF" + struct.pack("<IQQ", 3, 2**63, 2**63))
hostile("lengths/gguf_key_length_2_63", "THREATS 5.6 (header caps)")(
    lambda: b"GGUF" + struct.pack("<IQQQ", 3, 0, 1, 2**63) + b"key"
)
hostile("lengths/gguf_array_2_62", "THREATS 5.6 (header caps)")(
    lambda: b"GGUF" + struct.pack("<IQQQ", 3, 0, 1, 1) + b"k" + struct.pack("<IIQ", 9, 10, 2**62)
)


# -- Deep nesting -------------------------------------------------------------------------


def _nest(depth: int, wrap: Callable[[bytes, int], bytes]) -> bytes:
    data = b'{"hidden_size": 8}'
    for level in range(depth):
        data = wrap(data, level)
    return data


def _zip_wrap(data: bytes, level: int) -> bytes:
    return zip_bytes([(f"level{level}.bin", data)])


def _tar_wrap(data: bytes, level: int) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        info = tarfile.TarInfo(f"level{level}.bin")
        info.size, info.mtime = len(data), 1_700_000_000
        archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _mixed_wrap(data: bytes, level: int) -> bytes:
    wraps = (_zip_wrap, _tar_wrap, lambda d, _: gzip.compress(d, mtime=0))
    return wraps[level % 3](data, level)


hostile("nesting/zip_12_deep", "modelscan 'nested zip'; THREATS 5.5 (depth limit)")(lambda: _nest(12, _zip_wrap))
hostile("nesting/gzip_12_deep", "THREATS 5.5 (depth limit)")(lambda: _nest(12, lambda d, _: gzip.compress(d, mtime=0)))
hostile("nesting/zip_tar_gzip_12_deep", "THREATS 5.5 (depth limit)")(lambda: _nest(12, _mixed_wrap))
hostile("nesting/zip_40_deep", "THREATS 5.5 (depth limit)")(lambda: _nest(40, _zip_wrap))


# -- Pickle cost attacks --------------------------------------------------------------------

MILLION = 1_000_000


@hostile("pickle/million_opcodes_benign", "issue 2 (10^6-opcode pickles)", must_block=False)
def million_opcodes_benign() -> bytes:
    """A list of 10^6 Nones: harmless data, hostile only to the scanner's time (bounded scan required)."""
    return b"\x80\x02]q\x00(" + b"N" * MILLION + b"e."


@hostile("pickle/million_opcodes_then_payload", "issue 2; nullifAI (payload after padding)")
def million_opcodes_then_payload() -> bytes:
    """10^6 opcodes of padding, then ``posix.system``: a walker that gives up early misses it."""
    return b"\x80\x02(" + b"N" * MILLION + b"1" + call(global_("posix", "system"), "true") + b"."


@hostile("pickle/billion_laughs_memo", "fickling PR #249 (ExpansionAttackAnalysis)", must_block=False)
def billion_laughs_memo() -> bytes:
    """Ten memoized lists each holding ten references to the previous one (10^10 leaves if expanded).

    Loading shares references, so the data is harmless; the attack is on scanners that expand it.
    """
    out = b"\x80\x02X\x03\x00\x00\x00lolq\x00"
    for level in range(1, 11):
        out += b"](" + (b"h" + bytes([level - 1])) * 10 + b"eq" + bytes([level])
    return out + b"."


@hostile("pickle/memo_flood", "THREATS 5.6 (memo size cap)", must_block=False)
def memo_flood() -> bytes:
    """200,000 MEMOIZE entries of small ints (harmless; bounded scan required)."""
    return b"\x80\x04(" + b"K\x01\x94" * 200_000 + b"l."


@hostile("pickle/nested_lists_100k_deep", "THREATS 4.4 (recursion in value walkers)", must_block=False)
def nested_lists_deep() -> bytes:
    """A list nested 100,000 deep (APPEND chains): a recursive value walker would overflow."""
    depth = 100_000
    return b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."


@hostile("pickle/marks_100k", "THREATS 4.4 (mark stack)", must_block=False)
def marks_deep() -> bytes:
    """100,000 MARKs never closed, then None: loads as None; the scanner must stay bounded."""
    return b"\x80\x02" + b"(" * 100_000 + b"N."


# -- Bombs ------------------------------------------------------------------------------------

_ZEROS = 24 * 2**20


@hostile("bombs/zip_ratio_1000", "THREATS 5.5 (zip bombs; max_compression_ratio)")
def zip_bomb() -> bytes:
    """One deflated member of 24 MiB of zeros (ratio about 1000:1)."""
    return zip_bytes([("weights.json", b"\0" * _ZEROS)], compress=True)


@hostile("bombs/gzip_ratio_1000", "THREATS 5.5 (compression bombs)")
def gzip_bomb() -> bytes:
    """24 MiB of zeros, gzip-compressed."""
    return gzip.compress(b"\0" * _ZEROS, compresslevel=9, mtime=0)


@hostile("bombs/zlib_ratio_1000", "THREATS 5.5 (compression bombs)")
def zlib_bomb() -> bytes:
    """24 MiB of zeros as a bare zlib stream."""
    return zlib.compress(b"\0" * _ZEROS, 9)


@hostile("bombs/zip_of_zip_bombs", "THREATS 5.5 (42.zip-style nesting)")
def zip_of_bombs() -> bytes:
    """A stored zip of ten deflated bomb zips (240 MiB if all expanded)."""
    inner = zip_bytes([("w.bin", b"\0" * _ZEROS)], compress=True)
    return zip_bytes([(f"part{i}.zip", inner) for i in range(10)])


# -- Just over each Limits field (scanned under a policy with small limits) -----------------


def _pickled_ints(count: int) -> bytes:
    return pickle.dumps(list(range(1000, 1000 + count)), protocol=2)


@hostile("limits/max_file_bytes", "STYLE 8 (a fixture just over each limit)", limits={"max_file_bytes": 1024})
def over_file_bytes() -> bytes:
    """A JSON config of 1025 bytes under max_file_bytes 1024."""
    body = json.dumps({"pad": "x" * 1000}).encode()
    return body + b" " * (1025 - len(body))


@hostile("limits/max_header_bytes", "STYLE 8; safetensors HeaderTooLarge", limits={"max_header_bytes": 1024})
def over_header_bytes() -> bytes:
    """A valid safetensors file whose header is just over 1024 bytes."""
    import numpy as np
    from safetensors.numpy import save

    tensors = {f"layer.{i}.weight": np.zeros(1, np.float32) for i in range(40)}
    data = save(tensors)
    assert 1024 < struct.unpack("<Q", data[:8])[0] < 4096
    return data


@hostile("limits/max_header_values", "STYLE 8; issue 15 (a 99 MB header took 1.2 GB)", limits={"max_header_values": 100})
def over_header_values() -> bytes:
    """A valid safetensors file whose header holds just over 100 JSON values (12 tensors of 9 values each)."""
    import numpy as np
    from safetensors.numpy import save

    return save({f"t{i}": np.zeros(1, np.float32) for i in range(12)})


@hostile("limits/max_pickle_bytes", "STYLE 8", limits={"max_pickle_bytes": 1024})
def over_pickle_bytes() -> bytes:
    """A plain list-of-ints pickle of about 1.1 KiB."""
    data = _pickled_ints(360)
    assert 1024 < len(data) < 2048
    return data


@hostile("limits/max_pickle_opcodes", "STYLE 8", limits={"max_pickle_opcodes": 1000})
def over_pickle_opcodes() -> bytes:
    """A list of 1000 Nones: 1004 opcodes with PROTO, EMPTY_LIST, MARK, APPENDS and STOP."""
    return b"\x80\x02](" + b"N" * 1000 + b"e."


@hostile("limits/max_memo_entries", "STYLE 8; fickling PR #249", limits={"max_memo_entries": 100})
def over_memo_entries() -> bytes:
    """101 distinct memoized strings (``pickle.dumps`` BINPUTs each)."""
    return pickle.dumps([f"s{i}" for i in range(101)], protocol=2)


@hostile("limits/max_nesting_depth", "STYLE 8", limits={"max_nesting_depth": 2})
def over_nesting_depth() -> bytes:
    """zip(zip(zip(config))) under max_nesting_depth 2."""
    return _nest(3, _zip_wrap)


@hostile("limits/max_archive_members", "STYLE 8", limits={"max_archive_members": 10})
def over_archive_members() -> bytes:
    """A zip with 11 small JSON members."""
    return zip_bytes([(f"cfg{i}.json", b'{"a": 1}') for i in range(11)])


@hostile("limits/max_decompressed_bytes", "STYLE 8", limits={"max_decompressed_bytes": 65536})
def over_decompressed_bytes() -> bytes:
    """A deflated member of 100 KiB of random hex JSON (ratio about 2, so only the size limit fires)."""
    text = json.dumps({"hex": random.Random(7).randbytes(50_000).hex()}).encode()  # noqa: S311
    return zip_bytes([("big.json", text)], compress=True)


@hostile("limits/max_compression_ratio", "STYLE 8", limits={"max_compression_ratio": 10})
def over_compression_ratio() -> bytes:
    """A deflated member of 3 KiB of hex then 61 KiB of zeros: ratio about 35, over 10, under the default 200."""
    data = random.Random(3).randbytes(1536).hex().encode() + b"\0" * (61 * 1024)  # noqa: S311
    return zip_bytes([("mostly_zeros.bin", data)], compress=True)


@hostile("limits/max_seconds_per_file", "STYLE 8; promptfoo #6266 (hang)", limits={"max_seconds_per_file": 0.001})
def over_seconds() -> bytes:
    """A 300,000-opcode harmless pickle under a 1 ms budget."""
    return b"\x80\x02](" + b"N" * 300_000 + b"e."


LIMIT_FIELDS = (
    "max_file_bytes",
    "max_header_bytes",
    "max_header_values",
    "max_pickle_bytes",
    "max_pickle_opcodes",
    "max_memo_entries",
    "max_nesting_depth",
    "max_archive_members",
    "max_decompressed_bytes",
    "max_compression_ratio",
    "max_seconds_per_file",
)


@hostile("truncated/tar_second_header_cut", "THREATS 5.3 (fail closed on parse anomalies)")
def tar_second_header_cut() -> bytes:
    """A two-member tar cut 476 bytes into the second member's 512-byte header."""
    from tests.corpus.benign import bundle_tar
    from tests.corpus.spec import Payload

    whole = bundle_tar(Payload(Path("unused")))
    assert isinstance(whole, bytes)
    return whole[:1500]
