"""verify-many goes through verify itself: conversion as verify does it, digests reused, files read once."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from catalogue.builders import catalogue_dir, safetensors_model
from weightguard import __version__
from weightguard.catalogue import memo, runner
from weightguard.catalogue.cache import ResultsCache
from weightguard.catalogue.catalogue import read_catalogue
from weightguard.catalogue.interface import CatalogueEntry
from weightguard.catalogue.local_engine import LocalEngine
from weightguard.catalogue.runner import run_catalogue
from weightguard.pipeline import VerifyOptions, verify
from weightguard.policy.load import LoadedPolicy, load_builtin, load_policy


@pytest.fixture(scope="module")
def engine() -> Iterator[LocalEngine]:
    local = LocalEngine(2)
    yield local
    local.close()


def open_cache(tmp_path: Path, loaded: LoadedPolicy) -> ResultsCache:
    return ResultsCache(f"sqlite:///{tmp_path}/results.db", policy_sha256=loaded.sha256, version=__version__)


def test_without_trusting_metadata_every_file_is_read_on_every_run(tmp_path: Path, engine) -> None:
    loaded = load_builtin("default")
    entries = read_catalogue(catalogue_dir(tmp_path / "models"))
    cache = open_cache(tmp_path, loaded)
    first = run_catalogue(entries, loaded, engine, cache)
    second = run_catalogue(entries, loaded, engine, cache)
    assert first.read_files == first.files and second.read_files == second.files


def test_trusted_metadata_skips_reading_unchanged_files_and_catches_a_same_size_edit(
    tmp_path: Path, engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The files were written a moment ago; a zero settling time lets this test remember them at once.
    monkeypatch.setattr(memo, "SETTLED_NS", 0)
    loaded = load_builtin("default")
    entries = read_catalogue(catalogue_dir(tmp_path / "models"))
    cache = open_cache(tmp_path, loaded)
    first = run_catalogue(entries, loaded, engine, cache, trust_file_metadata=True)
    second = run_catalogue(entries, loaded, engine, cache, trust_file_metadata=True)
    assert first.read_files == first.files
    assert second.read_files == 0
    assert [m.verdict for m in second.models] == [m.verdict for m in first.models]

    # Corrupt a clean model's weights without changing their size, and put the mtime back:
    # only the ctime (which only the kernel sets) tells the file changed.
    target = tmp_path / "models" / "clean-0" / "model.safetensors"
    before = target.stat()
    data = bytearray(target.read_bytes())
    data[0] ^= 0xFF  # the header length: the file is no longer valid safetensors
    target.write_bytes(bytes(data))
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert target.stat().st_size == before.st_size and target.stat().st_mtime_ns == before.st_mtime_ns
    third = run_catalogue(entries, loaded, engine, cache, trust_file_metadata=True)
    assert third.read_files == 1
    verdicts = {Path(m.entry.target).name: m.verdict for m in third.models}
    assert verdicts["clean-0"] != "approved"
    assert verdicts == {**{Path(m.entry.target).name: m.verdict for m in first.models}, "clean-0": verdicts["clean-0"]}


def test_files_that_just_changed_are_not_remembered(tmp_path: Path, engine) -> None:
    loaded = load_builtin("default")
    entries = [CatalogueEntry(str(safetensors_model(tmp_path / "m", 1)), "test")]
    cache = open_cache(tmp_path, loaded)
    run_catalogue(entries, loaded, engine, cache, trust_file_metadata=True)
    again = run_catalogue(entries, loaded, engine, cache, trust_file_metadata=True)
    # Written within the settling time: an edit within the same timestamp tick could go unseen.
    assert again.read_files == again.files


def test_a_policy_that_requires_conversion_converts_in_verify_many_as_in_verify(
    tmp_path: Path, engine, write_policy
) -> None:
    torch = pytest.importorskip("torch")
    src = tmp_path / "pickled"
    src.mkdir()
    torch.save({"w": torch.arange(6.0)}, src / "pytorch_model.bin")
    (src / "config.json").write_text("{}")
    loaded = load_policy(write_policy("conversion:\n  mode: required"))
    summary = run_catalogue(
        [CatalogueEntry(str(src), "test")], loaded, engine, open_cache(tmp_path, loaded), convert_root=tmp_path / "out"
    )
    [outcome] = summary.models
    assert outcome.report is not None and outcome.verdict == "approved", outcome.error
    converted = runner.convert_dir_for(str(src), tmp_path / "out")
    assert (converted / "model.safetensors").is_file()
    alone = verify(str(src), loaded, VerifyOptions(convert_dir=tmp_path / "alone"))
    assert [s.name for s in outcome.report.stages] == [s.name for s in alone.stages]
    assert outcome.report.verdict == alone.verdict
    assert outcome.report.subject is not None and alone.subject is not None
    # The same weights; the conversion record itself names where and when each conversion ran.
    proof = "weightguard-conversion.json"
    assert {k: v for k, v in outcome.report.subject.files.items() if k != proof} == {
        k: v for k, v in alone.subject.files.items() if k != proof
    }
    assert not outcome.cached
