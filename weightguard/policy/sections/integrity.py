"""Policy section ``spec.integrity``: pinned digests, tolerated files and Hub settings.

``pinned`` maps a model-relative POSIX path to ``"<algorithm>:<hex>"`` (what
``weightguard lock`` writes). When pins are given, every file of the model must
be pinned and match, except names listed in ``allow_extra`` (globs; by default
only git bookkeeping, as OpenSSF Model Signing ignores it) and pinned names
listed in ``allow_missing``. Every permissive choice is spelled ``allow_*``.
Not handled here: hashing or comparing anything (:mod:`weightguard.integrity`).
``spec.signatures`` lives in :mod:`weightguard.policy.sections.signatures`
(owned by the signing stage) and is only re-exported here.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from weightguard.policy.base import StrictModel
from weightguard.policy.sections.signatures import SignaturesSpec  # noqa: F401 - re-exported for schema.py

__all__ = ["DEFAULT_ALLOWED_EXTRA", "HubSpec", "IntegritySpec", "SignaturesSpec"]

# Git bookkeeping, the same paths model-signing ignores by default (SIGNING.md 1.4).
# A glob matches a path or any of its parent folders, so ".git" covers ".git/config".
DEFAULT_ALLOWED_EXTRA = (".git", ".gitattributes", ".github", ".gitignore")

_HEX_LENGTH = {"sha256": 64, "blake3": 64, "blake2b": 128}
_PIN = re.compile(r"^(sha256|blake3|blake2b):([0-9a-f]+)$")


def pin_reason(value: str) -> str | None:
    """Why ``value`` is not a valid ``"<algorithm>:<lowercase hex>"`` pin, or None when it is."""
    match = _PIN.match(value)
    if match is None:
        return "must look like 'sha256:<lowercase hex>' (algorithms: sha256, blake3, blake2b)"
    algorithm, digest = match.groups()
    if len(digest) != _HEX_LENGTH[algorithm]:
        return f"a {algorithm} digest has {_HEX_LENGTH[algorithm]} hex digits, not {len(digest)}"
    return None


def _path_reason(name: str) -> str | None:
    # Same rules as the integrity stage's path checks: a pin must name a path inside the model.
    if not name or "\x00" in name or "\\" in name or name.startswith("/"):
        return "must be a relative POSIX path without NUL or backslash"
    if any(part in ("", ".", "..") for part in name.split("/")):
        return "must not contain empty, '.' or '..' components"
    return None


class HubSpec(StrictModel):
    """How ``hf://org/name@REVISION`` targets are resolved and checked."""

    offline: bool = Field(
        default=False, description="Never contact the Hub: use the local cache only (as HF_HUB_OFFLINE=1 does)."
    )
    allow_missing_listing: bool = Field(
        default=False,
        description="Without a Hub file listing, report info instead of an error (the files go unchecked).",
    )


class IntegritySpec(StrictModel):
    """Pinned digests and the tolerated differences between a model and its pins."""

    algorithm: Literal["sha256", "blake3"] = Field(
        default="sha256", description="Digest used by `weightguard hash` and `lock` (sha256 matches the Hub and OMS)."
    )
    pinned: dict[str, str] = Field(default_factory=dict, description="relpath -> 'sha256:<hex>'.")
    allow_extra: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ALLOWED_EXTRA),
        description="Globs of unpinned files that may be present (a glob also matches everything under a folder).",
    )
    allow_missing: list[str] = Field(default_factory=list, description="Globs of pinned files that may be absent.")
    require_pinned_revision: bool = Field(
        default=False, description="hf:// targets must name a 40-hex commit, never a branch or tag."
    )
    allow_symlinks_inside: bool = Field(
        default=False, description="Follow symbolic links that stay inside the model root (refused otherwise)."
    )
    hf: HubSpec = HubSpec()

    @field_validator("pinned")
    @classmethod
    def _valid_pins(cls, value: dict[str, str]) -> dict[str, str]:
        for name, digest in value.items():
            if (why := _path_reason(name)) is not None:
                raise ValueError(f"pinned path {name!r} {why}")
            if (why := pin_reason(digest)) is not None:
                raise ValueError(f"pin for {name!r} {why}")
        return value

    @field_validator("allow_extra", "allow_missing")
    @classmethod
    def _no_empty_globs(cls, value: list[str]) -> list[str]:
        if any(not glob.strip() for glob in value):
            raise ValueError("globs must not be empty")
        return value
