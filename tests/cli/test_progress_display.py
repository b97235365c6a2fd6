"""The progress display: bars on a terminal's stderr, nothing when stderr is not one or with --quiet.

Each run is a real ``python -m weightguard`` process whose stderr is either a
pseudo-terminal (the ``pty`` module) or a pipe, with stdout always a pipe, so
what a user sees and what a script captures are both checked: the report on
stdout is byte for byte the same either way.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from weightguard.integrity.hashing import CHUNK_BYTES

REPO = Path(__file__).resolve().parents[2]
BAR = "━".encode()  # rich's bar segment


@dataclass(frozen=True)
class Run:
    code: int
    stdout: bytes
    stderr: bytes


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "COLUMNS")}
    return {**env, "TERM": "xterm-256color", "PYTHONPATH": str(REPO)}


def run(*args: str, tty: bool) -> Run:
    """Run the CLI with stderr on a pseudo-terminal (``tty``) or a pipe; stdout is always a pipe."""
    command = [sys.executable, "-m", "weightguard", *args]
    if not tty:
        done = subprocess.run(command, capture_output=True, env=_env(), cwd=REPO, timeout=120, check=False)
        return Run(done.returncode, done.stdout, done.stderr)
    leader, follower = pty.openpty()
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=follower, env=_env(), cwd=REPO) as proc:
        os.close(follower)
        seen = bytearray()
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not data:
                break
            seen += data
        os.close(leader)
        assert proc.stdout is not None
        out = proc.stdout.read()
        code = proc.wait(timeout=120)
    return Run(code, out, bytes(seen))


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("progress") / "model"
    root.mkdir()
    header = json.dumps({"w": {"dtype": "U8", "shape": [3 * CHUNK_BYTES], "data_offsets": [0, 3 * CHUNK_BYTES]}})
    padded = header.encode() + b" " * (-len(header) % 8)
    with (root / "model.safetensors").open("wb") as out:
        out.write(len(padded).to_bytes(8, "little") + padded)
        out.write(bytes(3 * CHUNK_BYTES))
    (root / "config.json").write_text('{"model_type": "bert"}')
    return root


def test_hash_on_a_terminal_draws_a_bar_on_stderr_and_leaves_stdout_alone(model: Path) -> None:
    shown = run("hash", str(model), tty=True)
    piped = run("hash", str(model), tty=False)
    assert shown.code == piped.code == 0
    assert BAR in shown.stderr and b"hashing" in shown.stderr and b"MB" in shown.stderr
    assert shown.stdout == piped.stdout and b"\x1b" not in shown.stdout
    assert BAR not in piped.stderr and b"hashing" not in piped.stderr


def test_quiet_turns_the_display_off_on_a_terminal(model: Path) -> None:
    quiet = run("hash", str(model), "--quiet", tty=True)
    assert quiet.code == 0
    assert BAR not in quiet.stderr and b"hashing" not in quiet.stderr
    assert quiet.stdout == run("hash", str(model), tty=False).stdout


def test_verify_shows_its_stages_and_hashing_while_the_json_report_stays_clean(model: Path) -> None:
    shown = run("verify", str(model), "--format", "json", tty=True)
    assert shown.code == 0
    assert BAR in shown.stderr and b"hashing" in shown.stderr and b"analysing model.safetensors" in shown.stderr
    report = json.loads(shown.stdout)  # nothing but the report on stdout
    assert report["verdict"] == "approved"
    quiet = run("verify", str(model), "--format", "json", "-q", tty=True)
    assert BAR not in quiet.stderr and b"analysing" not in quiet.stderr
    assert json.loads(quiet.stdout)["subject"] == report["subject"]


def test_verify_many_draws_its_phases_unless_quiet(model: Path, tmp_path: Path) -> None:
    catalogue = tmp_path / "catalogue.txt"
    catalogue.write_text(f"{model}\n")

    def many(name: str, *extra: str) -> Run:
        database = f"sqlite:///{tmp_path}/{name}.db"  # a fresh cache each: both runs do the work
        return run(
            "verify-many", str(catalogue), "--database", database, "--workers", "1", "-f", "json", *extra, tty=True
        )

    shown, quiet = many("shown"), many("quiet", "--quiet")
    assert shown.code == quiet.code == 0
    assert BAR in shown.stderr and b"judging" in shown.stderr and b"hashing" in shown.stderr
    assert BAR not in quiet.stderr and b"judging" not in quiet.stderr
    counts = {"approved": 1, "rejected": 0, "incomplete": 0}
    assert json.loads(shown.stdout)["counts"] == json.loads(quiet.stdout)["counts"] == counts
