"""hash_paths: files named by path are read once each, by any of its threads, and agree with hash_files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from weightguard.integrity import path_hashing
from weightguard.integrity.hashing import HashRequest, hash_files
from weightguard.integrity.path_hashing import hash_paths
from weightguard.sources.local import LocalSource

ALL = frozenset({"sha256", "blake2b", "blake3", "git-sha1"})


def files(root: Path, count: int = 70) -> list[Path]:
    """Small files of varied sizes (fixed contents), an empty one among them."""
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        path = root / f"f{i:03d}.bin"
        path.write_bytes(bytes((i * 7 + j) % 251 for j in range(i * 97)))
        out.append(path)
    return out


def expected(root: Path, request: HashRequest) -> dict[str, dict[str, str]]:
    """What hash_files computes over the same files, by path."""
    listing = LocalSource(root).collect()
    hashed = hash_files(listing.files, request)
    return {str(root / rel): dict(h.digests) for rel, h in hashed.items()}


@pytest.mark.parametrize("workers", [1, 2, 4])
@pytest.mark.parametrize("request_", [HashRequest(), HashRequest(ALL), HashRequest(ALL, shard_size=1000)])
def test_digests_agree_with_hash_files_for_every_algorithm_and_thread_count(
    tmp_path: Path, workers: int, request_: HashRequest
) -> None:
    paths = files(tmp_path / "m")
    got = hash_paths([str(p) for p in paths], request_, workers=workers)
    assert {path: dict(h.digests) for path, h in got.items()} == expected(tmp_path / "m", request_)
    assert all(h.size == Path(path).stat().st_size for path, h in got.items())
    if request_.shard_size:  # shards come from the mapped, streamed path, as hash_files makes them
        listing = hash_files(LocalSource(tmp_path / "m").collect().files, request_)
        assert got[str(paths[-1])].shards == listing[paths[-1].name].shards


def test_files_over_the_read_size_are_mapped_and_streamed_instead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = files(tmp_path / "m", 40)
    monkeypatch.setattr(path_hashing, "CHUNK_BYTES", 1000)  # most of the files are now "large"
    got = hash_paths([str(p) for p in paths], HashRequest(ALL), workers=2)
    assert {path: dict(h.digests) for path, h in got.items()} == expected(tmp_path / "m", HashRequest(ALL))


def test_paths_that_are_not_readable_regular_files_are_left_out_for_the_full_listing(tmp_path: Path) -> None:
    good = files(tmp_path / "m", 3)
    fifo = tmp_path / "m" / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "m" / "link"
    link.symlink_to(good[1])
    folder = tmp_path / "m" / "folder"
    folder.mkdir()
    wanted = [str(p) for p in (*good, fifo, link, folder, tmp_path / "m" / "gone")]
    got = hash_paths(wanted, HashRequest(), workers=2)  # a FIFO is never waited on, a link never followed
    assert sorted(got) == sorted(str(p) for p in good)


def test_duplicates_are_read_once_and_nothing_is_nothing(tmp_path: Path) -> None:
    [path] = files(tmp_path / "m", 2)[1:]
    assert hash_paths([str(path), str(path)], HashRequest()).keys() == {str(path)}
    assert hash_paths([], HashRequest(), workers=2) == {}


def test_an_error_in_a_helper_thread_is_raised_in_the_caller(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = files(tmp_path / "m", 80)

    def broken(data: bytes, request: HashRequest) -> dict[str, str]:
        raise RuntimeError("digest failed")

    monkeypatch.setattr(path_hashing, "hex_digests", broken)
    with pytest.raises(RuntimeError, match="digest failed"):
        hash_paths([str(p) for p in paths], HashRequest(), workers=2)
