"""The strict zip reader: every disagreement between miniz and zipfile becomes a finding."""

from __future__ import annotations

import io
import struct
import zipfile

import pytest

from weightguard.analysis.interface import PickleSettings, ScanContext
from weightguard.errors import LimitExceeded
from weightguard.formats import codes
from weightguard.formats.archives import (
    RATIO_FLOOR_BYTES,
    MemberUnreadable,
    member_source,
    open_member,
    read_zip_directory,
    unsafe_name_reason,
)
from weightguard.limits import Limits, MiB
from weightguard.sources.interface import BytesSource


def _ctx(limits: Limits | None = None) -> ScanContext:
    return ScanContext(limits or Limits(), PickleSettings(), lambda source, where: iter(()))


def _zip(members: list[tuple[str, bytes]], method: int = zipfile.ZIP_STORED, **kw: object) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method, **kw) as zf:  # type: ignore[arg-type]
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


def _codes(findings: object) -> set[str]:
    return {f.code for f in findings}  # type: ignore[attr-defined]


def _cd_offset(data: bytes) -> int:
    eocd = data.rfind(b"PK\x05\x06")
    return int(struct.unpack_from("<I", data, eocd + 16)[0])


def test_a_plain_archive_lists_its_members_without_findings() -> None:
    data = _zip([("a.txt", b"hello"), ("b/c.bin", b"\x00" * 100)])
    directory = read_zip_directory(BytesSource(data), Limits())
    assert [m.name for m in directory.members] == ["a.txt", "b/c.bin"]
    assert directory.findings == ()
    opened = open_member(BytesSource(data), directory.members[0], _ctx())
    assert opened.findings == ()
    assert opened.source is not None
    assert opened.source.read_at(0, 10) == b"hello"


def test_deflated_and_zip64_members_are_read_and_crc_checked() -> None:
    data = _zip([("x", b"abc" * 1000)], zipfile.ZIP_DEFLATED)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf, zf.open("big", "w", force_zip64=True) as handle:
        handle.write(b"z" * 10)
    for blob, name, content in ((data, "x", b"abc" * 1000), (buf.getvalue(), "big", b"z" * 10)):
        directory = read_zip_directory(BytesSource(blob), Limits())
        assert directory.findings == ()
        source = member_source(BytesSource(blob), directory.members[0], _ctx())
        assert directory.members[0].name == name
        assert source.read_at(0, source.size) == content


def test_duplicate_names_are_refused_and_torch_semantics_pick_the_first() -> None:
    # THREATS item 16: PyTorch reads the first archive/data.pkl, zipfile the last.
    with pytest.warns(UserWarning, match="Duplicate name"):
        data = _zip([("archive/data.pkl", b"first"), ("archive/data.pkl", b"second")])
    directory = read_zip_directory(BytesSource(data), Limits())
    assert codes.ZIP_DUPLICATE_NAME.code in _codes(directory.findings)
    first = directory.first("archive/data.pkl")
    assert first is not None
    assert member_source(BytesSource(data), first, _ctx()).read_at(0, 5) == b"first"


def test_local_header_name_differing_from_the_central_directory_is_refused() -> None:
    data = bytearray(_zip([("good.pkl", b"x")]))
    data[30:38] = b"evil.pkl"  # the local header's name; the central one still says good.pkl
    directory = read_zip_directory(BytesSource(bytes(data)), Limits())
    assert codes.ZIP_NAME_MISMATCH.code in _codes(directory.findings)


def test_crc_mismatch_is_reported_when_the_member_is_opened() -> None:
    # CVE-2025-1944: zipfile refuses a bad CRC while PyTorch may still load the member.
    data = bytearray(_zip([("archive/data.pkl", b"payload")]))
    cd = _cd_offset(bytes(data))
    data[cd + 16 : cd + 20] = b"\x00\x00\x00\x00"
    data[14:18] = b"\x00\x00\x00\x00"
    directory = read_zip_directory(BytesSource(bytes(data)), Limits())
    opened = open_member(BytesSource(bytes(data)), directory.members[0], _ctx())
    assert _codes(opened.findings) == {codes.ZIP_CRC_MISMATCH.code}
    with pytest.raises(MemberUnreadable):
        member_source(BytesSource(bytes(data)), directory.members[0], _ctx())


def test_large_stored_tensor_storages_skip_the_crc_but_other_members_do_not() -> None:
    blob = b"\x01" * (2 * MiB)
    data = bytearray(_zip([("archive/data/0", blob), ("archive/other", blob)]))
    cd = _cd_offset(bytes(data))
    # Corrupt both CRCs in the central directory (and the local headers).
    pos = cd
    while data[pos : pos + 4] == b"PK\x01\x02":
        data[pos + 16 : pos + 20] = b"\xff\xff\xff\x00"
        nlen, elen, clen = struct.unpack_from("<HHH", data, pos + 28)
        local = struct.unpack_from("<I", data, pos + 42)[0]
        data[local + 14 : local + 18] = b"\xff\xff\xff\x00"
        pos += 46 + nlen + elen + clen
    source = BytesSource(bytes(data))
    storage, other = read_zip_directory(source, Limits()).members
    assert open_member(source, storage, _ctx()).findings == ()
    assert _codes(open_member(source, other, _ctx()).findings) == {codes.ZIP_CRC_MISMATCH.code}


def test_encrypted_flag_is_reported_and_the_member_is_not_opened() -> None:
    data = bytearray(_zip([("a.pkl", b"x")]))
    cd = _cd_offset(bytes(data))
    data[6] |= 1
    data[cd + 8] |= 1
    directory = read_zip_directory(BytesSource(bytes(data)), Limits())
    assert codes.ZIP_FLAGS.code in _codes(directory.findings)
    assert open_member(BytesSource(bytes(data)), directory.members[0], _ctx()).source is None


