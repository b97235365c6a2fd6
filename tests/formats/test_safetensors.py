"""Safetensors header validation: one rule per malformation, checked against the real library."""

from __future__ import annotations

import json
import pickle
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save

from weightguard.analysis.interface import Location, PickleSettings, ScanContext
from weightguard.findings import Finding, RuleKind
from weightguard.formats import header_codes as codes
from weightguard.formats.safetensors import (
    DTYPE_BITS,
    SafetensorsAnalyzer,
    SafetensorsHeader,
    parse_safetensors_header,
)
from weightguard.limits import Limits
from weightguard.sources.interface import ByteSource, BytesSource


def _ctx(limits: Limits | None = None) -> ScanContext:
    return ScanContext(limits=limits or Limits(), pickle=PickleSettings(), dispatch=lambda s, w: iter(()))


def _scan(data: bytes, limits: Limits | None = None) -> list[Finding]:
    return list(SafetensorsAnalyzer().analyze(BytesSource(data), Location("m.safetensors"), _ctx(limits)))


def _codes(data: bytes) -> set[str]:
    return {f.code for f in _scan(data)}


def _file(header: bytes | str, data: bytes = b"") -> bytes:
    raw = header.encode() if isinstance(header, str) else header
    return struct.pack("<Q", len(raw)) + raw + data


def _entry(dtype: str = "U8", shape: list[int] | None = None, offsets: list[int] | None = None) -> dict[str, object]:
    return {"dtype": dtype, "shape": [2] if shape is None else shape, "data_offsets": offsets or [0, 2]}


def _library_accepts(data: bytes, tmp_path: Path) -> bool:
    path = tmp_path / "probe.safetensors"
    path.write_bytes(data)
    try:
        with safe_open(str(path), "numpy"):
            return True
    except (SafetensorError, OSError, ValueError):
        return False


@dataclass
class CountingSource:
    """A ByteSource that records every read (proves the data region is never touched)."""

    data: bytes
    reads: list[tuple[int, int]] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.data)

    def read_at(self, offset: int, length: int) -> bytes:
        self.reads.append((offset, length))
        return self.data[offset : offset + length]


def _valid() -> bytes:
    rng = np.random.default_rng(0)
    tensors = {
        "w": rng.standard_normal((4, 3)).astype(np.float32),
        "b": np.zeros(4, np.float16),
        "i": np.arange(5, dtype=np.int64),
        "flag": np.array([True, False]),
        "empty": np.zeros((0, 3), np.float32),
    }
    return save(tensors, metadata={"format": "np", "note": "fixture"})


def test_a_file_written_by_the_safetensors_library_has_no_findings() -> None:
    assert _scan(_valid()) == []


def test_a_valid_header_is_returned_as_a_typed_record() -> None:
    header = parse_safetensors_header(BytesSource(_valid()), Limits())
    assert isinstance(header, SafetensorsHeader)
    assert header.metadata == {"format": "np", "note": "fixture"}
    assert {t.name for t in header.tensors} == {"w", "b", "i", "flag", "empty"}
    w = next(t for t in header.tensors if t.name == "w")
    assert (w.dtype, w.shape, w.end - w.begin) == ("F32", (4, 3), 48)
    assert header.data_start == 8 + header.header_len
    assert [t.begin for t in header.tensors] == sorted(t.begin for t in header.tensors)


def test_a_malformed_header_is_returned_as_findings_not_raised() -> None:
    result = parse_safetensors_header(BytesSource(b"\x00" * 4), Limits(), Location("x"))
    assert isinstance(result, list)
    assert [f.code for f in result] == [codes.ST_TRUNCATED.code]


def test_only_the_header_is_read_even_with_a_large_tensor_region() -> None:
    big = save({"big": np.zeros(4 * 1024 * 1024, np.uint8)})  # 4 MiB of tensor bytes
    source = CountingSource(big)
    assert list(SafetensorsAnalyzer().analyze(source, Location("big"), _ctx())) == []
    header_end = 8 + struct.unpack("<Q", big[:8])[0]
    # Beyond the header, only the data region's first two bytes (is it a pickle PROTO?).
    assert all(offset + length <= header_end + 2 for offset, length in source.reads)
    assert sum(length for _, length in source.reads) <= header_end + 2


