"""Issue 15 false alarms: files that load cleanly and run nothing must be approved.

Python 3.13 pickles name ``pathlib._local`` (built by hand: the suite runs on 3.11), older
ones ``pathlib``; nested jagged tensors saved by ``torch.save`` name three globals torch
registers with ``add_safe_globals``. Where torch accepts a file, ``torch.load(weights_only=True)``
in a subprocess proves it.
"""

from __future__ import annotations

import pickle
import struct
import subprocess
import sys
from pathlib import Path, PosixPath, PurePosixPath, PureWindowsPath

import pytest

from weightguard.analysis.allowlist import ALLOWLIST, is_allowed
from weightguard.api import scan


def su(text: str) -> bytes:
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def path_pickle_313(cls: str, *parts: str, protocol: int = 4) -> bytes:
    """What Python 3.13's ``pickle.dumps(pathlib.<cls>(*parts))`` writes: the class from ``pathlib._local``."""
    args = b"(" + b"".join(su(p) for p in parts) + b"t"
    if protocol >= 4:
        body = su("pathlib._local") + su(cls) + b"\x93" + args + b"R"
        return b"\x80\x04\x95" + struct.pack("<Q", len(body) + 1) + body + b"."
    return b"\x80\x02cpathlib._local\n" + cls.encode() + b"\n" + args + b"R."


@pytest.mark.parametrize("cls", ["PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath"])
@pytest.mark.parametrize("protocol", [2, 4])
def test_issue_15_a_python_3_13_pathlib_pickle_is_approved(tmp_path: Path, cls: str, protocol: int) -> None:
    path = tmp_path / "meta.pkl"
    path.write_bytes(path_pickle_313(cls, "runs", "exp1", "model.bin", protocol=protocol))
    report = scan([path])
    assert report.verdict == "approved", [f.message for f in report.findings]


@pytest.mark.parametrize(
    "value", [PosixPath("/data/runs/exp1"), PurePosixPath("a/b"), PureWindowsPath("C:/models/m.bin")]
)
def test_issue_15_a_pathlib_pickle_of_this_python_is_approved_and_loads(tmp_path: Path, value: object) -> None:
    path = tmp_path / "meta.pkl"
    path.write_bytes(pickle.dumps({"output_dir": value}, protocol=4))
    assert scan([path]).verdict == "approved"
    code = "import pickle, sys; print(pickle.load(open(sys.argv[1], 'rb')))"
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_issue_15_only_the_concrete_pathlib_classes_are_allowed() -> None:
    assert is_allowed("pathlib._local", "PosixPath")
    assert not is_allowed("pathlib._local", "Path.home")
    assert not is_allowed("pathlib._abc", "PathBase")
    assert all(reason for key, reason in ALLOWLIST.items() if key[0].startswith(("pathlib", "torch.nested")))


_NJT = """
import sys, torch
values = [torch.arange(3.0), torch.arange(5.0), torch.ones(2)]
nt = torch.nested.nested_tensor(values, layout=torch.jagged)
torch.save({"nt": nt, "lengths": torch.tensor([3, 5, 2])}, sys.argv[1])
"""
# torch's own message for NJTs: "torch.nested and torch._dynamo must be imported to load nested jagged tensors".
_LOAD = """
import sys, torch, torch.nested, torch._dynamo
from torch._weights_only_unpickler import _get_user_allowed_globals
print(type(torch.load(sys.argv[1], weights_only=True)["nt"]).__name__)
print(" ".join(sorted(_get_user_allowed_globals())))
"""


@pytest.mark.slow
@pytest.mark.torch
def test_issue_15_a_nested_jagged_tensor_checkpoint_is_approved_and_torch_accepts_it(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    path = tmp_path / "njt.pt"
    subprocess.run([sys.executable, "-c", _NJT, str(path)], check=True, timeout=120)
    loaded = subprocess.run([sys.executable, "-c", _LOAD, str(path)], capture_output=True, text=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr
    kind, registered = loaded.stdout.splitlines()
    assert kind == "NestedTensor"
    # Exactly the globals torch.nested / torch._dynamo register with add_safe_globals, nothing more.
    ours = {f"{m}.{q}" for m, q in ALLOWLIST if m.startswith(("torch.nested", "torch._dynamo"))}
    assert ours <= set(registered.split()), ours - set(registered.split())
    report = scan([path])
    assert report.verdict == "approved", [f.message for f in report.findings if f.blocking]
