"""Manifests: what a model's bytes are, in OpenSSF Model Signing (OMS) order.

A :class:`Manifest` maps each file's POSIX relative path to its
:class:`~weightguard.integrity.hashing.FileHashes`. Its resources are listed in
the order model-signing writes them (path components compared as strings,
then shard start and end: ``W.bin``, ``w/part.bin``, ``w-2.bin``, ``w.json``,
``é.txt``), so :func:`oms_root_digest` gives the same root digest as
model-signing 1.1.1. :func:`compare` returns an explicit
:class:`ManifestDiff` (mismatched, missing, extra), never a bool, and
:func:`path_findings` reports names that are unsafe to join to a root.
Names are compared exactly as given: no Unicode normalization, no case folding
(collisions under either are reported, not merged).
Not handled here: hashing (:mod:`weightguard.integrity.hashing`) and what the
policy tolerates (:mod:`weightguard.integrity.pins`).
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from types import MappingProxyType

from weightguard.errors import IntegrityError
from weightguard.findings import Finding
from weightguard.integrity import codes
from weightguard.integrity.hashing import FileHashes

UNKNOWN_SIZE = -1  # the size of a file known only by a pinned digest


def oms_sort_key(path: str, start: int = 0, end: int = 0) -> tuple[tuple[str, ...], int, int]:
    """The key model-signing sorts resources by: ``PurePosixPath`` parts, then shard start and end."""
    return (PurePosixPath(path).parts, start, end)


@dataclass(frozen=True, slots=True)
class Resource:
    """One OMS resource: a file (``name`` = path) or a shard (``name`` = ``path:start:end``)."""

    name: str
    algorithm: str
    digest: str


def oms_root_digest(resources: Iterable[Resource]) -> str:
    """Return the OMS root digest: sha256 over the raw digest bytes, in the order listed.

    Raises:
        IntegrityError: a digest is not hexadecimal.
    """
    root = hashlib.sha256()
    for resource in resources:
        try:
            root.update(bytes.fromhex(resource.digest))
        except ValueError as exc:
            raise IntegrityError(f"resource {resource.name!r} has a non-hex digest") from exc
    return root.hexdigest()


@dataclass(frozen=True, slots=True)
class Manifest:
    """Every file of a model with its digests, iterated in OMS order."""

    entries: Mapping[str, FileHashes]

    @classmethod
    def of(cls, hashes: Mapping[str, FileHashes]) -> Manifest:
        """Build a manifest from :func:`~weightguard.integrity.hashing.hash_files` output."""
        ordered = sorted(hashes.items(), key=lambda item: oms_sort_key(item[0]))
        return cls(MappingProxyType(dict(ordered)))

    @classmethod
    def from_digests(cls, digests: Mapping[str, Mapping[str, str]]) -> Manifest:
        """Build an expected manifest from ``{relpath: {algorithm: hex}}`` (sizes unknown)."""
        return cls.of({p: FileHashes(p, UNKNOWN_SIZE, MappingProxyType(dict(d))) for p, d in digests.items()})

    def files(self, algorithm: str = "sha256") -> tuple[Resource, ...]:
        """The OMS ``files`` resources for ``algorithm``, in OMS order.

        Raises:
            IntegrityError: a file has no digest for ``algorithm``.
        """
        out = []
        for path, hashes in self.entries.items():
            digest = hashes.digests.get(algorithm)
            if digest is None:
                raise IntegrityError(f"no {algorithm} digest was computed for {path}")
            out.append(Resource(path, algorithm, digest))
        return tuple(out)

    def shards(self, algorithm: str = "sha256", shard_size: int | None = None) -> tuple[Resource, ...]:
        """The OMS ``shards`` resources (``path:start:end``, algorithm ``<alg>-sharded-<size>``) in OMS order."""
        items = [
            (oms_sort_key(path, s.start, s.end), f"{path}:{s.start}:{s.end}", s.hex)
            for path, hashes in self.entries.items()
            for s in hashes.shards
            if s.algorithm == algorithm
        ]
        label = f"{algorithm}-sharded-{shard_size}" if shard_size else algorithm
        return tuple(Resource(name, label, digest) for _, name, digest in sorted(items))

    def root_digest(self, algorithm: str = "sha256") -> str:
        """The OMS root digest of the ``files`` resources for ``algorithm``."""
        return oms_root_digest(self.files(algorithm))


@dataclass(frozen=True, slots=True)
class Mismatch:
    """A file whose content differs: ``algorithm`` is a digest name, or ``size``."""

    path: str
    algorithm: str
    expected: str
    actual: str


@dataclass(frozen=True, slots=True)
class ManifestDiff:
    """Exactly what differs between an expected and an actual manifest (paths in OMS order)."""

    mismatched: tuple[Mismatch, ...] = ()
    missing: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    matched: tuple[str, ...] = field(default=())

    @property
    def clean(self) -> bool:
        """True when nothing is mismatched, missing or extra."""
        return not (self.mismatched or self.missing or self.extra)


def compare(expected: Manifest, actual: Manifest) -> ManifestDiff:
    """Compare every digest ``expected`` lists (and sizes known on both sides) with ``actual``.

    Raises:
        IntegrityError: ``actual`` lacks a digest algorithm that ``expected`` uses (a hashing request bug).
    """
    mismatched: list[Mismatch] = []
    matched: list[str] = []
    for path, want in expected.entries.items():
        have = actual.entries.get(path)
        if have is None:
            continue
        before = len(mismatched)
        if UNKNOWN_SIZE not in (want.size, have.size) and want.size != have.size:
            mismatched.append(Mismatch(path, "size", str(want.size), str(have.size)))
        for algorithm, digest in want.digests.items():
            got = have.digests.get(algorithm)
            if got is None:
                raise IntegrityError(f"{path}: {algorithm} was not computed, so the pin cannot be checked")
            if got.lower() != digest.lower():
                mismatched.append(Mismatch(path, algorithm, digest.lower(), got.lower()))
        if len(mismatched) == before:
            matched.append(path)
    missing = tuple(p for p in expected.entries if p not in actual.entries)
    extra = tuple(p for p in actual.entries if p not in expected.entries)
    return ManifestDiff(tuple(mismatched), missing, extra, tuple(matched))


def unsafe_reason(name: str) -> str | None:
    """Why ``name`` cannot safely be joined to a model root, or None when it can."""
    if not name:
        return "empty name"
    if "\x00" in name:
        return "contains NUL"
    if "\\" in name:
        return "contains a backslash (a separator on Windows)"
    if name.startswith("/"):
        return "absolute path"
    parts = name.split("/")
    if ".." in parts:
        return "contains a '..' component"
    if "" in parts or "." in parts:
        return "contains an empty or '.' component"
    return None


def path_findings(names: Iterable[str]) -> list[Finding]:
    """Findings for unsafe, duplicate and case- or Unicode-colliding names (in the order given)."""
    findings: list[Finding] = []
    seen: set[str] = set()
    folded: dict[str, str] = {}
    for name in names:
        if (why := unsafe_reason(name)) is not None:
            findings.append(codes.UNSAFE_PATH.at(name, f"unsafe file name: {why}", reason=why))
        if name in seen:
            findings.append(codes.DUPLICATE_PATH.at(name, "the same name is listed twice"))
            continue
        seen.add(name)
        # Two names equal after NFC + case folding are distinct on Linux but the same file on
        # macOS/Windows: a checkout there would silently keep one of them.
        key = unicodedata.normalize("NFC", name).casefold()
        other = folded.setdefault(key, name)
        if other != name:
            findings.append(
                codes.PATH_COLLISION.at(name, f"differs from {other!r} only by case or Unicode form", other=other)
            )
    return findings
