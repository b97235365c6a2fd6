"""PyTorch archives: layout, every pickle member, storages against persistent ids, legacy formats."""

from __future__ import annotations

import io
import pickle
import struct
import tarfile
import zipfile
from collections.abc import Iterator

import pytest
import torch

from weightguard.analysis.containers import CompressedAnalyzer, TarAnalyzer, ZipAnalyzer
from weightguard.analysis.interface import Analyzer, DetectedPart, Location, PickleSettings, ScanContext
from weightguard.analysis.numpy_formats import NumpyAnalyzer
from weightguard.analysis.pickle_analyzer import PickleAnalyzer
from weightguard.analysis.torch_formats import LegacyTorchAnalyzer, TorchZipAnalyzer, pickle_strings
from weightguard.findings import Finding, Severity
from weightguard.formats import codes
from weightguard.formats.detect import detect
from weightguard.formats.interface import FileFormat
from weightguard.limits import Limits
from weightguard.sources.interface import ByteSource, BytesSource

_ANALYZERS: tuple[Analyzer, ...] = (
    ZipAnalyzer(), TarAnalyzer(), CompressedAnalyzer(), TorchZipAnalyzer(), LegacyTorchAnalyzer(),
    NumpyAnalyzer(), PickleAnalyzer(),
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


def _scan(data: bytes, analyzer: Analyzer) -> list[Finding]:
    return list(analyzer.analyze(BytesSource(data), Location("model.bin"), _ctx()))


def _torch_zip(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _rezip(data: bytes, drop: set[str] = frozenset(), add: dict[str, bytes] | None = None,  # type: ignore[assignment]
           replace: dict[str, bytes] | None = None) -> bytes:  # fmt: skip
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            if info.filename in drop:
                continue
            dst.writestr(info.filename, (replace or {}).get(info.filename, src.read(info)))
        for name, blob in (add or {}).items():
            dst.writestr(name, blob)
    return out.getvalue()


def _codes(findings: list[Finding]) -> set[str]:
    return {f.code for f in findings}


def _mine(findings: list[Finding]) -> set[str]:
    return {f.code for f in findings if f.code.startswith(("WG-TRC", "WG-ZIP"))}


def test_a_benign_torch_checkpoint_has_no_layout_or_storage_findings() -> None:
    data = _torch_zip({"w": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(2, dtype=torch.int64)})
    findings = _scan(data, TorchZipAnalyzer())
    assert [f for f in findings if f.severity.at_least(Severity.MEDIUM)] == []


def test_torchscript_code_is_reported_and_every_pickle_member_is_analysed() -> None:
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), buf)
    findings = _scan(buf.getvalue(), TorchZipAnalyzer())
    assert codes.TRC_TORCHSCRIPT_CODE.code in _codes(findings)
    assert not _mine(findings) - {codes.TRC_TORCHSCRIPT_CODE.code}


def test_a_missing_storage_record_is_reported() -> None:
    data = _rezip(_torch_zip({"w": torch.ones(3)}), drop={"archive/data/0"})
    assert codes.TRC_MISSING_STORAGE.code in _codes(_scan(data, TorchZipAnalyzer()))


def test_a_storage_whose_size_disagrees_with_numel_is_reported() -> None:
    data = _rezip(_torch_zip({"w": torch.ones(3)}), replace={"archive/data/0": b"\x00" * 8})
    assert codes.TRC_STORAGE_SIZE.code in _codes(_scan(data, TorchZipAnalyzer()))


def test_an_unreferenced_storage_is_reported() -> None:
    data = _rezip(_torch_zip({"w": torch.ones(3)}), add={"archive/data/99": b"hidden"})
    assert codes.TRC_UNREFERENCED_STORAGE.code in _codes(_scan(data, TorchZipAnalyzer()))


def test_a_pickle_outside_the_root_and_an_extra_pickle_are_stray() -> None:
    evil = pickle.dumps({"x": 1}, protocol=2)
    data = _rezip(_torch_zip({"w": torch.ones(3)}), add={"other/data.pkl": evil, "archive/extra.pkl": evil})
    found = _codes(_scan(data, TorchZipAnalyzer()))
    assert {codes.TRC_LAYOUT.code, codes.TRC_STRAY_PICKLE.code} <= found


