"""Issue 15 corpus: containers whose member lookup differs between weightguard and the real loaders.

torch's zip reader matches member names ignoring ASCII case (miniz, flags 0);
``tarfile`` (and so torch's legacy loader) returns the last of duplicate names,
accepts v7 headers without ``ustar`` magic and signed header checksums, and
torch takes the tar path whenever ``tarfile`` opens the file. Each malicious
recipe here has a :data:`LOADERS` entry: the Python source a test runs in a
subprocess (``sys.argv[1]`` is the file) to prove that the real loader runs the
payload (it only creates the marker). Nothing here loads anything.
Not handled here: scanning (``tests/corpus/test_threats.py``) and the loader
proofs themselves (``tests/analysis/test_container_loaders.py``).
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import warnings
import zipfile
from collections.abc import Callable
from functools import cache

from tests.corpus import makers
from tests.corpus.malicious import Reduce
from tests.corpus.spec import CaseList, Payload

LOADER_CASES = CaseList("blocked")
LOADER_BENIGN = CaseList("approved")
_ISSUE = "issue 15 (container lookups differ from the real loaders')"
_MTIME = 1_700_000_000

_TORCH_LOAD = "import sys, torch; torch.load(sys.argv[1], weights_only=False)"
# Nested variants: take the inner file out the way a user would, then load it.
_ZIP_THEN_TORCH = (
    "import sys, zipfile, tempfile, os, torch\n"
    "d = tempfile.mkdtemp(); p = zipfile.ZipFile(sys.argv[1]).extract('inner.pt', d)\n"
    "torch.load(p, weights_only=False)"
)
_TAR_THEN_TORCH = (
    "import sys, tarfile, tempfile, os, torch\n"
    "d = tempfile.mkdtemp(); p = os.path.join(d, 'inner.tar')\n"
    "open(p, 'wb').write(tarfile.open(sys.argv[1]).extractfile('inner.tar').read())\n"
    "torch.load(p, weights_only=False)"
)
LOADERS: dict[str, str] = {}


# -- zip: torch finds names ignoring ASCII case ------------------------------------------------


def _payload_pickle(p: Payload) -> bytes:
    return pickle.dumps(Reduce(os.system, p.shell), protocol=2)


@cache
def _torch_zip() -> bytes:
    return makers.save(makers.tiny_state())


def _rebuild(data: bytes, rename: dict[str, str], extra: list[tuple[int, str, bytes]] | None = None) -> bytes:
    """Copy a zip, renaming members, and insert ``(index, name, data)`` entries."""
    with zipfile.ZipFile(io.BytesIO(data)) as zin:
        members = [(rename.get(i.filename, i.filename), zin.read(i.filename)) for i in zin.infolist()]
    for index, name, blob in extra or []:
        members.insert(index, (name, blob))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zout:
        for name, blob in members:
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            zout.writestr(info, blob)
    return out.getvalue()


def _root(data: bytes) -> str:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return zf.namelist()[0].partition("/")[0]


def case_changed_data_pkl(p: Payload) -> bytes:
    """A torch.save zip whose data.pkl is renamed ``DATA.PKL`` and carries the payload."""
    base = _torch_zip()
    root = _root(base)
    renamed = _rebuild(base, {f"{root}/data.pkl": f"{root}/DATA.PKL"})
    with zipfile.ZipFile(io.BytesIO(renamed)) as zf:
        members = [(i.filename, zf.read(i.filename)) for i in zf.infolist()]
    members = [(n, _payload_pickle(p) if n.endswith("DATA.PKL") else b) for n, b in members]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zout:
        for name, blob in members:
            zout.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), blob)
    return out.getvalue()


def case_duplicates(p: Payload) -> bytes:
    """A torch.save zip with a second, malicious ``Data.pkl`` next to the real data.pkl.

    miniz sorts names ignoring case with an unstable heap sort and binary-searches;
    with this order it returns the malicious copy (proved by the loader test).
    """
    base = _torch_zip()
    root = _root(base)
    return _rebuild(base, {}, [(1, f"{root}/Data.pkl", _payload_pickle(p))])


def exact_duplicate(p: Payload) -> bytes:
    """A torch.save zip with a second, malicious ``data.pkl`` of the very same name, second in the archive.

    torch does not read the first of equal names (as was assumed): miniz's sorted
    search returns this one.
    """
    base = _torch_zip()
    root = _root(base)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile's duplicate-name warning is the point
        return _rebuild(base, {}, [(1, f"{root}/data.pkl", _payload_pickle(p))])


# -- tar: the legacy torch format ---------------------------------------------------------------


def _legacy_members(obj_pickle: bytes) -> list[tuple[str, bytes]]:
    storages = pickle.dumps(0, protocol=2) + pickle.dumps([], protocol=2)
    tensors = pickle.dumps(0, protocol=2)
    return [("storages", storages), ("tensors", tensors), ("pickle", obj_pickle)]


def _tar(members: list[tuple[str, bytes]], fmt: int = tarfile.USTAR_FORMAT) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for name, blob in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(blob), _MTIME
            tar.addfile(info, io.BytesIO(blob))
    return out.getvalue()


def _headers(data: bytes) -> list[int]:
    """Offsets of the member headers of a plain (ustar, no long names) tar."""
    offsets: list[int] = []
    at = 0
    while at + 512 <= len(data) and data[at : at + 512].strip(b"\x00"):
        offsets.append(at)
        size = int(data[at + 124 : at + 136].strip(b"\x00 ") or b"0", 8)
        at += 512 + (size + 511) // 512 * 512
    return offsets


def _rechecksum(block: bytearray, *, signed: bool) -> None:
    block[148:156] = b" " * 8
    total = sum(b - 256 if signed and b > 127 else b for b in block)
    block[148:156] = b"%06o\x00 " % total


def _patched(data: bytes, edit: Callable[[bytearray], None], *, signed: bool = False) -> bytes:
    out = bytearray(data)
    for at in _headers(data):
        block = bytearray(out[at : at + 512])
        edit(block)
        _rechecksum(block, signed=signed)
        out[at : at + 512] = block
    return bytes(out)


def duplicate_pickle_tar(p: Payload) -> bytes:
    """A legacy torch tar with two ``pickle`` members: a benign one, then the payload (tarfile reads the last)."""
    members = _legacy_members(pickle.dumps({"a": 1}, protocol=2))
    return _tar([*members, ("pickle", _payload_pickle(p))])


def v7_tar(p: Payload) -> bytes:
    """A legacy torch tar in v7 format (no ``ustar`` magic), payload in ``pickle``."""

    def strip_magic(block: bytearray) -> None:
        block[257:265] = b"\x00" * 8
        block[265:500] = b"\x00" * 235  # v7 has no uname/gname/devices/prefix

    return _patched(_tar(_legacy_members(_payload_pickle(p))), strip_magic)


def signed_checksum_tar(p: Payload) -> bytes:
    """A legacy torch tar whose headers carry high bytes and SIGNED checksums, which tarfile accepts."""

    def high_uname(block: bytearray) -> None:
        block[265:271] = b"\xe9\xe9\xe9\xe9\x00\x00"

    return _patched(_tar(_legacy_members(_payload_pickle(p))), high_uname, signed=True)


def nested_zip(p: Payload) -> bytes:
    """A plain zip holding the case-changed torch checkpoint as ``inner.pt``."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zout:
        zout.writestr(zipfile.ZipInfo("inner.pt", date_time=(2024, 1, 1, 0, 0, 0)), case_changed_data_pkl(p))
    return out.getvalue()


