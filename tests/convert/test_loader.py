"""Loading only the scanned bytes: the sealed private copy, the approver, the restricted loaders."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from weightguard.convert.loader import load_npz, load_torch, private_copy, sha256_fd  # noqa: E402
from weightguard.errors import ConversionError  # noqa: E402
from weightguard.formats.interface import FileFormat  # noqa: E402
from weightguard.sources.interface import BytesSource  # noqa: E402
from weightguard.sources.local import MappedFile  # noqa: E402


def _checkpoint(**kw: object) -> bytes:
    buf = io.BytesIO()
    torch.save({"w": torch.arange(6.0).reshape(2, 3)}, buf, **kw)
    return buf.getvalue()


def test_the_private_copy_holds_the_exact_bytes_and_their_sha256() -> None:
    data = _checkpoint()
    copy = private_copy(BytesSource(data), "ckpt")
    try:
        source = copy.source()
        assert source.read_at(0, source.size) == data
        assert copy.sha256 == hashlib.sha256(data).hexdigest()
    finally:
        copy.close()


def test_a_file_name_longer_than_the_kernels_label_limit_still_gets_a_private_copy() -> None:
    name = "deeply/nested/" + "checkpoint-shard-" * 20 + ".bin"  # over 249 bytes
    copy = private_copy(BytesSource(b"payload"), name)
    try:
        assert copy.source().read_at(0, 7) == b"payload"
    finally:
        copy.close()


@pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="sealed memfd copies are Linux-only")
def test_the_private_copy_is_sealed_so_nobody_can_change_it_after_the_scan() -> None:
    copy = private_copy(BytesSource(_checkpoint()), "ckpt")
    try:
        assert copy.sealed
        with pytest.raises(PermissionError):
            os.pwrite(copy.fd, b"X", 0)
        with pytest.raises(PermissionError):
            os.ftruncate(copy.fd, 1)
    finally:
        copy.close()


def test_a_copy_from_a_mapped_file_reads_every_byte(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    data = rng.bytes(3 * 2**20 + 11)  # not a multiple of the page size
    (tmp_path / "f").write_bytes(data)
    copy = private_copy(MappedFile(tmp_path / "f"), "f")
    try:
        assert copy.source().read_at(0, len(data)) == data
        assert sha256_fd(copy.fd, copy.size) == hashlib.sha256(data).hexdigest()
    finally:
        copy.close()


@pytest.mark.parametrize("legacy", [False, True])
def test_zip_and_legacy_checkpoints_load_from_the_copy(legacy: bool) -> None:
    data = _checkpoint(_use_new_zipfile_serialization=not legacy)
    copy = private_copy(BytesSource(data), "ckpt")
    try:
        fmt = FileFormat.PYTORCH_LEGACY if legacy else FileFormat.PYTORCH_ZIP
        state = load_torch(copy, fmt)
        assert isinstance(state, dict)
        assert torch.equal(state["w"], torch.arange(6.0).reshape(2, 3))
    finally:
        copy.close()


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_the_restricted_loader_refuses_a_payload_even_if_something_approved_it(tmp_path: Path) -> None:
    # Defence in depth: load_torch is only called after approval, but weights_only=True still stops
    # a global the scan would have missed.
    marker = tmp_path / "PWNED"
    buf = io.BytesIO()
    torch.save({"x": _Payload(marker)}, buf, pickle_module=pickle)
    copy = private_copy(BytesSource(buf.getvalue()), "evil")
    try:
        with pytest.raises(ConversionError, match="restricted loader refused"):
            load_torch(copy, FileFormat.PYTORCH_ZIP)
    finally:
        copy.close()
    assert not marker.exists()


def test_npz_arrays_load_without_pickles_and_object_arrays_are_refused() -> None:
    good = io.BytesIO()
    np.savez(good, a=np.arange(4, dtype=np.int16), big=np.arange(3, dtype=">f4"))
    copy = private_copy(BytesSource(good.getvalue()), "good")
    try:
        arrays = load_npz(copy)
        assert arrays["a"].tolist() == [0, 1, 2, 3]
        assert arrays["big"].dtype == torch.float32 and arrays["big"].tolist() == [0.0, 1.0, 2.0]
    finally:
        copy.close()
    bad = io.BytesIO()
    np.savez(bad, a=np.array([{"k": 1}], dtype=object))
    copy = private_copy(BytesSource(bad.getvalue()), "bad")
    try:
        with pytest.raises(ConversionError, match="without pickles"):
            load_npz(copy)
    finally:
        copy.close()


def test_a_source_that_ends_early_is_an_error_and_leaves_no_copy() -> None:
    class Short(BytesSource):
        @property
        def size(self) -> int:
            return 100

    with pytest.raises(ConversionError, match="ended early"):
        private_copy(Short(b"abc"), "short")


def test_without_memfd_the_copy_is_a_private_file_checked_again_before_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    # justified patch: simulates a platform without memfd_create (macOS) to exercise the fallback copy.
    monkeypatch.delattr(os, "memfd_create")
    data = _checkpoint()
    copy = private_copy(BytesSource(data), "ckpt")
    folder = Path(copy.path).parent
    try:
        assert not copy.sealed
        assert folder.stat().st_mode & 0o777 == 0o700 and Path(copy.path).stat().st_mode & 0o777 == 0o600
        assert torch.equal(load_torch(copy, FileFormat.PYTORCH_ZIP)["w"], torch.arange(6.0).reshape(2, 3))
        os.pwrite(copy.fd, b"\x00", len(data) // 2)  # what a swap after the scan would look like
        with pytest.raises(ConversionError, match="changed after it was scanned"):
            load_torch(copy, FileFormat.PYTORCH_ZIP)
    finally:
        copy.close()
    assert not folder.exists()
