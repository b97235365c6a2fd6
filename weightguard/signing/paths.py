"""Path safety for signed resource names and ignore paths.

Every resource name in a signature is checked before anything is looked up
on disk, in every mode (including "ignore unsigned files", where
model-signing 1.1.1 joins names to the model path unchecked and reads
``../outside.txt``). A name is refused when it is empty, absolute, has a
``.``/``..``/empty component, contains NUL or a backslash (a separator on
Windows), or resolves outside the model root through a symbolic link.
Names are compared byte-for-byte as signed: no Unicode normalization, no case
folding (case-only collisions are reported separately). Not handled here:
reading files (weightguard reads only what its own directory walk listed).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

from weightguard.integrity.manifest import unsafe_reason as manifest_unsafe_reason
from weightguard.policy.sections.integrity import DEFAULT_ALLOWED_EXTRA

DEFAULT_GIT_IGNORES = DEFAULT_ALLOWED_EXTRA  # the git bookkeeping OMS leaves out (SIGNING.md 1.4)
SINGLE_FILE_NAME = "."  # model-signing names the only resource of a one-file model "." (path relative to itself)


def unsafe_reason(name: str, *, single_file: bool = False) -> str | None:
    """Why ``name`` is not a safe relative POSIX path inside the root, or None when it is.

    The rules are the integrity stage's (one definition); a one-file model's resource ``.`` is allowed.
    """
    if single_file and name == SINGLE_FILE_NAME:
        return None
    return manifest_unsafe_reason(name)


def escapes_root(root: Path, name: str) -> bool:
    """True when ``root/name`` resolves (through symlinks) outside ``root``; reads no file content."""
    if name == SINGLE_FILE_NAME:
        return False
    base = root.resolve()
    return not (base / name).resolve().is_relative_to(base)


def split_shard(name: str) -> tuple[str, int, int] | None:
    """Split ``path:start:end``; None when malformed (the path part may not contain ``:``: it would be ambiguous)."""
    path, sep1, rest = name.partition(":")
    start_text, sep2, end_text = rest.partition(":")
    if not (sep1 and sep2) or not (start_text.isdecimal() and end_text.isdecimal()):
        return None
    start, end = int(start_text), int(end_text)
    if end <= start:
        return None
    return path, start, end


def normalize_ignore(path: str) -> str | None:
    """A recorded ignore path as a clean relative POSIX path, or None when it cannot name a path inside the root.

    An ignore path that is absolute, climbs out with ``..`` or names the root itself (``.``, empty)
    is not applied: it would either match nothing or exclude the whole model.
    """
    if unsafe_reason(path.rstrip("/")) is not None:
        return None
    return path.rstrip("/")


def is_under(rel: str, prefixes: Iterable[str]) -> bool:
    """True when ``rel`` equals or lies under one of ``prefixes``, by whole path components."""
    p = PurePosixPath(rel)
    return any(p.is_relative_to(prefix) for prefix in prefixes)


def matches_any(rel: str, patterns: Sequence[str]) -> bool:
    """True when ``rel`` is under a listed path or matches a glob (``*`` may cross ``/``)."""
    return is_under(rel, [p for p in patterns if p]) or any(fnmatchcase(rel, p) for p in patterns)


def relative_inside(root: Path, path: Path) -> str | None:
    """``path`` relative to ``root`` (POSIX) when it lies inside it, else None."""
    try:
        rel = Path(os.path.normpath(path.absolute())).relative_to(os.path.normpath(root.absolute()))
    except ValueError:
        return None
    text = rel.as_posix()
    return None if text == "." else text