def nested_tar(p: Payload) -> bytes:
    """A tar holding the signed-checksum, duplicate-``pickle`` legacy tar as ``inner.tar``."""
    inner = duplicate_pickle_tar(p)
    return _tar([("inner.tar", inner)])


for _relpath, _build, _code in (
    ("loaders/torch_zip_case_changed_data_pkl.pt", case_changed_data_pkl, _TORCH_LOAD),
    ("loaders/torch_zip_case_duplicate_data_pkl.pt", case_duplicates, _TORCH_LOAD),
    ("loaders/torch_zip_exact_duplicate_data_pkl.pt", exact_duplicate, _TORCH_LOAD),
    ("loaders/legacy_tar_duplicate_pickle.tar", duplicate_pickle_tar, _TORCH_LOAD),
    ("loaders/legacy_tar_v7.tar", v7_tar, _TORCH_LOAD),
    ("loaders/legacy_tar_signed_checksum.tar", signed_checksum_tar, _TORCH_LOAD),
    ("loaders/nested_zip_case_changed.zip", nested_zip, _ZIP_THEN_TORCH),
    ("loaders/nested_tar_duplicate_pickle.tar", nested_tar, _TAR_THEN_TORCH),
):
    LOADER_CASES.case(_relpath, _ISSUE, needs="torch")(_build)
    LOADERS[_relpath] = _code


@LOADER_BENIGN.case("loaders/legacy_tar_v7_benign.tar", f"{_ISSUE}: a plain v7 legacy tar", needs="torch")
def benign_v7_tar(p: Payload) -> bytes:
    """A harmless legacy torch tar in v7 format: still approved."""
    del p

    def strip_magic(block: bytearray) -> None:
        block[257:500] = b"\x00" * 243

    return _patched(_tar(_legacy_members(pickle.dumps({"a": 1}, protocol=2))), strip_magic)


__all__ = ["LOADERS", "LOADER_BENIGN", "LOADER_CASES"]
