"""Container analyzers: every member reaches the dispatcher, within the limits, and tricks are findings."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import pickle
import sys
import tarfile
import types
import zipfile
import zlib
from collections.abc import Iterator

import numpy as np
import pytest

from weightguard.analysis.containers import (
    CompressedAnalyzer,
    SevenZipAnalyzer,
    TarAnalyzer,
    ZipAnalyzer,
    decompress_stream,
    decompressor_for,
)
from weightguard.analysis.interface import Analyzer, DetectedPart, Location, PickleSettings, ScanContext
from weightguard.analysis.numpy_formats import NumpyAnalyzer
from weightguard.analysis.pickle_analyzer import PickleAnalyzer
from weightguard.analysis.torch_formats import LegacyTorchAnalyzer, TorchZipAnalyzer
from weightguard.errors import LimitExceeded
from weightguard.findings import Finding, Severity
from weightguard.formats import codes
from weightguard.formats.detect import detect
from weightguard.formats.interface import FileFormat
from weightguard.limits import Limits, MiB
from weightguard.sources.interface import ByteSource, BytesSource

_ANALYZERS: tuple[Analyzer, ...] = (
    ZipAnalyzer(), TarAnalyzer(), CompressedAnalyzer(), SevenZipAnalyzer(), TorchZipAnalyzer(),
    LegacyTorchAnalyzer(), NumpyAnalyzer(), PickleAnalyzer(),
)  # fmt: skip


def _ctx(limits: Limits | None = None) -> ScanContext:
    """A tiny recursive dispatcher standing in for the scanner: detect, then the first analyzer."""
    table = {fmt: a for a in _ANALYZERS for fmt in a.formats}

    def dispatch(source: ByteSource, where: Location) -> Iterator[Finding]:
        detection = detect(source, ctx.limits)
        ctx.parts.append(DetectedPart(where, detection))
        analyzer = table.get(detection.format)
        return analyzer.analyze(source, where, ctx) if analyzer else iter(())

    ctx = ScanContext(limits or Limits(), PickleSettings(), dispatch)
    return ctx


def _run(data: bytes, limits: Limits | None = None) -> tuple[list[Finding], list[tuple[str, FileFormat]]]:
    ctx = _ctx(limits)
    findings = list(ctx.nested(BytesSource(data), Location("model.bin")))
    return findings, [(p.location.member, p.detection.format) for p in ctx.parts]


def _zip(members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _tar(members: list[tarfile.TarInfo | tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for item in members:
            if isinstance(item, tarfile.TarInfo):
                tf.addfile(item)
            else:
                info = tarfile.TarInfo(item[0])
                info.size = len(item[1])
                tf.addfile(info, io.BytesIO(item[1]))
    return buf.getvalue()


class _Boom:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, ("true",))


EVIL = pickle.dumps(_Boom(), protocol=2)


def _blocking(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity.at_least(Severity.HIGH)]


def test_a_pickle_in_a_zip_in_a_zip_in_a_tar_gz_is_reached() -> None:
    inner = _zip({"weights.bin": EVIL})
    outer = _zip({"inner.zip": inner}, zipfile.ZIP_DEFLATED)
    data = gzip.compress(_tar([("bundle/outer.zip", outer)]))
    findings, parts = _run(data)
    assert [fmt for _, fmt in parts] == [
        FileFormat.GZIP, FileFormat.TAR, FileFormat.ZIP, FileFormat.ZIP, FileFormat.PICKLE,
    ]  # fmt: skip
    assert parts[-1][0] == "<gzip>:bundle/outer.zip:inner.zip:weights.bin"
    pickle_findings = [f for f in _blocking(findings) if f.code.startswith("WG-PKL")]
    assert pickle_findings
    assert pickle_findings[0].member.endswith("inner.zip:weights.bin")


def test_ten_levels_of_nesting_stop_at_max_nesting_depth() -> None:
    data = pickle.dumps([1], protocol=2)
    for level in range(10):
        data = _zip({f"level{level}.zip": data})
    with pytest.raises(LimitExceeded) as info:
        _run(data, Limits(max_nesting_depth=8))
    assert info.value.resource == "max_nesting_depth"
    _run(data, Limits(max_nesting_depth=11))


def test_npz_members_are_dispatched_to_the_numpy_analyzer() -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, a=np.arange(4), b=np.ones((2, 2)))
    findings, parts = _run(buf.getvalue())
    assert parts[0][1] is FileFormat.NUMPY_NPZ
    assert [fmt for _, fmt in parts[1:]] == [FileFormat.NUMPY, FileFormat.NUMPY]
    assert findings == []


def test_keras_config_goes_to_the_keras_checker(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[bytes, str]] = []

    def check_keras_config(data: bytes, where: Location) -> list[Finding]:
        seen.append((data, where.member))
        return [codes.POLYGLOT.at(where.path, "marker from the fake checker", member=where.member)]

    fake = types.ModuleType("weightguard.formats.keras")
    fake.check_keras_config = check_keras_config  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "weightguard.formats.keras", fake)
    data = _zip({"config.json": b'{"class_name": "Sequential"}', "metadata.json": b"{}", "model.weights.h5": b""})
    findings, parts = _run(data)
    assert parts[0][1] is FileFormat.KERAS
    assert seen == [(b'{"class_name": "Sequential"}', "config.json")]
    assert "marker from the fake checker" in [f.message for f in findings]


def _special(name: str, kind: bytes, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


def test_tar_links_devices_and_traversal_names_are_reported() -> None:
    data = _tar([
        _special("link", tarfile.SYMTYPE, "/etc/passwd"),
        _special("hard", tarfile.LNKTYPE, "link"),
        _special("dev", tarfile.CHRTYPE),
        _special("fifo", tarfile.FIFOTYPE),
        ("../escape.pkl", pickle.dumps(1)),
    ])  # fmt: skip
    findings, parts = _run(data)
    found = [f.code for f in findings]
    assert found.count(codes.ARC_LINK.code) == 2
    assert found.count(codes.ARC_SPECIAL.code) == 2
    assert codes.ARC_UNSAFE_NAME.code in found
    assert parts[-1] == ("../escape.pkl", FileFormat.PICKLE)


def test_truncated_tar_and_too_many_members() -> None:
    data = _tar([(f"m{i}", b"x" * 600) for i in range(4)])
    findings, _ = _run(data[: 512 + 300])
    assert codes.ARC_MALFORMED.code in [f.code for f in findings]
    with pytest.raises(LimitExceeded):
        _run(data, Limits(max_archive_members=3))


def _tar_problems(data: bytes) -> list[str]:
    findings, _ = _run(data)
    return [f.message for f in findings if f.code == codes.ARC_MALFORMED.code]


def test_a_complete_tar_has_no_structure_finding() -> None:
    assert _tar_problems(_tar([("a.json", b"{}"), ("b.json", b"[]")])) == []


def test_a_tar_cut_inside_its_second_header_is_malformed() -> None:
    # tarfile stops quietly at a truncated later header (THREATS 5.3: fail closed).
    whole = _tar([("a.json", b"{}"), ("b.json", b"[]")])
    (problem,) = _tar_problems(whole[: 1024 + 476])
    assert "header at offset 1024 is truncated (476 of 512 bytes)" in problem


def test_a_tar_with_a_corrupt_later_header_is_malformed() -> None:
    data = bytearray(_tar([("a.json", b"{}"), ("b.json", b"[]")]))
    data[1024 + 148] ^= 0x01  # the second header's checksum
    (problem,) = _tar_problems(bytes(data))
    assert "header at offset 1024 is invalid" in problem


@pytest.mark.parametrize(
    ("end", "expected"),
    [(b"", "without the end-of-archive marker"), (b"\x00" * 700, "end-of-archive marker at offset 1024 is truncated"),
     (b"\x00" * 512 + b"x" * 512, "lone zero block"), (b"\x00" * 1024 + b"hidden", "non-zero data at offset 2048")],
)  # fmt: skip
def test_what_follows_the_last_member_must_be_the_end_of_archive_marker(end: bytes, expected: str) -> None:
    whole = _tar([("a.json", b"{}")])
    (problem,) = _tar_problems(whole[:1024] + end)
    assert expected in problem


def test_gzip_corruption_truncation_and_trailing_data() -> None:
    blob = gzip.compress(pickle.dumps({"a": 1}, protocol=2))
    findings, _ = _run(blob[:-12])
    assert codes.ARC_CORRUPT_STREAM.code in [f.code for f in findings]
    findings, parts = _run(blob[:4] + b"\xff" * 40)
    assert codes.ARC_CORRUPT_STREAM.code in [f.code for f in findings]
    findings, parts = _run(blob + EVIL)
    assert codes.ARC_TRAILING_DATA.code in [f.code for f in findings]
    assert ("<after-gzip>", FileFormat.PICKLE) in parts


def test_a_legacy_lzma_stream_is_decompressed_and_its_content_analysed() -> None:
    # joblib.dump(compress="lzma") writes this format (FORMAT_ALONE), not xz.
    findings, parts = _run(lzma.compress(EVIL, format=lzma.FORMAT_ALONE))
    assert parts == [("", FileFormat.XZ), ("<lzma>", FileFormat.PICKLE)]
    assert any(f.code.startswith("WG-PKL") and f.member == "<lzma>" for f in _blocking(findings))
    findings, _ = _run(lzma.compress(EVIL, format=lzma.FORMAT_ALONE)[:-5])
    assert codes.ARC_CORRUPT_STREAM.code in [f.code for f in findings]


def test_a_bzip2_bomb_hits_the_ratio_limit() -> None:
    # deflate tops out near 1030:1 (below the default limit, which spares zero-filled tensors);
    # bzip2 and xz reach far higher ratios, which only bombs need
    with pytest.raises(LimitExceeded) as info:
        _run(bz2.compress(b"\x00" * (16 * MiB)))
    assert info.value.resource == "max_compression_ratio"


def test_7z_members_are_extracted_under_the_limits() -> None:
    import py7zr

    buf = io.BytesIO()
    with py7zr.SevenZipFile(buf, "w") as archive:
        archive.writestr(EVIL, "model.pt")
    findings, parts = _run(buf.getvalue())
    assert parts[0][1] is FileFormat.SEVEN_ZIP
    assert ("model.pt", FileFormat.PICKLE) in parts
    assert any(f.code.startswith("WG-PKL") for f in _blocking(findings))
    with pytest.raises(LimitExceeded):
        _run(buf.getvalue(), Limits(max_decompressed_bytes=10))


def test_a_corrupt_7z_or_a_missing_py7zr_is_skipped_not_passed(monkeypatch: pytest.MonkeyPatch) -> None:
    findings, _ = _run(b"7z\xbc\xaf\x27\x1c\x00\x04" + b"\x01" * 40)
    assert [f.code for f in findings] == [codes.ARC_SEVEN_ZIP_SKIPPED.code]
    monkeypatch.setitem(sys.modules, "py7zr", None)
    findings = list(SevenZipAnalyzer().analyze(BytesSource(b"7z"), Location("x.7z"), _ctx()))
    assert [f.code for f in findings] == [codes.ARC_SEVEN_ZIP_SKIPPED.code]


def test_zip_container_findings_come_before_member_findings() -> None:
    data = b"junk" + _zip({"a.pkl": EVIL})
    findings, _ = _run(data)
    assert findings[0].code == codes.ZIP_PREPENDED_DATA.code


@pytest.mark.parametrize(
    ("kind", "pack"),
    [("gzip", gzip.compress), ("bzip2", bz2.compress), ("xz", lzma.compress), ("zlib", zlib.compress)],
)
def test_single_streams_decompress_and_report_their_consumed_length(kind: str, pack: object) -> None:
    payload = b"model bytes " * 1000
    blob = pack(payload)  # type: ignore[operator]
    result = decompress_stream(BytesSource(blob + b"TRAIL"), _ctx(), decompressor_for(kind))
    assert result.data == payload
    assert result.complete
    assert result.consumed == len(blob)
    broken = decompress_stream(BytesSource(blob[:10] + b"\xff" * 40), _ctx(), decompressor_for(kind))
    assert not broken.complete
