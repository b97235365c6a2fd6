"""The library reports progress as events, to whoever installed a sink, and to nobody otherwise."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from weightguard.integrity.hashing import CHUNK_BYTES, HashRequest, hash_files
from weightguard.progress import ProgressEvent, emit, reporting
from weightguard.sources.local import LocalSource


class Recorder:
    """A sink that keeps every event (hashing calls it from its worker threads)."""

    def __init__(self) -> None:
        self.events: list[ProgressEvent] = []
        self._lock = threading.Lock()

    def __call__(self, event: ProgressEvent, /) -> None:
        with self._lock:
            self.events.append(event)

    def of(self, task: str) -> list[ProgressEvent]:
        return [e for e in self.events if e.task == task]


@pytest.fixture
def model(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    root.mkdir()
    (root / "big-1.bin").write_bytes(b"\x01" * (2 * CHUNK_BYTES + 12345))  # three chunks
    (root / "big-2.bin").write_bytes(b"\x02" * (CHUNK_BYTES + 1))  # two chunks
    (root / "config.json").write_text('{"a": 1}')
    return root


@pytest.mark.parametrize("workers", [1, 2])
def test_hashing_reports_bytes_done_out_of_the_total_up_to_the_end(model: Path, workers: int) -> None:
    files = LocalSource(model).collect().files
    total = sum(f.size for f in files)
    seen = Recorder()
    with reporting(seen):
        hashes = hash_files(files, HashRequest(), workers=workers)
    events = seen.of("hashing")
    assert {e.unit for e in events} == {"bytes"} and {e.total for e in events} == {total}
    assert events[0].done == 0 and events[-1].done == total and events[-1].finished
    done = [e.done for e in events]
    assert done == sorted(done), "the count never goes back, whichever thread reported it"
    # One event per chunk of each large file and one per small file, each naming its file.
    assert len(events) == 1 + 3 + 2 + 1
    assert {e.item for e in events[1:]} == set(hashes)


def test_digests_reused_from_earlier_are_not_counted_again(model: Path) -> None:
    files = LocalSource(model).collect().files
    known = hash_files(files, HashRequest())
    seen = Recorder()
    with reporting(seen):
        hash_files(files, HashRequest(), known=known)
    assert seen.events == []  # nothing left to read, nothing to report


def test_without_a_sink_nothing_is_reported_and_a_block_leaves_none_behind(model: Path) -> None:
    seen = Recorder()
    with reporting(seen):
        emit("probing", 0, 2, item="p4_weights")
    emit("probing", 1, 2)  # outside the block: goes nowhere
    hash_files(LocalSource(model).collect().files, HashRequest())
    assert seen.events == [ProgressEvent("probing", 0, 2, "items", "p4_weights")]


def test_conversion_reports_the_source_bytes_it_converted(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from weightguard.cli.convert import run_conversion
    from weightguard.policy.load import load_policy

    src = tmp_path / "src"
    src.mkdir()
    torch.save({"w": torch.arange(64.0)}, src / "pytorch_model.bin")
    seen = Recorder()
    with reporting(seen):
        result = run_conversion(str(src), tmp_path / "out", load_policy(None))
    assert result.converted
    size = (src / "pytorch_model.bin").stat().st_size
    events = seen.of("converting")
    assert [(e.done, e.total, e.unit) for e in events] == [(0, size, "bytes"), (size, size, "bytes")]
    assert events[-1].item == "pytorch_model.bin"
