"""The integrity-and-signatures stage of ``verify``: one hashing pass for every consumer.

Before hashing, the policy's signature files are parsed just enough to learn
which digests they need (``blake2b``, ``blake3``, shard size); those are added
to the pins' and the Hub check's needs, and every file is read exactly once.
Signature verification then takes its digests from that pass through a
caching hasher. Files that are never part of a model's identity are left out
of the manifest: git bookkeeping (as OMS does) and the signature and
attestation files themselves (so attestations can accumulate beside a model
without changing its digest).
Not handled here: the verification rules (:mod:`weightguard.integrity.pins`,
:mod:`weightguard.signing`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from weightguard.errors import IntegrityError, SignatureError
from weightguard.findings import Finding
from weightguard.integrity.hashing import FileHashes, HashRequest, hash_files
from weightguard.integrity.hub import HubListing, check_hub_hashes, hub_request
from weightguard.integrity.pins import IntegrityOutcome, check_integrity, hash_request
from weightguard.integrity.report import IntegrityReport
from weightguard.policy.schema import Policy
from weightguard.policy.sections.integrity import DEFAULT_ALLOWED_EXTRA
from weightguard.signing.bundle import parse_bundle, parse_statement
from weightguard.signing.interface import SerializationMethod
from weightguard.signing.local import FileHashesLike
from weightguard.signing.report import SignatureReport, signature_report
from weightguard.signing.trust import check_signatures
from weightguard.sources.interface import ArtifactFile

# What OpenSSF Model Signing leaves out by default (SIGNING.md 1.4).
GIT_PATHS = DEFAULT_ALLOWED_EXTRA


@dataclass(frozen=True, slots=True)
class IntegrityStage:
    """What the stage produced."""

    hashes: Mapping[str, FileHashes]
    outcome: IntegrityOutcome
    report: IntegrityReport
    signatures: tuple[SignatureReport, ...]
    findings: tuple[Finding, ...]

    @property
    def root_digest(self) -> str:
        """The OMS root digest (sha256) of the model's identity files."""
        return self.report.root_digest


def _under(path: str, prefixes: Sequence[str]) -> bool:
    parts = PurePosixPath(path).parts
    return any(parts[: len(PurePosixPath(p).parts)] == PurePosixPath(p).parts for p in prefixes)


def identity_files(
    files: Sequence[ArtifactFile], policy: Policy, extra_excluded: Sequence[str] = ()
) -> list[ArtifactFile]:
    """The files that make up the model's identity (what is hashed into its root digest)."""
    excluded = (*GIT_PATHS, *policy.spec.signatures.files, *extra_excluded)
    return [f for f in files if not _under(f.relpath, excluded)]


def _signature_needs(root: Path, policy: Policy) -> HashRequest | None:
    spec = policy.spec.signatures
    request: HashRequest | None = None
    for rel in spec.files:
        path = root / rel
        if not path.is_file() or path.is_symlink():
            continue
        try:
            manifest = parse_statement(parse_bundle(path.read_bytes()).payload, allow_legacy=spec.allow_legacy_v01)
        except (OSError, SignatureError):
            continue  # the signature check itself reports an unreadable or malformed bundle
        shard = manifest.shard_size if manifest.method is SerializationMethod.SHARDS else None
        need = HashRequest(frozenset({manifest.hash_type}), shard)
        try:
            request = need if request is None else request.union(need)
        except IntegrityError:  # two signatures with different shard sizes: the second one hashes again
            continue
    return request


class _CachedHasher:
    """Serves digests from the one pass; hashes again only what the pass did not compute."""

    def __init__(self, hashes: Mapping[str, FileHashes]) -> None:
        self._hashes = hashes

    def __call__(
        self, files: Sequence[ArtifactFile], algorithm: str, shard_size: int | None
    ) -> Mapping[str, FileHashesLike]:
        return hash_files(files, HashRequest(frozenset({algorithm}), shard_size), known=self._hashes)


def run_integrity(
    root: Path,
    files: Sequence[ArtifactFile],
    policy: Policy,
    policy_dir: Path,
    *,
    hub: HubListing | None = None,
    extra_excluded: Sequence[str] = (),
    known: Mapping[str, FileHashes] | None = None,
) -> IntegrityStage:
    """Hash once, then check pins, the Hub's hashes and the policy's signatures.

    ``known``: digests of these files computed earlier in the run (verify-many hashes every
    file before scanning it); those that cover what this stage needs are not computed again.

    Raises:
        IntegrityError: a file could not be hashed.
        SignatureError: trust material in the policy is unusable (nothing could be checked).
    """
    mine = identity_files(files, policy, extra_excluded)
    request = hash_request(policy.spec.integrity)
    if hub is not None:
        request = request.union(hub_request(request))
    signature_needs = _signature_needs(root, policy)
    if signature_needs is not None:
        request = request.union(signature_needs)
    hashes = hash_files(mine, request, known=known)
    outcome = check_integrity(policy.spec.integrity, hashes)
    findings: list[Finding] = list(outcome.findings)
    if hub is not None:
        findings.extend(check_hub_hashes(hub, hashes))
    signatures: list[SignatureReport] = []
    spec = policy.spec.signatures
    if spec.trusted_signers or spec.required:
        checked = check_signatures(root, spec, policy_dir, hasher=_CachedHasher(hashes))
        signatures = [signature_report(c) for c in checked.checks]
        findings.extend(checked.findings)
        for check in checked.checks:
            findings.extend(check.findings)
    report = IntegrityReport.from_outcome(outcome, policy.spec.integrity.algorithm)
    return IntegrityStage(hashes, outcome, report, tuple(signatures), tuple(findings))
