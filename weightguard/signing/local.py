"""Hash the local model the way an OMS signature describes it (files or shards, one algorithm).

The hashing itself is the integrity stage's ``hash_files`` (one read pass per
file); it is injected as a :data:`Hasher` so that tests and the pipeline can
share one pass, and so that this module never opens files by name: it gets
:class:`~weightguard.sources.interface.ArtifactFile` records from the source
stage. Not handled here: deciding which files to hash (the caller filters)
or comparing the result with a signature.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from weightguard.errors import IntegrityError
from weightguard.signing.interface import SerializationMethod
from weightguard.signing.paths import SINGLE_FILE_NAME
from weightguard.sources.interface import ArtifactFile


class ShardLike(Protocol):
    """One shard digest as ``weightguard.integrity.hashing.ShardDigest`` provides it."""

    @property
    def start(self) -> int:
        """First byte of the shard."""
        ...

    @property
    def end(self) -> int:
        """One past the last byte."""
        ...

    @property
    def algorithm(self) -> str:
        """Hash algorithm name."""
        ...

    @property
    def hex(self) -> str:
        """Lowercase hex digest."""
        ...


class FileHashesLike(Protocol):
    """Per-file digests as ``weightguard.integrity.hashing.FileHashes`` provides them."""

    @property
    def digests(self) -> Mapping[str, str]:
        """Algorithm name to lowercase hex digest of the whole file."""
        ...

    @property
    def shards(self) -> Sequence[ShardLike]:
        """Per-shard digests (only when a shard size was requested)."""
        ...


Hasher = Callable[[Sequence[ArtifactFile], str, int | None], Mapping[str, FileHashesLike]]
"""``(files, algorithm, shard_size or None) -> {relpath: digests}``."""


def default_hasher(
    files: Sequence[ArtifactFile], algorithm: str, shard_size: int | None
) -> Mapping[str, FileHashesLike]:
    """Hash with the integrity stage's ``hash_files`` (parallel, one read pass per file).

    Raises:
        IntegrityError: the integrity stage is not available, or hashing failed.
    """
    try:
        from weightguard.integrity.hashing import HashRequest, hash_files  # noqa: PLC0415 - stage built in parallel
    except ImportError as exc:
        raise IntegrityError("weightguard.integrity.hashing is not available to hash the model") from exc
    result: Mapping[str, FileHashesLike] = hash_files(
        files, HashRequest(algorithms=frozenset({algorithm}), shard_size=shard_size)
    )
    return result


def resource_algorithm(method: SerializationMethod, hash_type: str, shard_size: int | None) -> str:
    """The ``algorithm`` field OMS writes for each resource (``sha256`` or ``sha256-sharded-8192``)."""
    if method is SerializationMethod.SHARDS:
        return f"{hash_type}-sharded-{shard_size}"
    return hash_type


def hash_resources(
    files: Sequence[ArtifactFile],
    *,
    method: SerializationMethod,
    hash_type: str,
    shard_size: int | None,
    hasher: Hasher,
    single_file: bool = False,
) -> dict[str, tuple[str, str]]:
    """Return ``{resource name: (algorithm, hex digest)}`` for ``files``.

    Shards are cut at multiples of ``shard_size``; empty files have no shard and so no
    resource in shards mode (as model-signing does). A one-file model's resource is named ``.``.

    Raises:
        IntegrityError: the hasher returned no digest for a file.
    """
    shards = shard_size if method is SerializationMethod.SHARDS else None
    hashed = hasher(files, hash_type, shards)
    algorithm = resource_algorithm(method, hash_type, shard_size)
    out: dict[str, tuple[str, str]] = {}
    for f in files:
        entry = hashed.get(f.relpath)
        name = SINGLE_FILE_NAME if single_file else f.relpath
        if entry is None:
            raise IntegrityError(f"no digest was computed for {f.relpath}")
        if method is SerializationMethod.FILES:
            digest = entry.digests.get(hash_type)
            if digest is None:
                raise IntegrityError(f"no {hash_type} digest was computed for {f.relpath}")
            out[name] = (algorithm, digest.lower())
            continue
        for shard in entry.shards:
            if shard.algorithm == hash_type and shard.end > shard.start:
                out[f"{name}:{shard.start}:{shard.end}"] = (algorithm, shard.hex.lower())
    return out
