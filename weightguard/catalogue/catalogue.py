"""Reading a catalogue: a file listing targets, or a directory whose subdirectories are models.

A catalogue file has one target per line (a local path, or an ``hf://`` or
``oci://`` target, kept as written); blank lines, ``#`` comment lines and trailing `` #`` comments are ignored, and relative paths are
taken relative to the catalogue file, so a catalogue can move with its
models. A catalogue directory lists its immediate, non-hidden subdirectories
in name order; files directly inside it are not models and are ignored.
A target listed twice is verified once.
Not handled here: whether a target exists (each model's source stage reports that).
"""

from __future__ import annotations

from pathlib import Path

from weightguard.catalogue.interface import CatalogueEntry
from weightguard.errors import SourceError


def read_catalogue(path: Path) -> list[CatalogueEntry]:
    """Return the models of the catalogue at ``path``, in catalogue order.

    Raises:
        SourceError: the catalogue does not exist, cannot be read, or lists no model.
    """
    if path.is_dir():
        entries = _from_directory(path)
    elif path.is_file():
        entries = _from_file(path)
    else:
        raise SourceError(f"no such catalogue: {path}", hint="give a file listing targets or a directory of models")
    if not entries:
        raise SourceError(f"the catalogue {path} lists no model")
    return entries


def _from_directory(path: Path) -> list[CatalogueEntry]:
    try:
        children = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as exc:
        raise SourceError(f"cannot list the catalogue directory {path}: {exc.strerror or exc}") from exc
    return [CatalogueEntry(str(child), str(path)) for child in children]


def _from_file(path: Path) -> list[CatalogueEntry]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"cannot read the catalogue {path}: {exc}") from exc
    entries: list[CatalogueEntry] = []
    seen: set[str] = set()
    for number, raw in enumerate(text.splitlines(), 1):
        # A comment is a whole line starting with '#', or a trailing one after " #".
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.split(" #", 1)[0].strip()
        remote = line.startswith(("hf://", "oci://"))  # not paths: never made relative to the catalogue
        target = line if remote or Path(line).is_absolute() else str(path.parent / line)
        if target not in seen:
            seen.add(target)
            entries.append(CatalogueEntry(target, f"{path}:{number}"))
    return entries
