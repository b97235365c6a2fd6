"""Issue 15: fickling's own warnings never reach stdout, so `--format json`/`sarif` stay one document."""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from weightguard.analysis.pickle_analyzer import _decompile

REPO = Path(__file__).resolve().parents[2]
# PROTO 4, BININT1 1, BININT1 2, STACK_GLOBAL, EMPTY_TUPLE, REDUCE, STOP: STACK_GLOBAL on two ints,
# which fickling reports with a "Warning: malformed pickle file" written to sys.stdout.
INT_STACK_GLOBAL = b"\x80\x04K\x01K\x02\x93)R."


class _Payload:
    def __reduce__(self) -> tuple[object, ...]:
        return (os.system, ("touch PWNED",))


def test_issue_15_fickling_writes_its_malformed_stream_warning_to_stdout_and_weightguard_drops_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    assert _decompile(INT_STACK_GLOBAL) is not None  # the evidence is still produced
    assert (out.getvalue(), err.getvalue()) == ("", "")
    assert sys.stdout is out and sys.stderr is err  # the process's streams are never swapped


def test_decompiling_in_threads_never_swallows_what_other_threads_write(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    threads = [threading.Thread(target=lambda: [_decompile(INT_STACK_GLOBAL) for _ in range(20)]) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(200):
        print(f"line {i}")
    for t in threads:
        t.join()
    assert out.getvalue() == "".join(f"line {i}\n" for i in range(200))


@pytest.mark.parametrize("fmt", ["json", "sarif"])
def test_issue_15_scanning_malicious_pickles_prints_exactly_one_document(tmp_path: Path, fmt: str) -> None:
    (tmp_path / "stack_global.pkl").write_bytes(INT_STACK_GLOBAL)
    (tmp_path / "system.pkl").write_bytes(pickle.dumps({"x": _Payload()}, protocol=4))
    proc = subprocess.run(
        [sys.executable, "-m", "weightguard", "scan", str(tmp_path), "--format", fmt],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 1, proc.stderr
    document, end = json.JSONDecoder().raw_decode(proc.stdout)
    assert proc.stdout[end:].strip() == ""  # nothing before (raw_decode starts at 0) and nothing after
    assert "Warning" not in proc.stdout.split("\n", 1)[0]
    assert document
    assert not (tmp_path / "PWNED").exists()