def test_every_dtype_the_library_accepts_is_accepted(tmp_path: Path) -> None:
    for dtype, bits in DTYPE_BITS.items():
        data = _file(json.dumps({"t": _entry(dtype, [8], [0, bits])}), b"\0" * bits)
        assert _library_accepts(data, tmp_path), dtype
        assert _scan(data) == [], dtype


@pytest.mark.parametrize("dtype", ["C128", "F8_E4M3FN", "bool", "f32", "U4", "I4", ""])
def test_a_dtype_the_library_refuses_is_flagged(dtype: str, tmp_path: Path) -> None:
    data = _file(json.dumps({"t": _entry(dtype, [8], [0, 8])}), b"\0" * 8)
    assert not _library_accepts(data, tmp_path)
    assert codes.ST_BAD_DTYPE.code in _codes(data)


def test_a_file_shorter_than_the_length_prefix_is_truncated() -> None:
    assert _codes(b"\x02\x00\x00") == {codes.ST_TRUNCATED.code}


def test_a_header_length_past_the_end_of_file_is_flagged() -> None:
    assert _codes(struct.pack("<Q", 1000) + b"{}") == {codes.ST_HEADER_PAST_EOF.code}
    assert _codes(struct.pack("<Q", 2**64 - 1) + b"{}") == {codes.ST_HEADER_PAST_EOF.code}


def test_a_header_over_max_header_bytes_is_an_error_not_analysed() -> None:
    data = _file("{}" + " " * 98)
    findings = _scan(data, Limits(max_header_bytes=99))
    assert [f.code for f in findings] == [codes.ST_HEADER_TOO_LARGE.code]
    assert findings[0].kind is RuleKind.ERROR
    assert _scan(data, Limits(max_header_bytes=100)) == []


def test_a_header_that_is_not_utf8_is_flagged(tmp_path: Path) -> None:
    data = _file(b'{"\xff":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}', b"xx")
    assert not _library_accepts(data, tmp_path)
    assert _codes(data) == {codes.ST_HEADER_NOT_UTF8.code}


@pytest.mark.parametrize(
    "header",
    [
        '{"t": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}',  # unterminated
        '{"t": {"dtype": "U8", "shape": [NaN], "data_offsets": [0, 2]}}',
        '{"__metadata__": {"a": "b"}, "x": Infinity}',
        '{"t": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}}xx',  # garbage inside the header
        '{"t": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}}\0',
        "[" * 5000 + "]" * 5000,  # deeper than Python's recursion limit
    ],
)
def test_a_header_that_is_not_strict_json_is_flagged(header: str, tmp_path: Path) -> None:
    data = _file(header, b"xx")
    assert not _library_accepts(data, tmp_path)
    assert _codes(data) == {codes.ST_HEADER_NOT_JSON.code}


def test_space_padding_is_accepted_but_other_padding_is_off_spec(tmp_path: Path) -> None:
    body = json.dumps({"t": _entry()})
    assert _codes(_file(body + "      ", b"xx")) == set()
    for odd in (body + "\n", body + "\t ", " " + body):
        data = _file(odd, b"xx")
        assert _library_accepts(data, tmp_path)  # serde accepts it, the spec does not
        assert _codes(data) == {codes.ST_HEADER_LAYOUT.code}


def test_duplicate_tensor_names_are_flagged_although_the_library_accepts_them(tmp_path: Path) -> None:
    entry = '"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}'
    data = _file("{" + entry + ", " + entry + "}", b"xx")
    assert _library_accepts(data, tmp_path)
    findings = _scan(data)
    assert [f.code for f in findings] == [codes.ST_DUPLICATE_KEY.code]
    assert "'a'" in findings[0].message


def test_duplicate_keys_inside_an_entry_are_flagged() -> None:
    data = _file('{"a": {"dtype": "U8", "dtype": "F16", "shape": [2], "data_offsets": [0, 2]}}', b"xx")
    assert codes.ST_DUPLICATE_KEY.code in _codes(data)


@pytest.mark.parametrize("header", ["[]", '"x"', "33", "null"])
def test_a_header_that_is_not_an_object_is_flagged(header: str) -> None:
    assert _codes(_file(header)) == {codes.ST_NOT_AN_OBJECT.code}


@pytest.mark.parametrize("metadata", [{"a": 1}, {"a": {"b": "c"}}, {"a": None}, ["x"], "s"])
def test_metadata_that_is_not_string_to_string_is_flagged(metadata: object, tmp_path: Path) -> None:
    data = _file(json.dumps({"__metadata__": metadata, "t": _entry()}), b"xx")
    assert not _library_accepts(data, tmp_path)
    assert _codes(data) == {codes.ST_BAD_METADATA.code}


