"""The integrity section of the JSON report (pydantic, part of the report contract).

It lists every file with its size and digest in OMS order, the OMS root
digest, and exactly what differs from the pins (mismatched, missing, extra,
and what the policy tolerated). For ``hf://`` targets it also names the
requested revision and the commit that was read. Not handled here: findings
(they go to the report's findings list like every stage's) and rendering.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from weightguard.policy.base import StrictModel

if TYPE_CHECKING:
    # Only from_outcome's signature names it: the report model (loaded by every command that
    # builds a report) does not need the hashing and pinning machinery behind it.
    from weightguard.integrity.pins import IntegrityOutcome


class FileDigest(StrictModel):
    """One file of the manifest."""

    path: str
    size: int
    sha256: str | None = None
    digest: str = Field(description="The digest in the manifest's algorithm (lowercase hex).")


class DigestMismatch(StrictModel):
    """A file whose digest (or size) differs from the pin."""

    path: str
    algorithm: str
    expected: str
    actual: str


class HubSource(StrictModel):
    """Where an ``hf://`` target came from."""

    repo_id: str
    requested_revision: str
    commit: str
    files_checked: int = 0
    listing: str = Field(default="", description="Where the Hub listing came from (hub, tree cache, file).")


class IntegrityReport(StrictModel):
    """What the bytes are and how they compare with the pins."""

    algorithm: str
    root_digest: str = Field(description="OMS root digest: sha256 over the files' digests in OMS order.")
    files: list[FileDigest]
    pinned: bool = Field(description="Whether the policy pins digests (without pins nothing is compared).")
    mismatched: list[DigestMismatch] = Field(default_factory=list)
    missing: list[str] = Field(default_factory=list)
    extra: list[str] = Field(default_factory=list)
    tolerated_extra: list[str] = Field(default_factory=list)
    tolerated_missing: list[str] = Field(default_factory=list)
    hub: HubSource | None = None

    @classmethod
    def from_outcome(cls, outcome: IntegrityOutcome, algorithm: str, hub: HubSource | None = None) -> IntegrityReport:
        """Build the section from the integrity stage's outcome.

        Raises:
            IntegrityError: a file lacks a digest in ``algorithm``.
        """
        manifest = outcome.manifest
        resources = manifest.files(algorithm)
        files = []
        for r in resources:
            entry = manifest.entries[r.name]
            files.append(FileDigest(path=r.name, size=entry.size, sha256=entry.digests.get("sha256"), digest=r.digest))
        return cls(
            algorithm=algorithm,
            root_digest=manifest.root_digest(algorithm),
            files=files,
            pinned=outcome.pinned,
            mismatched=[
                DigestMismatch(path=m.path, algorithm=m.algorithm, expected=m.expected, actual=m.actual)
                for m in outcome.diff.mismatched
            ],
            missing=list(outcome.diff.missing),
            extra=list(outcome.diff.extra),
            tolerated_extra=list(outcome.tolerated_extra),
            tolerated_missing=list(outcome.tolerated_missing),
            hub=hub,
        )
