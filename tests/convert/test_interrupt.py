"""Issue 16: a conversion stopped by SIGTERM/SIGINT leaves no staging folder; stale ones are swept."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from weightguard.convert.publish import OWNER_MARKER, STAGING_PREFIX, make_staging, sweep_stale_staging

torch = pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[2]


def _checkpoint(folder: Path) -> None:
    # Big enough (32 MiB) that the conversion is still running when the staging folder appears.
    folder.mkdir()
    torch.manual_seed(0)
    torch.save({f"layer.{i}.weight": torch.randn(256 * 1024) for i in range(32)}, folder / "pytorch_model.bin")


def _staging_folders(parent: Path) -> list[Path]:
    return sorted(parent.glob(f"{STAGING_PREFIX}*"))


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_issue_16_a_signal_mid_conversion_removes_the_staging_folder(tmp_path: Path, signum: signal.Signals) -> None:
    src, parent = tmp_path / "src", tmp_path / "parent"
    _checkpoint(src)
    parent.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "weightguard", "convert", str(src), "-o", str(parent / "out")],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not any((f / OWNER_MARKER).exists() for f in _staging_folders(parent)):
            assert proc.poll() is None, f"conversion ended before it was interrupted: {proc.communicate()}"
            assert time.monotonic() < deadline, "no staging folder appeared"
            time.sleep(0.005)
        proc.send_signal(signum)
        _out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signum, err
    assert f"{signum.name} received" in err
    assert _staging_folders(parent) == []
    assert not (parent / "out").exists()


def _marker(parent: Path, name: str, owner: object) -> Path:
    folder = parent / f"{STAGING_PREFIX}{name}"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"half-written")
    if owner is not None:
        (folder / OWNER_MARKER).write_text(json.dumps(owner))
    return folder


def _boot() -> str:
    return (
        Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        if Path("/proc/sys/kernel/random/boot_id").exists()
        else ""
    )


def test_issue_16_only_staging_folders_provably_left_by_a_dead_run_are_swept(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid now names no process
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    here = socket.gethostname()
    try:
        stale = _marker(tmp_path, "dead", {"host": here, "boot": _boot(), "pid": dead.pid})
        rebooted = _marker(tmp_path, "rebooted", {"host": here, "boot": "an-earlier-boot", "pid": alive.pid})
        running = _marker(tmp_path, "running", {"host": here, "boot": _boot(), "pid": alive.pid})
        elsewhere = _marker(tmp_path, "elsewhere", {"host": here + "-other", "boot": _boot(), "pid": dead.pid})
        unmarked = _marker(tmp_path, "unmarked", None)
        garbled = _marker(tmp_path, "garbled", ["not", "an", "owner"])
        not_ours = tmp_path / "my-data"
        not_ours.mkdir()
        removed = sweep_stale_staging(tmp_path)
    finally:
        alive.kill()
        alive.wait()
    # Without boot ids (not Linux) only a missing pid proves a run dead, so the rebooted one stays.
    assert sorted(removed) == sorted([stale, rebooted] if _boot() else [stale])
    assert not stale.exists()
    for kept in (running, elsewhere, unmarked, garbled, not_ours, *([] if _boot() else [rebooted])):
        assert kept.exists(), kept


def test_a_new_conversion_sweeps_stale_staging_beside_its_output_and_marks_its_own(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = _marker(tmp_path, "dead", {"host": socket.gethostname(), "boot": _boot(), "pid": dead.pid})
    holder, staging, fresh = make_staging(tmp_path / "out", ["model.safetensors"])
    assert fresh
    assert not stale.exists()
    owner = json.loads((holder / OWNER_MARKER).read_text())
    assert owner["pid"] == os.getpid()
    assert staging.parent == holder  # the marker is never among the staged (published) files
    assert OWNER_MARKER not in [p.name for p in staging.iterdir()]


def test_staging_inside_a_folder_with_files_keeps_the_marker_out_of_the_published_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "README.md").write_text("kept")
    holder, staging, fresh = make_staging(out, ["model.safetensors"])
    assert not fresh
    assert (holder / OWNER_MARKER).is_file()
    assert staging != holder
    assert list(staging.iterdir()) == []
