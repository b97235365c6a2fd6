"""hash_files: one read pass feeds every digest and shard, files are hashed in parallel."""

from __future__ import annotations

import hashlib
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from weightguard.errors import IntegrityError, MissingExtraError
from weightguard.integrity.hashing import CHUNK_BYTES, FileHashes, HashRequest, hash_files
from weightguard.sources.interface import ArtifactFile, BytesSource
from weightguard.sources.local import LocalSource, MappedFile

ALL = frozenset({"sha256", "blake2b", "blake3", "git-sha1"})


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


@dataclass
class CountingSource:
    """A ByteSource that records every read, to prove a file is read exactly once."""

    data: bytes
    reads: int = 0
    bytes_read: int = 0

    @property
    def size(self) -> int:
        return len(self.data)

    def read_at(self, offset: int, length: int) -> bytes:
        self.reads += 1
        chunk = self.data[offset : offset + length]
        self.bytes_read += len(chunk)
        return chunk


@dataclass
class ShortSource:
    """Claims more bytes than it can deliver, like a file truncated while being hashed."""

    claimed: int

    @property
    def size(self) -> int:
        return self.claimed

    def read_at(self, offset: int, length: int) -> bytes:
        return b"x" * max(0, min(length, self.claimed // 2 - offset))


def _blob(n: int, seed: int = 7) -> bytes:
    return np.random.default_rng(seed).bytes(n)


def test_every_requested_digest_comes_from_one_read_pass() -> None:
    data = _blob(3 * CHUNK_BYTES // 2 + 17)
    source = CountingSource(data)
    [(name, hashes)] = hash_files([ArtifactFile("w.bin", len(data), source)], HashRequest(ALL)).items()
    assert name == "w.bin"
    assert source.bytes_read == len(data)
    assert source.reads == 2  # two large chunks, shared by the four hashers
    import blake3

    assert dict(hashes.digests) == {
        "sha256": hashlib.sha256(data).hexdigest(),
        "blake2b": hashlib.blake2b(data).hexdigest(),
        "blake3": blake3.blake3(data).hexdigest(),
        "git-sha1": _git_blob_sha1(data),
    }


def test_git_sha1_is_the_git_blob_id_known_from_git_itself() -> None:
    # `printf 'hello\n' | git hash-object --stdin` prints this id.
    [h] = hash_files([ArtifactFile("a", 6, BytesSource(b"hello\n"))], HashRequest(frozenset({"git-sha1"}))).values()
    assert h.digests["git-sha1"] == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_shards_are_cut_at_multiples_of_the_shard_size_and_the_last_is_shorter() -> None:
    data = _blob(25_088)
    request = HashRequest(frozenset({"sha256", "git-sha1"}), shard_size=8192)
    [h] = hash_files([ArtifactFile("m", len(data), BytesSource(data))], request).values()
    assert [(s.start, s.end, s.algorithm) for s in h.shards] == [
        (0, 8192, "sha256"),
        (8192, 16384, "sha256"),
        (16384, 24576, "sha256"),
        (24576, 25088, "sha256"),
    ]  # no git-sha1 per shard: a blob id names a whole file
    assert [s.hex for s in h.shards] == [hashlib.sha256(data[s.start : s.end]).hexdigest() for s in h.shards]
    assert h.digests["sha256"] == hashlib.sha256(data).hexdigest()


def test_shards_larger_than_a_read_chunk_still_get_one_digest_each() -> None:
    data = _blob(CHUNK_BYTES + CHUNK_BYTES // 2)
    request = HashRequest(frozenset({"blake2b"}), shard_size=CHUNK_BYTES + 100)
    [h] = hash_files([ArtifactFile("m", len(data), BytesSource(data))], request).values()
    assert [(s.start, s.end) for s in h.shards] == [(0, CHUNK_BYTES + 100), (CHUNK_BYTES + 100, len(data))]
    assert h.shards[0].hex == hashlib.blake2b(data[: CHUNK_BYTES + 100]).hexdigest()


def test_an_empty_file_has_whole_file_digests_and_no_shard() -> None:
    [h] = hash_files([ArtifactFile("e", 0, BytesSource(b""))], HashRequest(ALL, shard_size=10)).values()
    assert h == FileHashes("e", 0, h.digests, ())
    assert h.digests["sha256"] == hashlib.sha256(b"").hexdigest()
    assert h.digests["git-sha1"] == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"  # git's empty blob


def test_memory_mapped_files_are_hashed_from_the_map(tmp_path: Path) -> None:
    data = _blob(100_000)
    (tmp_path / "big.bin").write_bytes(data)
    source = MappedFile(tmp_path / "big.bin")
    [h] = hash_files([ArtifactFile("big.bin", source.size, source)], HashRequest()).values()
    assert h.digests == {"sha256": hashlib.sha256(data).hexdigest()}


def test_results_follow_the_input_order_whatever_the_thread_count(tmp_path: Path) -> None:
    rng = random.Random(3)
    for i in range(9):
        (tmp_path / f"f{i}.bin").write_bytes(rng.randbytes(rng.randrange(0, 50_000)))
    files = LocalSource(tmp_path).collect().files
    serial = hash_files(files, HashRequest(), workers=1)
    parallel = hash_files(files, HashRequest(), workers=4)
    assert list(serial) == list(parallel) == [f.relpath for f in files]
    assert serial == parallel
    for f in files:
        assert serial[f.relpath].digests["sha256"] == hashlib.sha256((tmp_path / f.relpath).read_bytes()).hexdigest()


def test_a_file_shorter_than_it_claims_is_an_integrity_error_not_a_wrong_digest() -> None:
    with pytest.raises(IntegrityError, match="short read"):
        hash_files([ArtifactFile("t", 1000, ShortSource(1000))], HashRequest())


def test_a_short_read_in_one_of_several_files_stops_the_parallel_pass() -> None:
    good = [ArtifactFile(f"g{i}", 3 * CHUNK_BYTES, BytesSource(bytes(3 * CHUNK_BYTES))) for i in range(3)]
    with pytest.raises(IntegrityError, match="t: short read"):
        hash_files([*good, ArtifactFile("t", 1000, ShortSource(1000))], HashRequest(), workers=2)


def test_parallel_streams_interleave_chunks_yet_each_digest_is_exact() -> None:
    # 5 files of 2.5 chunks on 2 threads: every file is advanced by both threads in turn.
    blobs = {f"s{i}": _blob(5 * CHUNK_BYTES // 2, seed=i) for i in range(5)}
    files = [ArtifactFile(k, len(v), BytesSource(v)) for k, v in blobs.items()]
    got = hash_files(files, HashRequest(frozenset({"sha256", "blake2b"}), shard_size=CHUNK_BYTES), workers=2)
    for name, data in blobs.items():
        assert got[name].digests["sha256"] == hashlib.sha256(data).hexdigest()
        assert [s.hex for s in got[name].shards if s.algorithm == "blake2b"] == [
            hashlib.blake2b(data[o : o + CHUNK_BYTES]).hexdigest() for o in range(0, len(data), CHUNK_BYTES)
        ]


def test_unknown_algorithms_and_bad_shard_sizes_are_refused() -> None:
    with pytest.raises(IntegrityError, match="md5"):
        HashRequest(frozenset({"md5"}))
    with pytest.raises(IntegrityError, match="shard size"):
        HashRequest(shard_size=0)


def test_the_same_relpath_twice_is_refused() -> None:
    f = ArtifactFile("a", 1, BytesSource(b"x"))
    with pytest.raises(IntegrityError, match="twice"):
        hash_files([f, f], HashRequest())


def test_requests_merge_so_several_consumers_share_one_pass() -> None:
    merged = HashRequest(frozenset({"blake3"})).union(HashRequest(frozenset({"sha256", "git-sha1"}), 8192))
    assert merged == HashRequest(frozenset({"blake3", "sha256", "git-sha1"}), 8192)
    with pytest.raises(IntegrityError, match="shard sizes"):
        HashRequest(shard_size=1).union(HashRequest(shard_size=2))


def test_blake3_without_its_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes `import blake3` raise ImportError, as when the extra is not installed.
    monkeypatch.setitem(sys.modules, "blake3", None)
    with pytest.raises(MissingExtraError) as caught:
        hash_files([ArtifactFile("a", 1, BytesSource(b"x"))], HashRequest(frozenset({"blake3"})))
    assert caught.value.extra == "blake3"