def test_null_metadata_is_accepted_like_the_library_does(tmp_path: Path) -> None:
    data = _file(json.dumps({"__metadata__": None, "t": _entry()}), b"xx")
    assert _library_accepts(data, tmp_path)
    assert _scan(data) == []


@pytest.mark.parametrize(
    "entry",
    ["x", [1, 2], {"dtype": "U8", "shape": [2]}, {"shape": [2], "data_offsets": [0, 2]}, {}],
)
def test_a_tensor_entry_missing_fields_is_flagged(entry: object, tmp_path: Path) -> None:
    data = _file(json.dumps({"t": entry}), b"xx")
    assert not _library_accepts(data, tmp_path)
    assert _codes(data) == {codes.ST_BAD_ENTRY.code}


def test_an_unknown_field_in_a_tensor_entry_is_flagged(tmp_path: Path) -> None:
    data = _file(json.dumps({"t": {**_entry(), "payload": "hidden"}}), b"xx")
    assert _library_accepts(data, tmp_path)
    assert _codes(data) == {codes.ST_UNKNOWN_FIELD.code}


@pytest.mark.parametrize("shape", [[-2], [2.0], ["2"], [True, 2], "2", None])
def test_a_shape_that_is_not_non_negative_ints_is_flagged(shape: object, tmp_path: Path) -> None:
    data = _file(json.dumps({"t": {"dtype": "U8", "shape": shape, "data_offsets": [0, 2]}}), b"xx")
    assert not _library_accepts(data, tmp_path)
    assert _codes(data) == {codes.ST_BAD_SHAPE.code}


@pytest.mark.parametrize("offsets", [[0], [0, 2, 2], [-1, 1], [0.0, 2], [2, 0], "0,2", [None, 2]])
def test_invalid_data_offsets_are_flagged(offsets: object, tmp_path: Path) -> None:
    data = _file(json.dumps({"t": {"dtype": "U8", "shape": [2], "data_offsets": offsets}}), b"xx")
    assert not _library_accepts(data, tmp_path)
    assert codes.ST_BAD_OFFSETS.code in _codes(data)


@pytest.mark.parametrize(
    ("dtype", "shape", "span"),
    [
        ("F32", [2], 4),  # too short
        ("F32", [2], 12),  # too long
        ("F4", [3], 2),  # 12 bits: ends inside a byte
        ("F6_E2M3", [3], 3),  # 18 bits
        ("U8", [2**40, 2**40], 2),  # overflows u64
    ],
)
def test_a_byte_span_that_does_not_match_shape_and_dtype_is_flagged(
    dtype: str, shape: list[int], span: int, tmp_path: Path
) -> None:
    data = _file(json.dumps({"t": _entry(dtype, shape, [0, span])}), b"\0" * span)
    assert not _library_accepts(data, tmp_path)
    assert _codes(data) == {codes.ST_SIZE_MISMATCH.code}


def test_sub_byte_dtypes_that_end_on_a_byte_are_accepted(tmp_path: Path) -> None:
    for dtype, shape, span in (("F4", [4], 2), ("F6_E3M2", [4], 3)):
        data = _file(json.dumps({"t": _entry(dtype, shape, [0, span])}), b"\0" * span)
        assert _library_accepts(data, tmp_path)
        assert _scan(data) == []


def test_a_gap_before_or_between_tensors_is_flagged(tmp_path: Path) -> None:
    first = _file(json.dumps({"a": _entry(offsets=[1, 3])}), b"xxx")
    between = _file(json.dumps({"a": _entry(offsets=[0, 2]), "b": _entry(offsets=[3, 5])}), b"xxxxx")
    for data in (first, between):
        assert not _library_accepts(data, tmp_path)
        assert _codes(data) == {codes.ST_GAP.code}


def test_overlapping_tensors_are_flagged(tmp_path: Path) -> None:
    data = _file(json.dumps({"a": _entry(offsets=[0, 2]), "b": _entry(offsets=[0, 2])}), b"xx")
    assert not _library_accepts(data, tmp_path)
    findings = _scan(data)
    assert [f.code for f in findings] == [codes.ST_OVERLAP.code]


