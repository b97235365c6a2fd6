"""Reading catalogues: listing files and directories of models."""

from __future__ import annotations

from pathlib import Path

import pytest

from weightguard.catalogue.catalogue import read_catalogue
from weightguard.errors import SourceError


def test_a_listing_skips_comments_and_repeats_and_resolves_paths_beside_it(tmp_path: Path) -> None:
    listing = tmp_path / "catalog.txt"
    listing.write_text("# models\n\nmodels/a\n/abs/b  # absolute\nhf://org/name@0123abc\nmodels/a\n")
    entries = read_catalogue(listing)
    assert [e.target for e in entries] == [str(tmp_path / "models/a"), "/abs/b", "hf://org/name@0123abc"]
    assert entries[0].origin == f"{listing}:3"


def test_an_oci_line_is_kept_as_written_not_taken_for_a_path(tmp_path: Path) -> None:
    uri = "oci://127.0.0.1:5000/team/model@sha256:" + "a" * 64
    (tmp_path / "catalog.txt").write_text(f"{uri}  # pinned\n{uri}\n")
    assert [e.target for e in read_catalogue(tmp_path / "catalog.txt")] == [uri]


def test_a_directory_lists_its_visible_subdirectories_in_order(tmp_path: Path) -> None:
    for name in ("b", "a", ".weightguard"):
        (tmp_path / name).mkdir()
    (tmp_path / "README.md").write_text("not a model")
    assert [Path(e.target).name for e in read_catalogue(tmp_path)] == ["a", "b"]


def test_a_missing_or_empty_catalogue_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError):
        read_catalogue(tmp_path / "nope.txt")
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(SourceError):
        read_catalogue(tmp_path / "empty.txt")