def test_a_malicious_global_in_a_secondary_pickle_member_is_found() -> None:
    class Boom:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            import os

            return (os.system, ("true",))

    data = _rezip(_torch_zip({"w": torch.ones(3)}), add={"archive/constants.pkl": pickle.dumps(Boom(), protocol=2)})
    findings = _scan(data, TorchZipAnalyzer())
    blocking = [f for f in findings if f.code.startswith("WG-PKL") and f.severity.at_least(Severity.HIGH)]
    assert blocking
    assert all(f.member == "archive/constants.pkl" for f in blocking)


def test_bytes_after_stop_in_data_pkl_are_reported() -> None:
    original = _torch_zip({"w": torch.ones(3)})
    with zipfile.ZipFile(io.BytesIO(original)) as zf:
        pkl = zf.read("archive/data.pkl")
    data = _rezip(original, replace={"archive/data.pkl": pkl + b"\x80\x02N."})
    assert codes.TRC_TRAILING_PICKLE_DATA.code in _codes(_scan(data, TorchZipAnalyzer()))


def _legacy(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=False)
    return buf.getvalue()


def test_a_benign_legacy_checkpoint_walks_all_five_pickles_and_its_storages() -> None:
    data = _legacy({"w": torch.arange(5.0), "i": torch.ones(2, dtype=torch.int32)})
    assert _mine(_scan(data, LegacyTorchAnalyzer())) == set()


def test_extra_bytes_after_legacy_storages_are_reported() -> None:
    data = _legacy({"w": torch.arange(5.0)}) + b"\x80\x02cos\nsystem\n."
    assert codes.TRC_LEGACY_STORAGE.code in _codes(_scan(data, LegacyTorchAnalyzer()))


def test_a_truncated_legacy_checkpoint_is_reported_not_raised() -> None:
    data = _legacy({"w": torch.arange(50.0)})
    for cut in (10, len(data) // 2, len(data) - 4):
        assert _mine(_scan(data[:cut], LegacyTorchAnalyzer()))


def test_a_wrong_magic_number_is_reported() -> None:
    data = _legacy({"w": torch.arange(5.0)})
    stack = pickle.dumps(123, protocol=2) + data[data.index(b".") + 1 :]
    assert codes.TRC_LEGACY_STRUCTURE.code in _codes(_scan(stack, LegacyTorchAnalyzer()))


def _legacy_tar(extra: bytes = b"") -> bytes:
    storages = (
        pickle.dumps(1, protocol=2)
        + pickle.dumps(("0", "cpu", torch.FloatStorage), protocol=2)
        + struct.pack("<q", 3) + b"\x00" * 12
        + pickle.dumps([], protocol=2) + extra
    )  # fmt: skip
    tensors = pickle.dumps(1, protocol=2) + pickle.dumps(("t", "0", torch.FloatTensor), protocol=2)
    tensors += struct.pack("<ii", 1, 0) + struct.pack("<qqq", 3, 1, 0)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, blob in (("sys_info", pickle.dumps({"x": 1}, protocol=2)), ("pickle", pickle.dumps({"a": 1})),
                           ("storages", storages), ("tensors", tensors)):  # fmt: skip
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return buf.getvalue()


def test_the_ancient_tar_format_is_detected_and_walked() -> None:
    data = _legacy_tar()
    assert detect(BytesSource(data), Limits()).format is FileFormat.PYTORCH_LEGACY
    assert _mine(_scan(data, LegacyTorchAnalyzer())) == set()
    assert codes.TRC_LEGACY_STORAGE.code in _codes(_scan(_legacy_tar(b"junk"), LegacyTorchAnalyzer()))


def test_pickle_strings_reads_the_storage_key_list_without_executing() -> None:
    assert pickle_strings(pickle.dumps(["0", "1", "10"], protocol=2)) == ["0", "1", "10"]
    assert pickle_strings(b"\x80\x02\xff") == []


@pytest.mark.parametrize("seed", range(20))
def test_mutated_torch_archives_never_raise(seed: int) -> None:
    import random

    rng = random.Random(seed)
    data = bytearray(_torch_zip({"w": torch.ones(4)}))
    for _ in range(8):
        data[rng.randrange(len(data))] = rng.randrange(256)
    list(TorchZipAnalyzer().analyze(BytesSource(bytes(data)), Location("m"), _ctx()))
    list(LegacyTorchAnalyzer().analyze(BytesSource(bytes(data)), Location("m"), _ctx()))
