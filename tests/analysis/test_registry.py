"""The analyzer registry: what it says each analyzer handles is what the analyzer says, and lookups are lazy."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

from weightguard.analysis.registry import ANALYZERS, analyzers, default_analyzers
from weightguard.formats.interface import FileFormat

REPO = Path(__file__).resolve().parents[2]


def test_each_entry_names_a_class_handling_exactly_the_formats_written_there() -> None:
    for module, name, formats in ANALYZERS:
        cls = getattr(importlib.import_module(module), name)
        assert frozenset(cls.formats) == formats, f"{module}.{name}"


def test_every_analyzer_is_registered_once_in_order() -> None:
    built = analyzers()
    assert [type(a).__name__ for a in built] == [name for _, name, _ in ANALYZERS]
    assert len({(m, n) for m, n, _ in ANALYZERS}) == len(ANALYZERS)


def test_the_table_maps_each_format_to_its_analyzers_in_registry_order() -> None:
    table = default_analyzers()
    expected: dict[FileFormat, list[str]] = {}
    for _, name, formats in ANALYZERS:
        for fmt in formats:
            expected.setdefault(fmt, []).append(name)
    assert set(table) == set(expected) and len(table) == len(expected)
    for fmt, names in expected.items():
        assert [type(a).__name__ for a in table[fmt]] == names
    # one analyzer serves all its formats with one instance
    zip_formats = next(formats for _, name, formats in ANALYZERS if name == "ZipAnalyzer")
    assert len({id(table[fmt][0]) for fmt in zip_formats}) == 1


def test_a_format_without_analyzer_is_absent() -> None:
    table = default_analyzers()
    assert FileFormat.UNKNOWN not in table and table.get(FileFormat.UNKNOWN) is None


def test_looking_up_pickle_imports_no_other_analyzer_module() -> None:
    code = (
        "import sys\n"
        "from weightguard.analysis.registry import ANALYZERS, default_analyzers\n"
        "from weightguard.formats.interface import FileFormat\n"
        "default_analyzers()[FileFormat.PICKLE]\n"
        "others = {m for m, n, f in ANALYZERS if FileFormat.PICKLE not in f} - {m for m, n, f in ANALYZERS if FileFormat.PICKLE in f}\n"
        "print(sorted(others & set(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]"
