"""Check a Hugging Face snapshot's files against the Hub's own hashes.

The Hub lists, per file of a commit, its size, its git blob id (``oid``, the
git-sha1 of the content for small files, of the pointer for LFS files) and,
for LFS/Xet files, the content's sha256. :func:`parse_listing` reads either
shape weightguard meets offline: the Hub API's tree JSON (a list of
``{type, path, size, oid, lfs: {oid, size}}``) or huggingface_hub's own tree
cache (``trees/<commit>.json``: ``{"format_version": 1, "files": {path:
{size, blob_id, lfs_sha256, lfs_size}}}``). :func:`check_hub_hashes` compares
the digests of the single hashing pass with that listing: LFS files by
sha256, others by git blob sha1, both by size. The blob names in the cache
are never trusted; only re-computed digests count.
Not handled here: finding the listing or the files (the source stage) and pins.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from weightguard.errors import IntegrityError
from weightguard.findings import Finding
from weightguard.integrity import codes
from weightguard.integrity.hashing import FileHashes, HashRequest
from weightguard.integrity.manifest import path_findings, unsafe_reason

HUB_ALGORITHMS = frozenset({"sha256", "git-sha1"})
_HEX = frozenset("0123456789abcdef")


class ListingError(IntegrityError):
    """A Hub file listing is malformed (reported as a finding by the caller)."""


@dataclass(frozen=True, slots=True)
class HubFile:
    """One file as the Hub lists it for a commit."""

    path: str
    size: int
    blob_id: str
    lfs_sha256: str | None = None

    @property
    def expected(self) -> tuple[str, str]:
        """``(algorithm, hex)`` the content must hash to: LFS sha256, else the git blob sha1."""
        if self.lfs_sha256 is not None:
            return "sha256", self.lfs_sha256
        return "git-sha1", self.blob_id


@dataclass(frozen=True, slots=True)
class HubListing:
    """The Hub's file listing for one commit, and where it was read from."""

    files: Mapping[str, HubFile]
    origin: str


def hub_request(base: HashRequest) -> HashRequest:
    """``base`` plus the digests the Hub check needs, so both come from the same pass."""
    return base.union(HashRequest(HUB_ALGORITHMS))


def _hex(value: object, length: int, what: str) -> str:
    if not isinstance(value, str) or len(value) != length or not set(value.lower()) <= _HEX:
        raise ListingError(f"{what} is not a {length}-digit hex string")
    return value.lower()


def _size(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ListingError(f"{what} is not a non-negative integer")
    return value


def _from_api(items: list[object]) -> list[HubFile]:
    files = []
    for item in items:
        if not isinstance(item, dict):
            raise ListingError("a tree entry is not an object")
        if item.get("type", "file") != "file":
            continue  # folders carry no content
        path = item.get("path")
        if not isinstance(path, str):
            raise ListingError("a tree entry has no string 'path'")
        lfs = item.get("lfs")
        sha = None
        if lfs is not None:
            if not isinstance(lfs, dict):
                raise ListingError(f"{path}: 'lfs' is not an object")
            sha = _hex(lfs.get("oid", lfs.get("sha256")), 64, f"{path}: lfs oid")
        files.append(HubFile(path, _size(item.get("size"), f"{path}: size"), _hex(item.get("oid"), 40, path), sha))
    return files


def _from_tree_cache(entries: object) -> list[HubFile]:
    if not isinstance(entries, dict):
        raise ListingError("'files' is not an object")
    files = []
    for path, info in entries.items():
        if not isinstance(info, dict):
            raise ListingError(f"{path}: entry is not an object")
        raw_sha = info.get("lfs_sha256")
        sha = None if raw_sha is None else _hex(raw_sha, 64, f"{path}: lfs_sha256")
        blob = _hex(info.get("blob_id"), 40, f"{path}: blob_id")
        files.append(HubFile(str(path), _size(info.get("size"), f"{path}: size"), blob, sha))
    return files


def parse_listing(data: bytes, origin: str) -> HubListing:
    """Parse a saved Hub listing (API tree JSON or huggingface_hub tree cache).

    Raises:
        ListingError: the bytes are not a listing weightguard understands, or a path is listed twice.
    """
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ListingError(f"{origin}: not JSON ({exc})") from exc
    if isinstance(doc, list):
        files = _from_api(doc)
    elif isinstance(doc, dict) and doc.get("format_version") == 1:
        files = _from_tree_cache(doc.get("files"))
    else:
        raise ListingError(f"{origin}: neither a Hub tree list nor a tree cache (format_version 1)")
    by_path: dict[str, HubFile] = {}
    for f in files:
        if f.path in by_path:
            raise ListingError(f"{origin}: {f.path!r} is listed twice")
        by_path[f.path] = f
    return HubListing(MappingProxyType(by_path), origin)


def check_hub_hashes(listing: HubListing, hashes: Mapping[str, FileHashes]) -> list[Finding]:
    """Compare re-computed digests with the Hub's listing.

    Args:
        listing: The Hub's files for the commit.
        hashes: ``{repo path: FileHashes}`` from a pass that included :data:`HUB_ALGORITHMS`.

    Returns:
        Mismatch, missing and unlisted-file findings (and unsafe names in the listing).

    Raises:
        IntegrityError: ``hashes`` lacks a digest the check needs (a hashing request bug).
    """
    findings = [f for f in path_findings(listing.files) if f.code == codes.UNSAFE_PATH.code]
    for path, hub in listing.files.items():
        if unsafe_reason(path) is not None:
            continue
        have = hashes.get(path)
        if have is None:
            findings.append(codes.HUB_FILE_MISSING.at(path, "listed by the Hub but absent from the snapshot"))
            continue
        algorithm, want = hub.expected
        got = have.digests.get(algorithm)
        if got is None:
            raise IntegrityError(f"{path}: {algorithm} was not computed; use hub_request() for the hashing pass")
        if have.size != hub.size:
            findings.append(
                codes.HUB_HASH_MISMATCH.at(
                    path,
                    "size differs from the Hub's listing",
                    expected=hub.size,
                    actual=have.size,
                    origin=listing.origin,
                )
            )
        elif got != want:
            findings.append(
                codes.HUB_HASH_MISMATCH.at(
                    path,
                    f"content does not match the Hub's {algorithm}",
                    algorithm=algorithm,
                    expected=want,
                    actual=got,
                    origin=listing.origin,
                )
            )
    for path in hashes:
        if path not in listing.files:
            findings.append(codes.HUB_FILE_UNLISTED.at(path, "present in the snapshot, absent from the Hub's listing"))
    return findings