@pytest.mark.parametrize("name", ["../evil.pkl", "/abs.pkl", "a\\b.pkl", "c:/x", "a/../../b"])
def test_unsafe_member_names_are_reported(name: str) -> None:
    data = _zip([(name, b"x")])
    assert codes.ZIP_UNSAFE_NAME.code in _codes(read_zip_directory(BytesSource(data), Limits()).findings)
    assert unsafe_name_reason(name) is not None


def test_safe_names_have_no_reason() -> None:
    assert unsafe_name_reason("archive/data/0") is None
    assert unsafe_name_reason("") == "empty name"
    assert unsafe_name_reason("a\x00b") == "NUL in name"


def test_data_before_the_first_local_header_is_a_polyglot_finding() -> None:
    inner = _zip([("a.txt", b"hello")])
    data = b"\x80\x02N." + inner  # a pickle in front; offsets now relative (zipfile adjusts)
    directory = read_zip_directory(BytesSource(data), Limits())
    assert codes.ZIP_PREPENDED_DATA.code in _codes(directory.findings)
    assert member_source(BytesSource(data), directory.members[0], _ctx()).read_at(0, 5) == b"hello"


def test_overlapping_members_are_reported() -> None:
    data = bytearray(_zip([("a", b"1" * 50), ("b", b"2" * 50)]))
    cd = _cd_offset(bytes(data))
    second = cd + 46 + 1  # entry 2 starts after entry 1 (name length 1, no extra/comment)
    data[second + 42 : second + 46] = struct.pack("<I", 0)  # point "b" at a's local header
    found = _codes(read_zip_directory(BytesSource(bytes(data)), Limits()).findings)
    assert codes.ZIP_OVERLAP.code in found
    assert codes.ZIP_NAME_MISMATCH.code in found


def test_central_directory_out_of_bounds_and_truncation_never_raise() -> None:
    data = bytearray(_zip([("a", b"x" * 10)]))
    eocd = bytes(data).rfind(b"PK\x05\x06")
    data[eocd + 16 : eocd + 20] = struct.pack("<I", 10**9)
    assert codes.ZIP_MALFORMED.code in _codes(read_zip_directory(BytesSource(bytes(data)), Limits()).findings)
    whole = _zip([("a", b"x" * 100), ("b", b"y" * 100)])
    for cut in range(0, len(whole), 7):
        directory = read_zip_directory(BytesSource(whole[:cut]), Limits())
        assert directory.findings or directory.members


def test_bytes_after_the_end_record_are_reported() -> None:
    data = _zip([("a", b"x")]) + b"hidden payload"
    assert codes.ZIP_TRAILING_DATA.code in _codes(read_zip_directory(BytesSource(data), Limits()).findings)


def test_member_count_over_the_limit_raises_limit_exceeded() -> None:
    data = _zip([(f"m{i}", b"") for i in range(6)])
    read_zip_directory(BytesSource(data), Limits(max_archive_members=6))
    with pytest.raises(LimitExceeded) as info:
        read_zip_directory(BytesSource(data), Limits(max_archive_members=5))
    assert info.value.resource == "max_archive_members"


def test_a_zip_bomb_member_is_stopped_by_the_compression_ratio() -> None:
    data = _zip([("bomb", b"\x00" * (8 * MiB))], zipfile.ZIP_DEFLATED)
    source = BytesSource(data)
    member = read_zip_directory(source, Limits()).members[0]
    with pytest.raises(LimitExceeded) as info:
        open_member(source, member, _ctx(Limits(max_compression_ratio=200)))
    assert info.value.resource == "max_compression_ratio"
    with pytest.raises(LimitExceeded) as info:
        open_member(source, member, _ctx(Limits(max_compression_ratio=1e9, max_decompressed_bytes=4 * MiB)))
    assert info.value.resource == "max_decompressed_bytes"


def test_a_low_ratio_limit_holds_for_members_of_a_few_dozen_kib_but_not_for_tiny_ones() -> None:
    # A policy's max_compression_ratio must be honoured below 1 MiB too; only members under
    # RATIO_FLOOR_BYTES are exempt (their output is trivial whatever the ratio).
    small = _zip([("z", b"\x00" * (64 * 1024))], zipfile.ZIP_DEFLATED)
    source = BytesSource(small)
    member = read_zip_directory(source, Limits()).members[0]
    with pytest.raises(LimitExceeded) as info:
        open_member(source, member, _ctx(Limits(max_compression_ratio=10)))
    assert info.value.resource == "max_compression_ratio"
    tiny = _zip([("z", b"\x00" * (RATIO_FLOOR_BYTES // 2))], zipfile.ZIP_DEFLATED)
    source = BytesSource(tiny)
    member = read_zip_directory(source, Limits()).members[0]
    assert open_member(source, member, _ctx(Limits(max_compression_ratio=10))).findings == ()


def test_a_member_inflating_past_its_declared_size_is_corrupt() -> None:
    data = bytearray(_zip([("a", b"abc" * 300)], zipfile.ZIP_DEFLATED))
    cd = _cd_offset(bytes(data))
    data[cd + 24 : cd + 28] = struct.pack("<I", 10)  # declared uncompressed size
    data[22:26] = struct.pack("<I", 10)
    source = BytesSource(bytes(data))
    opened = open_member(source, read_zip_directory(source, Limits()).members[0], _ctx())
    assert codes.ZIP_CORRUPT_MEMBER.code in _codes(opened.findings)
