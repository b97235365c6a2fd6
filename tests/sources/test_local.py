"""Local targets: regular files are collected in POSIX order; links and special files never pass silently."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from weightguard.errors import SourceError
from weightguard.sources.local import LocalSource, MappedFile, NotRegularFileError, plain_files


def test_directories_are_walked_recursively_in_component_order(tmp_path: Path) -> None:
    for rel in ("w.json", "w/part.bin", "w-2.bin", "W.bin"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(rel.encode())
    listing = LocalSource(tmp_path).collect()
    assert [f.relpath for f in listing.files] == ["W.bin", "w/part.bin", "w-2.bin", "w.json"]
    assert listing.files[1].source.read_at(0, 100) == b"w/part.bin"


def test_a_single_file_target_is_its_own_listing(tmp_path: Path) -> None:
    (tmp_path / "m.bin").write_bytes(b"abc")
    listing = LocalSource(tmp_path / "m.bin").collect()
    assert [(f.relpath, f.size) for f in listing.files] == [("m.bin", 3)]


def test_empty_files_are_collected(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    [f] = LocalSource(tmp_path).collect().files
    assert (f.size, f.source.read_at(0, 10)) == (0, b"")


def test_symlinks_are_refused_by_default(tmp_path: Path) -> None:
    (tmp_path / "real.bin").write_bytes(b"x")
    (tmp_path / "link.bin").symlink_to("real.bin")
    listing = LocalSource(tmp_path).collect()
    assert [f.relpath for f in listing.files] == ["real.bin"]
    assert [(f.code, f.path) for f in listing.findings] == [("WG-SRC-001", "link.bin")]


def test_symlinks_inside_the_root_may_be_allowed(tmp_path: Path) -> None:
    (tmp_path / "real.bin").write_bytes(b"x")
    (tmp_path / "link.bin").symlink_to("real.bin")
    listing = LocalSource(tmp_path, allow_symlinks=True).collect()
    assert [f.relpath for f in listing.files] == ["link.bin", "real.bin"]
    assert listing.findings == ()


def test_symlinks_escaping_the_root_are_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    model = tmp_path / "model"
    model.mkdir()
    (model / "escape").symlink_to(outside)
    (model / "dirlink").symlink_to(tmp_path, target_is_directory=True)
    listing = LocalSource(model, allow_symlinks=True).collect()
    assert listing.files == ()
    assert sorted(f.code for f in listing.findings) == ["WG-SRC-002", "WG-SRC-002"]


def test_special_files_are_skipped_with_a_finding(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    listing = LocalSource(tmp_path).collect()
    assert [f.code for f in listing.findings] == ["WG-SRC-003"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read files without permission")
def test_unreadable_files_are_errors_not_empty_files(tmp_path: Path) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"x")
    secret.chmod(0)
    listing = LocalSource(tmp_path).collect()
    assert listing.files == ()
    assert [f.code for f in listing.findings] == ["WG-SRC-004"]


def test_a_missing_target_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such file"):
        LocalSource(tmp_path / "nope").collect()


def test_mapping_refuses_a_fifo_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "weights.bin"
    os.mkfifo(fifo)
    # A plain open() of a FIFO blocks until someone writes; the mapping must answer at once.
    with pytest.raises(NotRegularFileError):
        MappedFile(fifo)


def test_mapping_never_follows_a_final_symlink(tmp_path: Path) -> None:
    (tmp_path / "real.bin").write_bytes(b"x")
    (tmp_path / "link.bin").symlink_to(tmp_path / "real.bin")
    with pytest.raises(OSError) as caught:
        MappedFile(tmp_path / "link.bin")
    assert caught.value.errno == errno.ELOOP


def test_a_plain_folder_is_listed_in_the_order_collect_gives(tmp_path: Path) -> None:
    for rel in ("w.json", "w/part.bin", "w-2.bin", "W.bin", "w/deep/x.bin"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(rel.encode())
    listed = plain_files(str(tmp_path))
    assert listed is not None
    assert [rel for rel, _ in listed] == [f.relpath for f in LocalSource(tmp_path).collect().files]
    assert all(entry.path == str(tmp_path / rel) for rel, entry in listed)


@pytest.mark.parametrize("oddity", ["link", "fifo", "dir-link", "unlistable"])
def test_a_folder_with_anything_but_regular_files_and_folders_is_not_plain(tmp_path: Path, oddity: str) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.bin").write_bytes(b"a")
    if oddity == "link":
        (tmp_path / "sub" / "b.bin").symlink_to("a.bin")
    elif oddity == "fifo":
        os.mkfifo(tmp_path / "sub" / "pipe")
    elif oddity == "dir-link":
        (tmp_path / "elsewhere").symlink_to("sub")
    else:
        if os.geteuid() == 0:
            pytest.skip("root can list folders without permission")
        (tmp_path / "sub").chmod(0)
    try:
        assert plain_files(str(tmp_path)) is None
    finally:
        (tmp_path / "sub").chmod(0o755)


def test_only_a_real_directory_can_be_a_plain_folder(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "a.bin").write_bytes(b"a")
    (tmp_path / "alias").symlink_to("real")
    assert plain_files(str(tmp_path / "alias")) is None
    assert plain_files(str(tmp_path / "real" / "a.bin")) is None
    assert plain_files(str(tmp_path / "missing")) is None
    assert plain_files(str(tmp_path / "real")) is not None


def test_a_link_to_a_folder_is_walked_and_a_dangling_or_file_link_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "a.bin").write_bytes(b"a")
    (tmp_path / "alias").symlink_to("real")
    assert [f.relpath for f in LocalSource(tmp_path / "alias").collect().files] == ["a.bin"]
    (tmp_path / "file-link").symlink_to(tmp_path / "real" / "a.bin")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    for name in ("file-link", "dangling"):
        with pytest.raises(SourceError, match="not a regular file or directory"):
            LocalSource(tmp_path / name).collect()
