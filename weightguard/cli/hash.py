"""``weightguard hash``: print a model's manifest in OMS order and its OMS root digest.

A target is a local file or directory, or ``hf://org/name@REVISION``. For an
hf:// target the same single hashing pass also checks every file against the
Hub's own hashes. The manifest goes to stdout (text like ``sha256sum`` or
JSON); findings go to stderr. Exit 0 when nothing of medium severity or worse
was found, 1 otherwise, 2 when the job could not complete.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import typer

from weightguard.cli.common import POLICY_OPTION, err, fail
from weightguard.cli.progress import QUIET_OPTION, progress_display, wanted
from weightguard.errors import EXIT_BLOCKED, EXIT_INCOMPLETE, EXIT_OK, WeightguardError
from weightguard.findings import Finding, RuleKind, Severity

if TYPE_CHECKING:
    # Imported where a target is hashed: ``--help`` and completion load this module and need none of it.
    from weightguard.integrity.manifest import Manifest
    from weightguard.policy.sections.integrity import IntegritySpec
    from weightguard.sources.interface import ArtifactFile


class Algorithm(StrEnum):
    """Manifest digests offered on the command line."""

    SHA256 = "sha256"
    BLAKE3 = "blake3"


class ManifestFormat(StrEnum):
    """Output formats of ``hash``."""

    TEXT = "text"
    JSON = "json"


ALGORITHM_OPTION = typer.Option(None, "--algorithm", "-a", help="Digest (default: the policy's, sha256).")
LISTING_OPTION = typer.Option(None, "--hub-listing", help="Saved Hub tree listing (JSON) for hf:// targets offline.")
_FORMAT_OPTION = typer.Option(ManifestFormat.TEXT, "--format", "-f", help="Output format.")


@dataclass(frozen=True, slots=True)
class HashedTarget:
    """A target's manifest, the commit it was read at (hf:// only) and what was found on the way."""

    uri: str
    manifest: Manifest
    findings: tuple[Finding, ...]
    commit: str | None = None

    @property
    def exit_code(self) -> int:
        """2 when something was not read or checked, 1 for a finding of medium severity or worse, else 0."""
        if any(f.kind is not RuleKind.FINDING for f in self.findings):
            return EXIT_INCOMPLETE
        if any(f.severity.at_least(Severity.MEDIUM) for f in self.findings):
            return EXIT_BLOCKED
        return EXIT_OK


def hash_target(
    target: str, spec: IntegritySpec, algorithm: str, listing: Path | None = None, *, exclude: Sequence[str] = ()
) -> HashedTarget:
    """Collect ``target`` and hash every file once (adding the Hub check for hf:// targets).

    Files at or under an ``exclude`` path (relative, POSIX) are left out before hashing.

    Raises:
        WeightguardError: the target cannot be read or hashed.
    """
    from weightguard.integrity.hashing import HashRequest, hash_files
    from weightguard.integrity.hub import check_hub_hashes, hub_request
    from weightguard.integrity.manifest import Manifest, path_findings
    from weightguard.sources.hf_snapshot import HF_SCHEME, HfSnapshotSource
    from weightguard.sources.local import LocalSource

    request = HashRequest(frozenset({algorithm}))
    if target.startswith(HF_SCHEME):
        source = HfSnapshotSource(
            target,
            require_commit=spec.require_pinned_revision,
            offline=spec.hf.offline,
            allow_missing_listing=spec.hf.allow_missing_listing,
            listing_path=listing,
        )
        snapshot = source.resolve()
        hashes = hash_files(_kept(snapshot.listing.files, exclude), hub_request(request))
        found = [*snapshot.listing.findings, *snapshot.hub_findings]
        if snapshot.hub is not None:
            found += check_hub_hashes(snapshot.hub, hashes)
        found += path_findings(hashes)
        return HashedTarget(target, Manifest.of(hashes), tuple(found), snapshot.commit or None)
    collected = LocalSource(Path(target), allow_symlinks=spec.allow_symlinks_inside).collect()
    hashes = hash_files(_kept(collected.files, exclude), request)
    return HashedTarget(target, Manifest.of(hashes), (*collected.findings, *path_findings(hashes)))


def _kept(files: Sequence[ArtifactFile], exclude: Sequence[str]) -> list[ArtifactFile]:
    cut = [PurePosixPath(p).parts for p in exclude]
    return [f for f in files if not any(PurePosixPath(f.relpath).parts[: len(c)] == c for c in cut)]


def report_findings(findings: tuple[Finding, ...]) -> None:
    """Print findings for people on stderr."""
    for f in findings:
        err(f"{f.severity.value.upper():8} {f.code} {f.location}: {f.message}")


def render_manifest(hashed: HashedTarget, algorithm: str, fmt: ManifestFormat) -> str:
    """The manifest as ``<digest>  <path>`` lines plus the root digest, or as JSON."""
    resources = hashed.manifest.files(algorithm)
    root = hashed.manifest.root_digest(algorithm)
    if fmt is ManifestFormat.JSON:
        doc = {
            "target": hashed.uri,
            "commit": hashed.commit,
            "algorithm": algorithm,
            "root_digest": root,
            "files": [
                {"path": r.name, "size": hashed.manifest.entries[r.name].size, "digest": r.digest} for r in resources
            ],
            "findings": [{"code": f.code, "severity": f.severity.value, "path": f.path} for f in hashed.findings],
        }
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    lines = [f"{r.digest}  {r.name}" for r in resources]
    lines.append(f"{root}  (OMS root digest, sha256 over the {algorithm} digests in OMS order)")
    return "\n".join(lines) + "\n"


def load_spec(policy: list[Path]) -> IntegritySpec:
    """The integrity section of the policy (the built-in default when none is given)."""
    from weightguard.policy.load import load_policy

    return load_policy(policy).policy.spec.integrity


def hash_command(
    target: str = typer.Argument(..., help="Local file or directory, or hf://org/name@REVISION."),
    algorithm: Algorithm | None = ALGORITHM_OPTION,
    fmt: ManifestFormat = _FORMAT_OPTION,
    policy: list[Path] = POLICY_OPTION,
    listing: Path | None = LISTING_OPTION,
    quiet: bool = QUIET_OPTION,
) -> None:
    """Print every file's digest in OMS order and the OMS root digest."""
    try:
        spec = load_spec(policy)
        chosen = algorithm.value if algorithm else spec.algorithm
        with progress_display(wanted(quiet)):
            hashed = hash_target(target, spec, chosen, listing)
        body = render_manifest(hashed, chosen, fmt)
    except WeightguardError as exc:
        raise fail(exc) from exc
    sys.stdout.write(body)
    sys.stdout.flush()
    report_findings(hashed.findings)
    raise typer.Exit(hashed.exit_code)


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""
    app.command("hash")(hash_command)
