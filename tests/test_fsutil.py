"""Atomic writes: the whole new file or the old one, never a partial file, with the usual mode."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from weightguard.errors import UsageError
from weightguard.fsutil import replace_atomically, write_atomic


def test_a_written_file_gets_the_usual_mode_not_mkstemps_private_one(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        write_atomic(tmp_path / "report.json", "{}\n")
    finally:
        os.umask(umask)
    assert (tmp_path / "report.json").read_text() == "{}\n"
    assert (tmp_path / "report.json").stat().st_mode & 0o777 == 0o644


def test_a_failure_while_writing_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    (tmp_path / "out.bin").write_bytes(b"old")

    def chunks() -> Iterator[bytes]:
        yield b"new, partial"
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        replace_atomically(tmp_path / "out.bin", chunks())
    assert (tmp_path / "out.bin").read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_an_unwritable_destination_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot write"):
        write_atomic(tmp_path / "missing" / "report.json", "{}")
