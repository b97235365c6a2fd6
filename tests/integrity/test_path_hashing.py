"""hash_paths: files named by path are read once each, hashed by the reader or a hasher thread, and agree with hash_files."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import pytest

from weightguard.integrity import path_hashing
from weightguard.integrity.hashing import HashRequest, hash_files, hex_digests
from weightguard.integrity.path_hashing import hash_paths
from weightguard.sources.local import LocalSource

ALL = frozenset({"sha256", "blake2b", "blake3", "git-sha1"})


def files(root: Path, count: int = 70, *, step: int = 97) -> list[Path]:
    """Files of varied sizes, ``step`` bytes apart (fixed contents), an empty one among them."""
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        path = root / f"f{i:03d}.bin"
        path.write_bytes(bytes((i * 7 + j) % 251 for j in range(i * step)))
        out.append(path)
    return out


def big_files(root: Path) -> list[Path]:
    """Files over SHARED_MIN_BYTES: distinct ones, then copies of each."""
    distinct = files(root / "a", 12, step=path_hashing.SHARED_MIN_BYTES // 4)
    copies = []
    for n in range(3):
        for path in distinct:
            copy = root / f"copy{n}" / path.name
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_bytes(path.read_bytes())
            copies.append(copy)
    return distinct + copies


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


def sha256_of(paths: list[Path]) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_large_and_repeated_contents_get_the_digests_of_their_own_bytes(tmp_path: Path, workers: int) -> None:
    paths = big_files(tmp_path)
    got = hash_paths([str(p) for p in paths], HashRequest(ALL), workers=workers)
    assert {path: h.digests["sha256"] for path, h in got.items()} == sha256_of(paths)
    distinct = expected(tmp_path / "a", HashRequest(ALL))  # every algorithm, as hash_files gives them
    assert all(dict(got[path].digests) == digests for path, digests in distinct.items())


def test_a_repeated_content_is_compared_not_hashed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = big_files(tmp_path)
    hashed: list[int] = []

    def counting(data: bytes, request: HashRequest) -> dict[str, str]:
        hashed.append(len(data))
        return hex_digests(data, request)

    monkeypatch.setattr(path_hashing, "hex_digests", counting)
    got = hash_paths([str(p) for p in paths], HashRequest(), workers=2)
    assert {path: h.digests["sha256"] for path, h in got.items()} == sha256_of(paths)
    large = [p for p in paths if p.stat().st_size >= path_hashing.SHARED_MIN_BYTES]
    # First sighting hashed, second hashed and kept, the third and fourth only compared.
    assert len([n for n in hashed if n >= path_hashing.SHARED_MIN_BYTES]) == len(large) // 2


def test_a_look_alike_with_the_same_size_head_and_tail_is_hashed_for_itself(tmp_path: Path) -> None:
    body = bytes(range(256)) * 200
    paths = []
    for i in range(6):  # same size, head and tail; one byte in the middle differs
        path = tmp_path / f"f{i}.bin"
        middle = bytearray(body)
        middle[len(body) // 2] = i
        path.write_bytes(bytes(middle))
        paths.append(path)
    paths.append(tmp_path / "again.bin")
    paths[-1].write_bytes(paths[2].read_bytes())
    got = hash_paths([str(p) for p in paths], HashRequest(), workers=2)
    assert {path: h.digests["sha256"] for path, h in got.items()} == sha256_of(paths)
    assert len({h.digests["sha256"] for h in got.values()}) == 6


def test_bytes_kept_for_comparing_stay_within_the_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = big_files(tmp_path)
    monkeypatch.setattr(path_hashing, "SHARED_KEEP_BYTES", 3 * path_hashing.SHARED_MIN_BYTES)
    job = path_hashing.PathHashing([str(p) for p in paths], HashRequest(), workers=2)
    got = job.run()
    assert {path: h.digests["sha256"] for path, h in got.items()} == sha256_of(paths)
    assert 0 < job._kept <= 3 * path_hashing.SHARED_MIN_BYTES


def test_an_error_in_a_hasher_thread_is_raised_in_the_caller(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = big_files(tmp_path)

    def broken(data: bytes, request: HashRequest) -> dict[str, str]:
        if threading.current_thread() is threading.main_thread():
            return hex_digests(data, request)
        raise RuntimeError("digest failed")  # only in a hasher thread

    monkeypatch.setattr(path_hashing, "hex_digests", broken)
    with pytest.raises(RuntimeError, match="digest failed"):
        hash_paths([str(p) for p in paths], HashRequest(), workers=2)


def hashers_alive() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "wg-hash"]


def test_no_hasher_thread_outlives_the_call(tmp_path: Path) -> None:
    paths = big_files(tmp_path)
    hash_paths([str(p) for p in paths], HashRequest(), workers=4)
    assert hashers_alive() == []


def test_an_error_in_the_reader_after_hashers_started_stops_them_and_is_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = [p for p in big_files(tmp_path) if p.stat().st_size >= path_hashing.SHARED_MIN_BYTES]
    seen: list[int] = []

    def failing(data: bytes, request: HashRequest) -> dict[str, str]:
        if threading.current_thread() is threading.main_thread():
            seen.append(len(hashers_alive()))
            if len(seen) > path_hashing.HASH_FIRST:  # the reader's own hashing, once hashers run
                raise RuntimeError("reader broke")
        else:
            time.sleep(0.05)  # a slow hasher: the reader soon finds it busy and hashes itself
        return hex_digests(data, request)

    monkeypatch.setattr(path_hashing, "hex_digests", failing)
    with pytest.raises(RuntimeError, match="reader broke"):
        hash_paths([str(p) for p in paths], HashRequest(), workers=2)
    assert seen[-1] == 1  # a hasher was running when the reader failed
    assert hashers_alive() == []


def test_copies_seen_after_a_look_alike_took_the_kept_place_still_get_their_own_digests(tmp_path: Path) -> None:
    body = bytes(range(256)) * 200
    look_alike = bytearray(body)
    look_alike[len(body) // 2] ^= 1
    order = [body, bytes(look_alike), body, body, bytes(look_alike), body]
    paths = []
    for i, content in enumerate(order):
        paths.append(tmp_path / f"f{i}.bin")
        paths[-1].write_bytes(content)
    got = hash_paths([str(p) for p in paths], HashRequest(), workers=2)
    assert {path: h.digests["sha256"] for path, h in got.items()} == sha256_of(paths)
