"""The integrity stage: compare a model's manifest with the digests the policy pins.

:class:`PinnedDigests` is compiled from ``spec.integrity`` and has one method,
:meth:`PinnedDigests.evaluate`, that turns a manifest into an explicit
:class:`IntegrityOutcome` (the :class:`~weightguard.integrity.manifest.ManifestDiff`
plus findings with stable ``WG-INT`` codes). Extra files fail unless a glob in
``allow_extra`` matches them (default: git bookkeeping only); missing pinned
files fail unless ``allow_missing`` matches them. Every tolerated difference is
still reported (``WG-INT-007``) and logged as a warning. File names are always
checked for path safety, with or without pins.
Not handled here: reading or hashing files (the caller passes the digests of
the single hashing pass) and deciding the verdict.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import PurePosixPath

from weightguard.findings import Finding
from weightguard.integrity import codes
from weightguard.integrity.hashing import FileHashes, HashRequest
from weightguard.integrity.manifest import Manifest, ManifestDiff, compare, path_findings
from weightguard.policy.sections.integrity import IntegritySpec

logger = logging.getLogger(__name__)


def matches_any(relpath: str, globs: Iterable[str]) -> bool:
    """True when a glob matches ``relpath`` or one of its parent folders (``.git`` covers ``.git/config``)."""
    candidates = [relpath, *(p.as_posix() for p in PurePosixPath(relpath).parents if p.as_posix() != ".")]
    return any(fnmatchcase(c, g) for g in globs for c in candidates)


def parse_pin(value: str) -> tuple[str, str]:
    """Split a validated ``"<algorithm>:<hex>"`` pin into ``(algorithm, hex)``."""
    algorithm, _, digest = value.partition(":")
    return algorithm, digest.lower()


def hash_request(spec: IntegritySpec, shard_size: int | None = None) -> HashRequest:
    """The digests this stage needs: the manifest algorithm plus every pinned algorithm."""
    algorithms = {spec.algorithm} | {parse_pin(v)[0] for v in spec.pinned.values()}
    return HashRequest(frozenset(algorithms), shard_size)


@dataclass(frozen=True, slots=True)
class IntegrityOutcome:
    """What the integrity stage found: the diff against the pins and the findings it implies."""

    manifest: Manifest
    diff: ManifestDiff
    tolerated_extra: tuple[str, ...]
    tolerated_missing: tuple[str, ...]
    findings: tuple[Finding, ...]
    pinned: bool


@dataclass(frozen=True, slots=True)
class PinnedDigests:
    """Pinned digests with the policy's tolerances; an empty pin set checks path safety only."""

    pins: Mapping[str, tuple[str, str]]
    allow_extra: tuple[str, ...]
    allow_missing: tuple[str, ...]

    @classmethod
    def from_spec(cls, spec: IntegritySpec) -> PinnedDigests:
        """Compile ``spec.integrity``."""
        return cls(
            {path: parse_pin(value) for path, value in spec.pinned.items()},
            tuple(spec.allow_extra),
            tuple(spec.allow_missing),
        )

    def evaluate(self, hashes: Mapping[str, FileHashes]) -> IntegrityOutcome:
        """Compare the hashed files with the pins.

        Args:
            hashes: The output of the single hashing pass, ``{relpath: FileHashes}``.

        Returns:
            The diff (tolerated differences removed from ``missing``/``extra``) and the findings.
        """
        actual = Manifest.of(hashes)
        findings = path_findings(actual.entries)
        if not self.pins:
            return IntegrityOutcome(actual, ManifestDiff(), (), (), tuple(findings), pinned=False)
        expected = Manifest.from_digests({p: {alg: hx} for p, (alg, hx) in self.pins.items()})
        raw = compare(expected, actual)
        extra = [p for p in raw.extra if not matches_any(p, self.allow_extra)]
        missing = [p for p in raw.missing if not matches_any(p, self.allow_missing)]
        tolerated_extra = tuple(p for p in raw.extra if p not in extra)
        tolerated_missing = tuple(p for p in raw.missing if p not in missing)
        for m in raw.mismatched:
            findings.append(
                codes.DIGEST_MISMATCH.at(
                    m.path, f"{m.algorithm} differs from the pinned digest", expected=m.expected, actual=m.actual
                )
            )
        findings += [codes.MISSING_FILE.at(p, "pinned file is missing") for p in missing]
        findings += [
            codes.EXTRA_FILE.at(p, "file is not pinned", sha256=actual.entries[p].digests.get("sha256", ""))
            for p in extra
        ]
        findings += self._tolerated(tolerated_extra, "extra file allowed by spec.integrity.allow_extra")
        findings += self._tolerated(tolerated_missing, "missing file allowed by spec.integrity.allow_missing")
        diff = ManifestDiff(raw.mismatched, tuple(missing), tuple(extra), raw.matched)
        return IntegrityOutcome(actual, diff, tolerated_extra, tolerated_missing, tuple(findings), pinned=True)

    @staticmethod
    def _tolerated(paths: Sequence[str], message: str) -> list[Finding]:
        for path in paths:
            # A permissive switch is in use: say so where operators look (STYLE.md principle 7).
            logger.warning("weightguard integrity: %s: %s", path, message)
        return [codes.TOLERATED.at(p, message) for p in paths]


def check_integrity(spec: IntegritySpec, hashes: Mapping[str, FileHashes]) -> IntegrityOutcome:
    """Run the integrity stage for ``spec.integrity`` over the digests of one hashing pass."""
    return PinnedDigests.from_spec(spec).evaluate(hashes)
