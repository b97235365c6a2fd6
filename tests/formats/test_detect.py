"""Detection from content only: real formats, polyglots, hostile bytes, bounded reads."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import pickle
import random
import struct
import tarfile
import time
import zipfile
import zlib
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from weightguard.formats import codes
from weightguard.formats.detect import detect, detection_findings
from weightguard.formats.interface import Confidence, FileFormat
from weightguard.limits import GiB, Limits
from weightguard.sources.interface import ByteSource, BytesSource


def _fmt(data: bytes) -> FileFormat:
    return detect(BytesSource(data), Limits()).format


def _strong(data: bytes) -> list[FileFormat]:
    return [c.format for c in detect(BytesSource(data), Limits()).candidates if c.confidence is not Confidence.POSSIBLE]


def _torch_zip() -> bytes:
    buf = io.BytesIO()
    torch.save({"w": torch.arange(4.0)}, buf)
    return buf.getvalue()


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def test_torch_checkpoints_are_recognised_by_content() -> None:
    assert _fmt(_torch_zip()) is FileFormat.PYTORCH_ZIP
    legacy = io.BytesIO()
    torch.save({"w": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    assert _fmt(legacy.getvalue()) is FileFormat.PYTORCH_LEGACY
    script = io.BytesIO()
    torch.jit.save(torch.jit.script(torch.nn.Linear(1, 1)), script)
    assert _fmt(script.getvalue()) is FileFormat.TORCHSCRIPT


def test_any_root_name_is_a_torch_zip() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("renamed_root/data.pkl", pickle.dumps({}, protocol=2))
    assert _fmt(buf.getvalue()) is FileFormat.PYTORCH_ZIP


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_pickles_of_every_protocol_are_recognised(protocol: int) -> None:
    assert _fmt(pickle.dumps({"a": [1, 2.5, "x"]}, protocol=protocol)) is FileFormat.PICKLE


def test_a_broken_pickle_after_a_valid_start_is_still_a_pickle() -> None:
    # nullifAI: the payload runs before the invalid opcode is reached.
    assert _fmt(b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00trueR\xff\xff") is FileFormat.PICKLE
    assert _fmt(b"cos\nsystem\n(S'true'\ntR\xff") is FileFormat.PICKLE


def test_a_long_protocol_0_pickle_is_not_mistaken_for_text() -> None:
    data = b"(l" + b"I1\na" * 40_000 + b"."
    assert len(data) > 64 * 1024
    assert _fmt(data) is FileFormat.PICKLE


def test_plain_text_json_and_empty_files() -> None:
    assert _fmt(b"Note: this model was trained on...\n") is FileFormat.TEXT
    assert _fmt(json.dumps({"architectures": ["X"]}).encode()) is FileFormat.JSON
    assert _fmt(b"") is FileFormat.EMPTY
    assert _fmt(b"{not json") is FileFormat.TEXT


def test_joblib_numpy_npz_and_keras() -> None:
    import joblib

    buf = io.BytesIO()
    joblib.dump({"a": np.arange(3)}, buf)
    assert _fmt(buf.getvalue()) is FileFormat.JOBLIB
    assert _fmt(b"ZF0x10" + b" " * 15 + zlib.compress(pickle.dumps(1))) is FileFormat.JOBLIB
    assert _fmt(_npy(np.arange(3))) is FileFormat.NUMPY
    for save in (np.savez, np.savez_compressed):
        npz = io.BytesIO()
        save(npz, a=np.arange(3), b=np.ones(2))
        assert _fmt(npz.getvalue()) is FileFormat.NUMPY_NPZ
    keras = io.BytesIO()
    with zipfile.ZipFile(keras, "w") as zf:
        zf.writestr("config.json", "{}")
        zf.writestr("metadata.json", "{}")
        zf.writestr("model.weights.h5", b"")
    assert _fmt(keras.getvalue()) is FileFormat.KERAS


def test_header_formats() -> None:
    import h5py
    import onnx.helper as oh
    from safetensors.torch import save

    assert _fmt(save({"a": torch.zeros(2)})) is FileFormat.SAFETENSORS
    assert _fmt(b"GGUF" + struct.pack("<IQQ", 3, 0, 0)) is FileFormat.GGUF
    graph = oh.make_graph([oh.make_node("Relu", ["x"], ["y"])], "g", [oh.make_tensor_value_info("x", 1, [1])],
                          [oh.make_tensor_value_info("y", 1, [1])])  # fmt: skip
    assert _fmt(oh.make_model(graph).SerializeToString()) is FileFormat.ONNX
    buf = io.BytesIO()
    with h5py.File(buf, "w") as h5:
        h5["x"] = np.arange(3)
    assert _fmt(buf.getvalue()) is FileFormat.HDF5
    assert _fmt(b"\x00" * 512 + buf.getvalue()) is FileFormat.HDF5  # user block


def test_compressors_and_archives() -> None:
    payload = pickle.dumps([1, 2, 3])
    assert _fmt(gzip.compress(payload)) is FileFormat.GZIP
    assert _fmt(bz2.compress(payload)) is FileFormat.BZIP2
    assert _fmt(lzma.compress(payload)) is FileFormat.XZ
    assert _fmt(zlib.compress(payload)) is FileFormat.ZLIB
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as tf:
        info = tarfile.TarInfo("a.pkl")
        info.size = len(payload)
        tf.addfile(info, io.BytesIO(payload))
    assert _fmt(tar.getvalue()) is FileFormat.TAR
    plain = io.BytesIO()
    with zipfile.ZipFile(plain, "w") as zf:
        zf.writestr("readme.txt", "hi")
    assert _fmt(plain.getvalue()) is FileFormat.ZIP
    assert _fmt(b"7z\xbc\xaf\x27\x1c\x00\x04" + b"\x00" * 24) is FileFormat.SEVEN_ZIP
    assert _fmt(bytes(random.Random(1).randbytes(4096))) is FileFormat.UNKNOWN


def test_a_pickle_with_a_zip_appended_is_a_polyglot_with_the_pickle_first() -> None:
    # torch.load sees the pickle (no local header at 0); zip readers see the archive.
    data = pickle.dumps([1, 2, 3], protocol=2) + _torch_zip()
    detection = detect(BytesSource(data), Limits())
    assert _strong(data)[:2] == [FileFormat.PICKLE, FileFormat.PYTORCH_ZIP]
    assert detection.polyglot
    assert [f.code for f in detection_findings(detection, "m.bin")] == [codes.POLYGLOT.code]


def test_an_npy_that_is_also_a_zip_is_a_polyglot() -> None:
    data = _npy(np.arange(3)) + _torch_zip()
    assert _strong(data)[:2] == [FileFormat.NUMPY, FileFormat.PYTORCH_ZIP]


def test_a_safetensors_header_followed_by_a_pickle_names_the_pickle_offset_in_its_evidence() -> None:
    # Not a PICKLE candidate: a pickle analyzer starts at offset 0, which is the header length.
    # The safetensors analyzer reports the stream and analyses it where it sits.
    header = json.dumps({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    data = struct.pack("<Q", len(header)) + header + pickle.dumps({"x": 1}, protocol=2)
    detection = detect(BytesSource(data), Limits())
    assert _strong(data) == [FileFormat.SAFETENSORS]
    assert f"pickle stream starts the data region at offset {8 + len(header)}" in detection.candidates[0].evidence


def test_a_safetensors_header_over_max_header_bytes_is_still_safetensors() -> None:
    from safetensors.numpy import save

    data = save({f"layer.{i}.weight": np.zeros(1, np.float32) for i in range(40)})
    (length,) = struct.unpack_from("<Q", data)
    detection = detect(BytesSource(data), Limits(max_header_bytes=length - 1))
    assert detection.format is FileFormat.SAFETENSORS
    assert "max_header_bytes" in detection.candidates[0].evidence
    garbage = struct.pack("<Q", length) + b"{\x01\x02" + b"\xff" * length
    assert detect(BytesSource(garbage), Limits(max_header_bytes=length - 1)).format is FileFormat.UNKNOWN


def test_a_zip_over_max_archive_members_is_still_a_zip() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(11):
            zf.writestr(f"cfg{i}.json", "{}")
    detection = detect(BytesSource(buf.getvalue()), Limits(max_archive_members=10))
    assert detection.format is FileFormat.ZIP
    assert "max_archive_members" in detection.candidates[0].evidence


def test_a_legacy_lzma_stream_is_recognised_by_its_checked_header() -> None:
    # joblib's "lzma" compressor writes LZMA_alone: no magic, only a plausible 13-byte header.
    payload = pickle.dumps(list(range(100)), protocol=2)
    for preset in (0, 3, 9):
        assert _fmt(lzma.compress(payload, format=lzma.FORMAT_ALONE, preset=preset)) is FileFormat.XZ
    rng = random.Random(5)
    for _ in range(50):
        fake = b"\x5d\x00\x00" + rng.randbytes(200)
        assert _fmt(fake) is not FileFormat.XZ
    header = bytearray(lzma.compress(payload, format=lzma.FORMAT_ALONE))
    header[1:5] = (12345).to_bytes(4, "little")  # no encoder writes such a dictionary size
    assert _fmt(bytes(header)) is not FileFormat.XZ


def test_unknown_content_yields_a_skipped_finding() -> None:
    detection = detect(BytesSource(b"\x01\x02\x03\x04" * 100), Limits())
    assert [f.code for f in detection_findings(detection, "x")] == [codes.UNKNOWN_FORMAT.code]


@pytest.mark.parametrize("seed", range(40))
def test_hostile_bytes_never_raise(seed: int) -> None:
    rng = random.Random(seed)
    bases = [_torch_zip(), pickle.dumps({"a": 1}, protocol=2), _npy(np.arange(4)), gzip.compress(b"x" * 100)]
    data = bytearray(rng.choice(bases))
    for _ in range(rng.randrange(1, 20)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    cut = rng.randrange(len(data) + 1)
    for blob in (bytes(data), bytes(data[:cut]), rng.randbytes(rng.randrange(1, 3000))):
        assert detect(BytesSource(blob), Limits()).candidates


@dataclass
class CountingSource:
    """Wraps a source and counts the bytes read through it."""

    inner: ByteSource
    read: int = 0
    calls: list[tuple[int, int]] = field(default_factory=list)

    @property
    def size(self) -> int:
        return self.inner.size

    def read_at(self, offset: int, length: int) -> bytes:
        data = self.inner.read_at(offset, length)
        self.read += len(data)
        self.calls.append((offset, len(data)))
        return data


@dataclass
class HoleySource:
    """The bytes torch.save wrote, with large writes kept as zero-filled holes (no 1 GB in memory)."""

    pieces: list[tuple[int, bytes | int]]
    total: int

    @property
    def size(self) -> int:
        return self.total

    def read_at(self, offset: int, length: int) -> bytes:
        out = bytearray()
        end = min(self.total, offset + length)
        for start, piece in self.pieces:
            plen = piece if isinstance(piece, int) else len(piece)
            lo, hi = max(offset, start), min(end, start + plen)
            if lo < hi:
                out += bytes(hi - lo) if isinstance(piece, int) else piece[lo - start : hi - start]
        return bytes(out)


class HoleyWriter(io.RawIOBase):
    def __init__(self) -> None:
        self.pieces: list[tuple[int, bytes | int]] = []
        self.pos = 0

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        n = len(b)
        self.pieces.append((self.pos, n if n > 1 << 20 else bytes(b)))
        self.pos += n
        return n


@pytest.mark.slow
def test_detecting_a_1_gib_torch_checkpoint_reads_only_headers() -> None:
    writer = HoleyWriter()
    torch.save({"w": torch.empty(GiB // 4, dtype=torch.float32)}, writer)  # pages never touched: no 1 GiB RSS
    source = CountingSource(HoleySource(writer.pieces, writer.pos))
    assert source.size > GiB
    started = time.perf_counter()
    detection = detect(source, Limits())
    elapsed = time.perf_counter() - started
    assert detection.format is FileFormat.PYTORCH_ZIP
    assert source.read < 256 * 1024, source.calls
    print(
        f"\n1 GiB torch zip: detection {elapsed * 1000:.1f} ms, {source.read} bytes read in {len(source.calls)} reads"
    )
