"""Specification of the joblib analyzer: raw array bytes are skipped, object arrays and compression analysed."""

from __future__ import annotations

import io
import os
import pickle
import zlib

import numpy as np
import pytest
from pickle_builders import MARKER, blocking, codes_of, make_ctx, reduce_pickle, scan

from weightguard.analysis.interface import Location, ScanContext
from weightguard.analysis.joblib_format import JoblibAnalyzer
from weightguard.errors import LimitExceeded
from weightguard.findings import Finding, Severity
from weightguard.limits import Limits
from weightguard.sources.interface import BytesSource

joblib = pytest.importorskip("joblib")
COMPRESSIONS = [0, 3, ("gzip", 3), ("bz2", 3), ("xz", 3), ("lzma", 3)]


class Payload:
    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return os.system, (MARKER,)


def dump(obj: object, compress: object = 0) -> bytes:
    buf = io.BytesIO()
    joblib.dump(obj, buf, compress=compress)
    return buf.getvalue()


def analyze(data: bytes, ctx: ScanContext | None = None) -> list[Finding]:
    return list(JoblibAnalyzer().analyze(BytesSource(data), Location("model.joblib"), ctx or make_ctx()))


def benign() -> dict[str, object]:
    rng = np.random.default_rng(0)
    return {
        "w": rng.standard_normal((30, 7)).astype("f4"), "fortran": np.asfortranarray(rng.standard_normal((5, 3))),
        "ints": np.arange(10), "text": np.array(["ab", "cde"]), "rec": np.zeros(3, dtype=[("a", "f4"), ("b", "i2")]),
        "objects": np.array([1, "x", None], dtype=object), "dates": np.array(["2020-01-01"], dtype="M8[ns]"),
        "empty": np.zeros((0, 4)), "scalar": np.float32(2.0), "meta": {"classes": ["a", "b"], "n": 3},
    }  # fmt: skip


@pytest.mark.parametrize("compress", COMPRESSIONS)
def test_joblib_dumps_of_numpy_data_have_no_blocking_finding(compress: object) -> None:
    findings = analyze(dump(benign(), compress))
    assert blocking(findings) == [], [f.message for f in findings]


def test_raw_array_bytes_are_skipped_not_parsed() -> None:
    # The array's bytes spell a protocol-0 payload; joblib.load never parses them, so neither may we.
    fake = np.frombuffer(f"cos\nsystem\n(S'{MARKER}'\ntR.".encode(), dtype=np.uint8)
    data = dump({"a": fake})
    assert blocking(analyze(data)) == []
    assert blocking(scan(data)) != []  # read as a plain pickle the array bytes are opcodes: it must not pass


@pytest.mark.parametrize("compress", [0, 3])
def test_malicious_object_in_a_joblib_dict_is_critical(compress: object) -> None:
    findings = analyze(dump({"w": np.ones(3), "evil": Payload()}, compress))
    assert any(f.code == "WG-PKL-001" and f.severity is Severity.CRITICAL for f in findings)


def test_malicious_object_inside_an_object_array_is_found() -> None:
    findings = analyze(dump({"a": np.array([Payload(), 1], dtype=object)}))
    (finding,) = [f for f in findings if f.code == "WG-PKL-001"]
    assert "object-array@" in finding.member


def test_unknown_wrapper_dtype_is_reported() -> None:
    data = dump({"a": np.ones(4, dtype="f4")})
    assert b"\x8c\x02f4" in data
    findings = analyze(data.replace(b"\x8c\x02f4", b"\x8c\x02?4", 1))
    assert "WG-PKL-015" in codes_of(findings)


def test_compression_bomb_hits_the_ratio_limit() -> None:
    data = dump({"z": np.zeros(2_000_000)}, 3)
    with pytest.raises(LimitExceeded) as info:
        analyze(data, make_ctx(Limits(max_compression_ratio=20)))
    assert info.value.resource == "max_compression_ratio"


def test_decompressed_bytes_are_charged_to_the_file_budget() -> None:
    data = dump({"w": np.random.default_rng(0).standard_normal(50_000)}, 3)
    with pytest.raises(LimitExceeded) as info:
        analyze(data, make_ctx(Limits(max_decompressed_bytes=100_000)))
    assert info.value.resource == "max_decompressed_bytes"


def test_corrupt_and_truncated_compression_is_malformed() -> None:
    data = dump(benign(), 3)
    assert "WG-PKL-006" in codes_of(analyze(data[:2] + b"\xff" * 40))
    assert "WG-PKL-006" in codes_of(analyze(data[: len(data) // 2]))


def test_lz4_is_reported_as_skipped() -> None:
    assert codes_of(analyze(b"\x04\x22\x4d\x18" + b"\x00" * 20)) == {"WG-PKL-016"}


def test_old_zfile_format_is_decompressed_and_its_separate_file_wrapper_denied() -> None:
    inner = b"\x80\x02cjoblib.numpy_pickle_compat\nNDArrayWrapper\n)\x81}U\x08filenameU\x05a.npyus b."
    inner = inner.replace(b"us b.", b"sb.")
    data = b"ZF" + hex(len(inner)).encode().ljust(19) + zlib.compress(inner)
    findings = analyze(data)
    assert "WG-PKL-010" in codes_of(findings)
    assert all(f.member == "<zfile>" for f in findings)


def test_trailing_data_after_a_joblib_pickle_is_reported() -> None:
    assert "WG-PKL-007" in codes_of(analyze(pickle.dumps({"a": 1}, protocol=4) + b"\x00extra"))


def test_malicious_reduce_pickle_saved_as_joblib_name_is_still_caught() -> None:
    assert "WG-PKL-001" in codes_of(analyze(reduce_pickle(os.system, (MARKER,))))
