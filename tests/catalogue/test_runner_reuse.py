"""verify-many goes through verify itself: conversion as verify does it, digests reused, files read once."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from catalogue.builders import catalogue_dir, safetensors_model
from weightguard import __version__
from weightguard.catalogue import memo, prepare, runner
from weightguard.catalogue.cache import ResultsCache
from weightguard.catalogue.catalogue import read_catalogue
from weightguard.catalogue.interface import CatalogueEntry, CatalogueError, ModelOutcome, ReportDigest, StoredDigest
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


def test_a_warm_run_looks_plain_folders_up_without_resolving_them(
    tmp_path: Path, engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = load_builtin("default")
    entries = read_catalogue(catalogue_dir(tmp_path / "models"))
    cache = open_cache(tmp_path, loaded)
    first = run_catalogue(entries, loaded, engine, cache)
    resolved: list[str] = []
    real = prepare.resolve_target
    monkeypatch.setattr(prepare, "resolve_target", lambda target, *a: resolved.append(target) or real(target, *a))
    second = run_catalogue(entries, loaded, engine, cache)
    assert resolved == [] and second.executed == 0
    assert second.read_files == second.files  # every byte was still read and hashed
    assert [(m.verdict, m.digest) for m in second.models] == [(m.verdict, m.digest) for m in first.models]


def test_an_edit_in_a_plain_folder_is_judged_again(tmp_path: Path, engine) -> None:
    loaded = load_builtin("default")
    entries = read_catalogue(catalogue_dir(tmp_path / "models"))
    cache = open_cache(tmp_path, loaded)
    run_catalogue(entries, loaded, engine, cache)
    target = tmp_path / "models" / "clean-0" / "model.safetensors"
    data = bytearray(target.read_bytes())
    data[0] ^= 0xFF  # same size, same name: only the bytes tell
    target.write_bytes(bytes(data))
    again = run_catalogue(entries, loaded, engine, cache)
    verdicts = {Path(m.entry.target).name: (m.verdict, m.cached) for m in again.models}
    assert verdicts["clean-0"] == ("rejected", False)
    assert all(cached for name, (_, cached) in verdicts.items() if name != "clean-0")


def test_a_folder_with_a_link_is_resolved_in_full_and_its_verdict_still_reused(tmp_path: Path, engine) -> None:
    loaded = load_builtin("default")
    model = safetensors_model(tmp_path / "m", 1)
    (model / "alias.json").symlink_to("config.json")
    entries = [CatalogueEntry(str(model), "test")]
    cache = open_cache(tmp_path, loaded)
    first = run_catalogue(entries, loaded, engine, cache)
    second = run_catalogue(entries, loaded, engine, cache)
    assert first.models[0].digest is not None
    assert "WG-SRC" in " ".join(f.code for f in first.models[0].digest.findings)  # the refused link is reported
    assert second.models[0].cached and second.models[0].digest == first.models[0].digest


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param("""UPDATE unit_results SET result = '{"verdict": "approved"}' WHERE kind = 'model'""", id="report"),
        pytest.param("""UPDATE unit_summaries SET summary = '{"verdict": "approved"}'""", id="summary"),
        pytest.param("UPDATE unit_results SET result = CAST(result AS BLOB) WHERE kind = 'model'", id="not-text"),
        # Every report replaced by another model's, valid (as an older weightguard sharing the database could).
        pytest.param(
            "UPDATE unit_results SET result = (SELECT o.result FROM unit_results AS o WHERE o.kind = 'model'"
            " AND o.sha256 > unit_results.sha256 ORDER BY o.sha256 LIMIT 1) WHERE kind = 'model'"
            " AND sha256 < (SELECT MAX(sha256) FROM unit_results WHERE kind = 'model')",
            id="swapped",
        ),
    ],
)
def test_a_damaged_cached_verdict_is_judged_again_never_trusted(tmp_path: Path, engine, damage: str) -> None:
    loaded = load_builtin("default")
    entries = read_catalogue(catalogue_dir(tmp_path / "models"))
    cache = open_cache(tmp_path, loaded)
    first = run_catalogue(entries, loaded, engine, cache)
    with sqlite3.connect(tmp_path / "results.db") as db:
        db.execute(damage)
        changed = db.total_changes
    again = run_catalogue(entries, loaded, engine, cache)
    assert sum(not m.cached for m in again.models) == changed > 0
    assert [m.verdict for m in again.models] == [m.verdict for m in first.models]
    replaced = run_catalogue(entries, loaded, engine, cache)
    assert replaced.executed == 0 and all(m.report is not None for m in replaced.models)  # rows replaced


def test_a_row_stored_without_a_summary_is_summarised_from_its_report(tmp_path: Path, engine) -> None:
    loaded = load_builtin("default")
    entries = read_catalogue(catalogue_dir(tmp_path / "models"))
    cache = open_cache(tmp_path, loaded)
    first = run_catalogue(entries, loaded, engine, cache)
    with sqlite3.connect(tmp_path / "results.db") as db:  # as rows written by an older weightguard
        db.execute("DELETE FROM unit_summaries")
    again = run_catalogue(entries, loaded, engine, cache)
    assert all(m.cached for m in again.models) and again.executed == 0
    assert [m.digest for m in again.models] == [m.digest for m in first.models]
    with sqlite3.connect(tmp_path / "results.db") as db:
        db.execute("""UPDATE unit_results SET result = '{"verdict": "approved"}' WHERE kind = 'model'""")
    damaged = run_catalogue(entries, loaded, engine, cache)  # then a damaged report is judged again
    assert not any(m.cached for m in damaged.models)
    assert [m.verdict for m in damaged.models] == [m.verdict for m in first.models]


def test_the_stored_summary_is_the_reports_own(tmp_path: Path, engine) -> None:
    loaded = load_builtin("default")
    entries = read_catalogue(catalogue_dir(tmp_path / "models"))
    cache = open_cache(tmp_path, loaded)
    first = run_catalogue(entries, loaded, engine, cache)
    with sqlite3.connect(tmp_path / "results.db") as db:
        rows = db.execute(
            "SELECT r.result, s.summary FROM unit_results AS r JOIN unit_summaries AS s"
            " USING (sha256, policy_sha256, version, kind) WHERE kind = 'model'"
        ).fetchall()
    assert len(rows) == len(first.models)
    for payload, summary in rows:
        stored = StoredDigest.model_validate_json(summary)
        assert stored.digest == ReportDigest.model_validate_json(payload)
        assert stored.report_sha256 == hashlib.sha256(payload.encode()).hexdigest()


def test_an_older_weightguard_sharing_the_database_can_still_write_its_rows(tmp_path: Path, engine) -> None:
    loaded = load_builtin("default")
    entries = read_catalogue(catalogue_dir(tmp_path / "models"))
    run_catalogue(entries, loaded, engine, open_cache(tmp_path, loaded))
    with sqlite3.connect(tmp_path / "results.db") as db:  # the insert of the release before migration 5
        db.execute("INSERT OR REPLACE INTO unit_results VALUES (?, ?, ?, ?, ?, ?, ?)", ("k", 1, "p", "v", "scan", "{}", "t"))
        assert db.execute("SELECT COUNT(*) FROM unit_results WHERE sha256 = 'k'").fetchone() == (1,)


def test_full_reports_are_decoded_when_asked_and_a_damaged_one_is_an_error(tmp_path: Path, engine) -> None:
    loaded = load_builtin("default")
    entries = read_catalogue(catalogue_dir(tmp_path / "models"))
    outcome = run_catalogue(entries, loaded, engine, open_cache(tmp_path, loaded)).models[0]
    assert outcome.payload is not None and outcome.report is not None
    assert outcome.report.verdict == outcome.verdict and outcome.report.findings == outcome.digest.findings
    # Only the parts the summary shows are checked up front: the rest is checked when decoded.
    damaged = outcome.payload.replace('"schema_version":"1"', '"schema_version":"1","surprise":1')
    broken = ModelOutcome.judged(outcome.entry, damaged, cached=True)
    assert broken.verdict == outcome.verdict
    with pytest.raises(CatalogueError, match="damaged"):
        _ = broken.report
