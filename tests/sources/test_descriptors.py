"""Issue 15 and 16: files are read through a bounded number of descriptors, never mapped, never via a swapped link."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from weightguard.pipeline import Prepared, VerifyOptions, resolve_target, verify
from weightguard.policy.load import load_builtin
from weightguard.sources.local import MAX_OPEN_FILES, LocalSource

# Never loaded here: a pickle whose load would run os.system.
EVIL = b"\x80\x04cos\nsystem\n(S'touch marker'\ntR."


def _open_descriptors() -> int:
    return sum(1 for _ in Path("/proc/self/fd").iterdir())


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_listing_and_reading_thousands_of_files_holds_a_bounded_number_of_descriptors(tmp_path: Path) -> None:
    """Issue 15: each mapped file kept a descriptor for the whole run ("Too many open files")."""
    for i in range(2000):
        (tmp_path / f"f{i:04d}.json").write_text("{}")
    before = _open_descriptors()
    listing = LocalSource(tmp_path).collect()
    assert _open_descriptors() - before <= 1  # the root folder's descriptor
    assert all(f.source.read_at(0, 2) == b"{}" for f in listing.files)  # nobody closes them
    assert _open_descriptors() - before <= MAX_OPEN_FILES + 1
    assert listing.files[0].source.read_at(0, 2) == b"{}"  # an evicted file is opened again


def test_verify_of_a_folder_of_1500_files_passes_under_a_limit_of_256_descriptors(tmp_path: Path) -> None:
    """Issue 15: a directory of more than ~1,000 files failed with "Too many open files"."""
    model = tmp_path / "model"
    model.mkdir()
    for i in range(1500):
        (model / f"part{i:04d}.json").write_text(f"[{i}]")
    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))\n"
        "from weightguard.pipeline import verify\n"
        "from weightguard.policy.load import load_builtin\n"
        "print(verify(sys.argv[1], load_builtin('default')).verdict)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(model)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "approved"


def _swap_for_link(folder: Path, elsewhere: Path) -> None:
    folder.rename(folder.with_name(folder.name + "-moved"))
    folder.symlink_to(elsewhere, target_is_directory=True)


@pytest.mark.parametrize("level", ["sub", "sub/deep"])
def test_a_folder_swapped_for_a_link_after_listing_is_refused_at_any_level(tmp_path: Path, level: str) -> None:
    """Issue 16: files are opened from the root descriptor with O_NOFOLLOW at every component."""
    model = tmp_path / "model"
    (model / "sub" / "deep").mkdir(parents=True)
    (model / "sub" / "deep" / "w.pkl").write_bytes(b"\x80\x04K\x01.")
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "deep").mkdir(parents=True)
    (elsewhere / "deep" / "w.pkl").write_bytes(EVIL)
    [artifact] = LocalSource(model).collect().files
    # Followed, the link would lead to elsewhere/deep/w.pkl: the malicious pickle.
    _swap_for_link(model / level, elsewhere if level == "sub" else elsewhere / "deep")
    assert artifact.source.read_at(0, 100) == bytes(5)  # zeros, never the link's target
    assert artifact.source.changed  # type: ignore[attr-defined]


def test_verify_blocks_a_model_whose_folder_became_a_link_during_the_run(tmp_path: Path) -> None:
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "sub" / "w.pkl").write_bytes(b"\x80\x04K\x01.")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "w.pkl").write_bytes(EVIL)
    loaded = load_builtin("default")
    resolved = resolve_target(str(model), loaded)
    _swap_for_link(model / "sub", elsewhere)
    report = verify(str(model), loaded, VerifyOptions(), prepared=Prepared(resolved))
    assert report.verdict != "approved"
    assert "WG-SRC-005" in {f.code for f in report.findings}


def test_listing_a_folder_swapped_for_a_link_between_walk_and_open_is_a_finding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "sub" / "w.pkl").write_bytes(b"\x80\x04K\x01.")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "w.pkl").write_bytes(EVIL)
    import weightguard.sources.local as local

    real = local.walk

    def walk_then_swap(top: str):  # noqa: ANN202
        items = list(real(top))
        _swap_for_link(model / "sub", elsewhere)
        yield from items

    monkeypatch.setattr(local, "walk", walk_then_swap)
    listing = LocalSource(model).collect()
    assert listing.files == ()
    assert [f.code for f in listing.findings] == ["WG-SRC-005"]


def test_a_file_that_shrinks_under_a_reader_reads_as_zeros_and_is_marked_changed(tmp_path: Path) -> None:
    """Issue 15: a mapped file truncated under the reader was SIGBUS; analysers rely on a source's length."""
    path = tmp_path / "w.bin"
    path.write_bytes(b"x" * 10_000)
    [artifact] = LocalSource(path).collect().files
    assert artifact.source.read_at(0, 4) == b"xxxx"
    path.write_bytes(b"y" * 100)  # truncated and rewritten through another descriptor
    assert artifact.source.read_at(50, 100) == b"y" * 50 + bytes(50)
    assert "short read" in artifact.source.changed  # type: ignore[attr-defined]
