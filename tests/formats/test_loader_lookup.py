"""Issue 15: member lookups follow the real loaders' rules (miniz, zipfile, tarfile), ambiguity blocks."""

from __future__ import annotations

import io
import pickle
import tarfile
import zipfile

import pytest

from weightguard.analysis.torch_formats import storage_keys
from weightguard.api import file_blocking, scan_file_bytes
from weightguard.errors import LimitExceeded
from weightguard.formats import codes
from weightguard.formats.archives import read_zip_directory
from weightguard.formats.detect import LEGACY_TORCH_MAGIC, detect
from weightguard.formats.interface import FileFormat
from weightguard.formats.spool import Spool, SpooledSource
from weightguard.formats.tar_reader import member_key, tar_names, tar_opens
from weightguard.formats.zip_names import torch_candidates, zipfile_choice
from weightguard.limits import Limits
from weightguard.policy.load import load_policy
from weightguard.sources.interface import BytesSource

# A protocol 0 pickle calling posix.system: only the pickle engine sees what it does.
_EVIL = b"cposix\nsystem\n(S'true'\ntR."


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members:
            zf.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


def _tar(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _blocking_codes(data: bytes) -> set[str]:
    loaded = load_policy(None)
    return {f.code for f in file_blocking(scan_file_bytes(data, "model.bin", loaded), loaded)}


def _codes(data: bytes) -> set[str]:
    return {f.code for f in read_zip_directory(BytesSource(data), Limits()).findings}


# --- zip ---------------------------------------------------------------------------------------


def test_torch_lookup_folds_ascii_case_only_and_never_slashes_or_other_letters() -> None:
    data = _zip([("archive/DATA.PKL", b"a"), ("archive\\data.pkl", b"b"), ("archive/dat\u00c5.pkl", b"c")])
    directory = read_zip_directory(BytesSource(data), Limits())
    assert [m.name for m in directory.torch_candidates("archive/data.pkl")] == ["archive/DATA.PKL"]
    assert torch_candidates(directory.members, "archive/dat\u00e5.pkl") == []  # miniz folds A-Z only


def test_zipfile_reads_the_last_of_equal_names() -> None:
    with pytest.warns(UserWarning, match="Duplicate name"):
        data = _zip([("a.npy", b"first"), ("a.npy", b"last")])
    directory = read_zip_directory(BytesSource(data), Limits())
    chosen = zipfile_choice(directory.members, "a.npy")
    assert chosen is directory.members[1]


def test_names_that_differ_only_in_ascii_case_are_a_critical_finding() -> None:
    found = _codes(_zip([("archive/data.pkl", b"x"), ("archive/Data.pkl", b"y")]))
    assert codes.ZIP_CASE_DUPLICATE.code in found
    assert codes.ZIP_CASE_DUPLICATE.severity.value == "critical"
    assert _codes(_zip([("archive/data.pkl", b"x"), ("archive/data.pkl.bak", b"y")])) == set()


def test_a_name_cut_at_a_nul_duplicates_another_name_for_zipfile() -> None:
    data = _zip([("a.npy", b"x"), ("a.npy#.txt", b"y")]).replace(b"a.npy#.txt", b"a.npy\x00.txt")
    found = _codes(data)
    assert codes.ZIP_DUPLICATE_NAME.code in found


def test_a_case_changed_data_pkl_is_torchs_data_pkl_and_goes_to_the_pickle_engine() -> None:
    data = _zip([("archive/DATA.PKL", _EVIL), ("archive/version", b"3\n"), ("archive/byteorder", b"little")])
    assert detect(BytesSource(data), Limits()).format is FileFormat.PYTORCH_ZIP
    assert any(c.startswith("WG-PKL") for c in _blocking_codes(data))


def test_every_case_variant_of_data_pkl_is_analysed_and_the_ambiguity_blocks() -> None:
    benign = pickle.dumps({}, protocol=2)
    data = _zip([("archive/data.pkl", benign), ("archive/Data.PKL", _EVIL), ("archive/version", b"3\n")])
    blocking = _blocking_codes(data)
    assert codes.ZIP_CASE_DUPLICATE.code in blocking
    assert any(c.startswith("WG-PKL") for c in blocking)


def test_torch_takes_the_root_from_the_first_record_even_a_directory_entry() -> None:
    data = _zip([("other/", b""), ("archive/data.pkl", pickle.dumps({}, protocol=2)), ("archive/version", b"3\n")])
    assert codes.TRC_LAYOUT.code in _blocking_codes(data)


# --- tar ---------------------------------------------------------------------------------------


def _legacy(obj: bytes) -> list[tuple[str, bytes]]:
    storages = pickle.dumps(0, protocol=2) + pickle.dumps([], protocol=2)
    return [("storages", storages), ("tensors", pickle.dumps(0, protocol=2)), ("pickle", obj)]


def _resum(data: bytes, *, signed: bool, edit: bytes = b"") -> bytes:
    block = bytearray(data[:512])
    block[265 : 265 + len(edit)] = edit
    block[148:156] = b" " * 8
    total = sum(b - 256 if signed and b > 127 else b for b in block)
    block[148:156] = b"%06o\x00 " % total
    return bytes(block) + data[512:]


def test_tarfile_decides_what_is_a_tar_v7_and_signed_checksums_included() -> None:
    plain = _tar(_legacy(pickle.dumps({}, protocol=2)))
    v7 = bytearray(plain)
    v7[257:265] = bytes(8)
    signed = _resum(plain, signed=True, edit=b"\xe9\xe9\xe9")
    for data in (plain, _resum(bytes(v7), signed=False), signed):
        assert tar_opens(BytesSource(data), Limits())
        assert detect(BytesSource(data), Limits()).format is FileFormat.PYTORCH_LEGACY
    assert not tar_opens(BytesSource(bytes(512) + plain), Limits())  # an empty archive to tarfile: torch fails


def test_tar_names_compare_as_getmember_does() -> None:
    assert [member_key(n) for n in ("./pickle", "pickle/", "x/../pickle", "pickle")] == ["pickle"] * 4
    data = _tar([("./storages", b"1"), ("tensors", b"2")])
    assert tar_names(BytesSource(data), Limits(), 10) == ["storages", "tensors"]


def test_a_duplicate_pickle_member_blocks_and_every_copy_is_analysed() -> None:
    benign = pickle.dumps({}, protocol=2)
    for first, last in ((benign, _EVIL), (_EVIL, benign)):
        blocking = _blocking_codes(_tar([*_legacy(first), ("./pickle", last)]))
        assert codes.ARC_DUPLICATE_NAME.code in blocking
        assert any(c.startswith("WG-PKL") for c in blocking)


def test_a_pax_path_renames_a_member_as_tarfile_reads_it() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in _legacy(pickle.dumps({}, protocol=2)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        decoy = tarfile.TarInfo("readme.txt")
        decoy.pax_headers = {"path": "pickle"}
        decoy.size = len(_EVIL)
        tar.addfile(decoy, io.BytesIO(_EVIL))
    data = buf.getvalue()
    assert b"readme.txt" in data
    blocking = _blocking_codes(data)
    assert codes.ARC_DUPLICATE_NAME.code in blocking
    assert any(c.startswith("WG-PKL") for c in blocking)


def test_a_legacy_member_far_into_a_plain_tar_is_still_walked_as_torch_would() -> None:
    junk = [(f"file{i}.txt", b"hello\n") for i in range(70)]
    data = _tar([*junk, *_legacy(_EVIL)])
    assert detect(BytesSource(data), Limits()).format is FileFormat.TAR  # the names are past the probe's 64
    assert any(c.startswith("WG-PKL") for c in _blocking_codes(data))


def test_a_tar_that_starts_with_a_pickle_is_also_walked_as_stacked_pickles() -> None:
    # torch falls back to pickle.load at offset 0 when its tar path raises a TarError midway.
    magic = pickle.dumps(LEGACY_TORCH_MAGIC, protocol=2)
    data = _tar([(magic.decode("utf-8", "surrogateescape"), b"x"), *_legacy(pickle.dumps({}, protocol=2))])
    assert tar_opens(BytesSource(data), Limits())
    assert codes.TRC_LEGACY_STRUCTURE.code in _blocking_codes(data)


def test_a_huge_pax_header_is_a_limit_not_an_allocation() -> None:
    header = tarfile.TarInfo("././@PaxHeader")
    header.type = tarfile.XHDTYPE
    header.size = 1 << 32  # tarfile would read it in one call
    data = header.tobuf(tarfile.USTAR_FORMAT) + bytes(1024)
    with pytest.raises(LimitExceeded, match="max_header_bytes"):
        tar_opens(BytesSource(data), Limits(max_header_bytes=1 << 20))
    # Detection still names it a tar, so its analyzer reports the limit instead of another format passing.
    assert detect(BytesSource(data), Limits(max_header_bytes=1 << 20)).format is FileFormat.TAR
    assert "WG-LIM-001" in _blocking_codes(data)


# --- legacy keys and the spool ------------------------------------------------------------------


@pytest.mark.parametrize("protocol", range(6))
def test_storage_keys_read_the_list_torch_save_writes_in_every_protocol(protocol: int) -> None:
    assert storage_keys(pickle.dumps(["0", "1", "10"], protocol=protocol)) == ["0", "1", "10"]


def test_storage_keys_refuse_any_other_shape() -> None:
    popped = b"\x80\x02]q\x00(X\x01\x00\x00\x000X\x01\x00\x00\x001e0."  # a list, then POP
    for data in (pickle.dumps(("0",), protocol=2), pickle.dumps([1], protocol=2), b"\x80\x02\xff", popped):
        assert storage_keys(data) is None


def test_a_spool_keeps_small_output_in_memory_and_large_output_in_a_file() -> None:
    small = Spool(8)
    small.write(b"abc")
    assert isinstance(small.source(), BytesSource)
    big = Spool(8)
    for chunk in (b"0123456", b"789abcdef", b"g"):
        big.write(chunk)
    source = big.source()
    assert isinstance(source, SpooledSource)
    assert source.size == 17
    assert source.read_at(0, 100) == b"0123456789abcdefg"
    assert source.read_at(5, 3) == b"567"
    assert source.read_at(17, 1) == b""