def test_header_key_order_does_not_matter_only_the_offsets_do(tmp_path: Path) -> None:
    data = _file(json.dumps({"b": _entry(shape=[1], offsets=[1, 2]), "a": _entry(shape=[1], offsets=[0, 1])}), b"xy")
    assert _library_accepts(data, tmp_path)
    assert _scan(data) == []


def test_a_zero_sized_tensor_sharing_an_offset_is_accepted(tmp_path: Path) -> None:
    data = _file(json.dumps({"z": _entry(shape=[0], offsets=[0, 0]), "a": _entry()}), b"xx")
    assert _library_accepts(data, tmp_path)
    assert _scan(data) == []


def test_a_tensor_past_the_end_of_the_data_region_is_flagged(tmp_path: Path) -> None:
    data = _file(json.dumps({"a": _entry(shape=[4], offsets=[0, 4])}), b"xx")
    assert not _library_accepts(data, tmp_path)
    assert _codes(data) == {codes.ST_OUT_OF_BOUNDS.code}


def test_bytes_hidden_after_the_last_tensor_are_flagged(tmp_path: Path) -> None:
    # THREATS 5.4: a pickle appended to a valid safetensors file.
    appended = b"\x80\x04\x95hidden payload."
    data = _valid() + appended
    assert not _library_accepts(data, tmp_path)
    findings = _scan(data)
    assert [f.code for f in findings] == [codes.ST_TRAILING_DATA.code]
    assert findings[0].evidence["hidden_bytes"] == str(len(appended))


def _recording_ctx() -> tuple[ScanContext, list[tuple[bytes, Location]]]:
    seen: list[tuple[bytes, Location]] = []

    def dispatch(source: ByteSource, where: Location) -> Iterator[Finding]:
        seen.append((source.read_at(0, source.size), where))
        return iter(())

    return ScanContext(limits=Limits(), pickle=PickleSettings(), dispatch=dispatch), seen


def test_bytes_after_the_last_tensor_are_analysed_where_they_sit() -> None:
    # The appended pickle goes to the scanner as its own part, located by its file offset.
    base = _valid()
    appended = pickle.dumps({"x": 1}, protocol=2)
    ctx, seen = _recording_ctx()
    findings = list(SafetensorsAnalyzer().analyze(BytesSource(base + appended), Location("m.safetensors"), ctx))
    assert [f.code for f in findings] == [codes.ST_TRAILING_DATA.code]
    assert seen == [(appended, Location("m.safetensors", (f"<after-tensors@{len(base)}>",)))]


def test_a_pickle_starting_the_data_region_is_refused_and_analysed_at_its_offset() -> None:
    header = json.dumps({"a": _entry(shape=[4], offsets=[0, 4])})
    stream = pickle.dumps({"x": 1}, protocol=2)
    data = _file(header, stream[:4]) + stream[4:]
    ctx, seen = _recording_ctx()
    findings = list(SafetensorsAnalyzer().analyze(BytesSource(data), Location("m.safetensors"), ctx))
    start = 8 + len(header)
    assert codes.ST_DATA_IS_PICKLE.code in [f.code for f in findings]
    assert seen == [(stream, Location("m.safetensors", (f"<data@{start}>",)))]


def test_a_valid_file_hands_nothing_to_the_scanner() -> None:
    ctx, seen = _recording_ctx()
    assert list(SafetensorsAnalyzer().analyze(BytesSource(_valid()), Location("m.safetensors"), ctx)) == []
    assert seen == []


def test_an_empty_header_with_data_is_trailing_data() -> None:
    assert _codes(_file("{}")) == set()
    assert _codes(_file("{}", b"payload")) == {codes.ST_TRAILING_DATA.code}


def test_a_hostile_header_repeating_one_problem_yields_a_bounded_number_of_findings() -> None:
    header = {f"t{i}": _entry("XX") for i in range(500)}
    findings = [f for f in _scan(_file(json.dumps(header), b"xx")) if f.code == codes.ST_BAD_DTYPE.code]
    assert len(findings) == 21
    assert findings[-1].evidence["more"] == "480"


def test_every_finding_names_the_file_and_member() -> None:
    data = _file("{}", b"x")
    findings = list(SafetensorsAnalyzer().analyze(BytesSource(data), Location("a.zip", ("m.safetensors",)), _ctx()))
    assert [(f.path, f.member) for f in findings] == [("a.zip", "m.safetensors")]
