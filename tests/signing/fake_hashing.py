"""A small, obviously-correct hasher for the signing tests.

It implements the integrity stage's ``hash_files`` contract shape (per-file
digests and per-shard digests) with plain hashlib/blake3, so the signing
tests do not depend on the integrity stage being present. Tests use the real
``weightguard.integrity.hashing`` when it is importable (see ``hasher()``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from weightguard.signing.local import FileHashesLike, Hasher, default_hasher
from weightguard.sources.interface import ArtifactFile


@dataclass(frozen=True)
class Shard:
    start: int
    end: int
    algorithm: str
    hex: str


@dataclass(frozen=True)
class Hashes:
    digests: Mapping[str, str]
    shards: tuple[Shard, ...]


def _digest(algorithm: str, data: bytes) -> str:
    if algorithm == "blake3":
        import blake3

        return blake3.blake3(data).hexdigest()
    return hashlib.new(algorithm, data).hexdigest()


def simple_hasher(
    files: Sequence[ArtifactFile], algorithm: str, shard_size: int | None
) -> Mapping[str, FileHashesLike]:
    out: dict[str, FileHashesLike] = {}
    for f in files:
        data = f.source.read_at(0, f.source.size)
        shards: list[Shard] = []
        if shard_size:
            for start in range(0, len(data), shard_size):
                end = min(start + shard_size, len(data))
                shards.append(Shard(start, end, algorithm, _digest(algorithm, data[start:end])))
        out[f.relpath] = Hashes({algorithm: _digest(algorithm, data)}, tuple(shards))
    return out


def hasher() -> Hasher:
    """The integrity stage's hasher when it exists, else the simple one."""
    try:
        import weightguard.integrity.hashing  # noqa: F401
    except ImportError:
        return simple_hasher
    return default_hasher
