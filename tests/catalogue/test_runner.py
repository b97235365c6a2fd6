"""The catalogue runner on the local engine: same verdicts as verify, cached, shared, resumable."""

from __future__ import annotations

import gc
import hashlib
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from catalogue.builders import CountingExecute, catalogue_dir, executions, malicious_model, safetensors_model
from weightguard import __version__
from weightguard.catalogue import runner
from weightguard.catalogue.cache import ResultsCache
from weightguard.catalogue.catalogue import read_catalogue
from weightguard.catalogue.interface import CatalogueError, UnitKind, UnitResult, WorkUnit
from weightguard.catalogue.local_engine import LocalEngine
from weightguard.catalogue.runner import run_catalogue
from weightguard.pipeline import verify
from weightguard.policy.load import LoadedPolicy, load_builtin
from weightguard.report.model import Report

TIMING = {"generated_at": True, "stages": {"__all__": {"seconds"}}, "files": {"__all__": {"seconds"}}}


def comparable(report: Report) -> dict[str, object]:
    """The report without wall-clock readings."""
    return report.model_dump(mode="json", exclude=TIMING)


@pytest.fixture(scope="module")
def loaded() -> LoadedPolicy:
    return load_builtin("default")


@pytest.fixture(scope="module")
def engine_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("executions")


@pytest.fixture(scope="module")
def engine(engine_logs: Path) -> Iterator[LocalEngine]:
    # One pool for the module: spawning workers is the slow part of these tests.
    local = LocalEngine(2, execute=CountingExecute(str(engine_logs)))
    yield local
    local.close()


@pytest.fixture
def logs(engine_logs: Path) -> Path:
    for marker in engine_logs.iterdir():
        marker.unlink()
    return engine_logs


def open_cache(tmp_path: Path, loaded: LoadedPolicy) -> ResultsCache:
    return ResultsCache(f"sqlite:///{tmp_path}/results.db", policy_sha256=loaded.sha256, version=__version__)


def test_verdicts_are_identical_to_verify_on_every_model(tmp_path: Path, loaded, engine, logs) -> None:
    entries = read_catalogue(catalogue_dir(tmp_path / "models"))
    summary = run_catalogue(entries, loaded, engine, open_cache(tmp_path, loaded))
    verdicts = {Path(m.entry.target).name: m.verdict for m in summary.models}
    assert verdicts == {
        "clean-0": "approved", "clean-1": "approved", "clean-2": "approved", "evil": "rejected", "odd": "incomplete"
    }
    for outcome in summary.models:
        assert outcome.report is not None
        assert comparable(outcome.report) == comparable(verify(outcome.entry.target, loaded))


def test_a_second_run_with_the_same_policy_analyses_nothing(tmp_path: Path, loaded, engine, logs) -> None:
    entries = read_catalogue(catalogue_dir(tmp_path / "models"))
    cache = open_cache(tmp_path, loaded)
    first = run_catalogue(entries, loaded, engine, cache)
    ran = len(executions(logs))
    second = run_catalogue(entries, loaded, engine, cache)
    assert ran == first.executed > 0
    assert len(executions(logs)) == ran  # nothing ran again
    assert second.executed == 0 and all(m.cached for m in second.models)
    assert [comparable(m.report) for m in second.models if m.report] == [
        comparable(m.report) for m in first.models if m.report
    ]


def test_a_changed_policy_analyses_again(tmp_path: Path, loaded, engine, logs) -> None:
    entries = read_catalogue(catalogue_dir(tmp_path / "models", clean=1))
    run_catalogue(entries, loaded, engine, open_cache(tmp_path, loaded))
    strict = load_builtin("strict")
    before = len(executions(logs))
    summary = run_catalogue(entries, strict, engine, open_cache(tmp_path, strict))
    assert summary.executed > 0 and len(executions(logs)) == before + summary.executed


def test_files_shared_by_many_models_are_analysed_once(tmp_path: Path, loaded, engine, logs) -> None:
    models = tmp_path / "models"
    for i in range(4):
        safetensors_model(models / f"m{i}", seed=7)  # four identical models
    shutil.copytree(models / "m0", models / "renamed")
    (models / "renamed" / "tokenizer.json").rename(models / "renamed" / "vocab.json")  # same bytes, other name
    summary = run_catalogue(read_catalogue(models), loaded, engine, open_cache(tmp_path, loaded))
    assert summary.files == 15 and summary.unique_files == 3
    assert len(executions(logs, "scan")) == 3
    assert len(executions(logs, "model")) == 5
    renamed = next(m for m in summary.models if m.entry.target.endswith("renamed"))
    assert renamed.report is not None
    assert comparable(renamed.report) == comparable(verify(renamed.entry.target, loaded))


def _all_contents(models: Path) -> set[str]:
    return {hashlib.sha256(p.read_bytes()).hexdigest() for p in models.rglob("*") if p.is_file()}


class StopAfter:
    """An engine that delivers ``limit`` results and is then interrupted (as by Ctrl-C)."""

    name = "interrupted"
    shares_local_files = True

    def __init__(self, inner: LocalEngine, limit: int) -> None:
        self.inner, self.limit = inner, limit

    def start(self, loaded: LoadedPolicy) -> None:
        self.inner.start(loaded)

    def run(self, units: Sequence[WorkUnit], loaded: LoadedPolicy) -> Iterator[UnitResult]:
        for count, result in enumerate(self.inner.run(units, loaded), 1):
            yield result
            if count == self.limit:
                raise KeyboardInterrupt

    def close(self) -> None:
        self.inner.close()


def test_a_rerun_after_an_interruption_skips_what_was_done(tmp_path: Path, loaded, engine, logs) -> None:
    entries = read_catalogue(catalogue_dir(tmp_path / "models", clean=3))
    cache = open_cache(tmp_path, loaded)
    with pytest.raises(KeyboardInterrupt):
        run_catalogue(entries, loaded, StopAfter(engine, 4), cache)
    assert cache.count(UnitKind.SCAN) == 4  # what finished before the interruption was kept
    kept = {key[:16] for key in cache.get_many(UnitKind.SCAN, _all_contents(tmp_path / "models"))}
    before = set(executions(logs, "scan"))
    summary = run_catalogue(entries, loaded, engine, cache)
    rerun = {name.split("-")[1] for name in set(executions(logs, "scan")) - before}
    assert rerun.isdisjoint(kept)  # units that had finished were not run again...
    assert len(rerun) == len(_all_contents(tmp_path / "models")) - 4  # ...and every other one ran once
    assert summary.reused == 4
    assert [m.verdict for m in summary.models].count("approved") == 3


def test_a_missing_model_is_incomplete_and_the_others_are_judged(tmp_path: Path, loaded, engine, logs) -> None:
    malicious_model(tmp_path / "evil")
    listing = tmp_path / "catalog.txt"
    listing.write_text("# two models\nevil\nnowhere  # was deleted\n")
    summary = run_catalogue(read_catalogue(listing), loaded, engine, open_cache(tmp_path, loaded))
    assert [m.verdict for m in summary.models] == ["rejected", "incomplete"]
    assert "no such file" in summary.models[1].error


def test_the_collector_runs_less_often_during_a_run_and_as_before_after_it(
    tmp_path: Path, loaded, engine, logs
) -> None:
    entries = read_catalogue(catalogue_dir(tmp_path / "models", clean=1))
    before = gc.get_threshold()
    during: list[tuple[int, int, int]] = []
    cache = open_cache(tmp_path, loaded)
    run_catalogue(entries, loaded, engine, cache, progress=lambda *_: during.append(gc.get_threshold()))
    assert during and all(t[0] == max(before[0], runner.GEN0_DURING_RUN) and t[1:] == before[1:] for t in during)
    assert gc.get_threshold() == before
    with pytest.raises(OSError, match="boom"):  # put back when a run fails too
        run_catalogue(entries, loaded, engine, cache, progress=boom)
    assert gc.get_threshold() == before


def boom(*_: object) -> None:
    raise OSError("boom")


def test_a_collector_the_application_turned_off_stays_off(tmp_path: Path, loaded, engine, logs) -> None:
    entries = read_catalogue(catalogue_dir(tmp_path / "models", clean=1))
    before = gc.get_threshold()
    gc.set_threshold(0, *before[1:])
    try:
        during: list[tuple[int, int, int]] = []
        cache = open_cache(tmp_path, loaded)
        run_catalogue(entries, loaded, engine, cache, progress=lambda *_: during.append(gc.get_threshold()))
        assert during and {t[0] for t in during} == {0} and gc.get_threshold()[0] == 0
    finally:
        gc.set_threshold(*before)


def test_a_catalogue_that_pulls_nothing_is_one_pass_whatever_the_pull_bound(
    tmp_path: Path, loaded, engine, logs
) -> None:
    entries = read_catalogue(catalogue_dir(tmp_path / "models"))
    events: list[tuple[str, int, int]] = []
    summary = run_catalogue(
        entries, loaded, engine, open_cache(tmp_path, loaded), progress=lambda *e: events.append(e), max_pulled=1
    )
    # Each phase starts once, over the whole catalogue: files shared across it are analysed once.
    starts = [(phase, total) for phase, done, total in events if done == 0]
    assert [phase for phase, _ in starts] == ["hashing", "analysing", "judging"]
    assert starts[0][1] == len(entries) and starts[1][1] + starts[2][1] == summary.executed
    assert summary.executed == len(executions(logs))


def test_a_bound_of_no_pulled_model_at_all_is_refused_before_anything_runs(tmp_path: Path, loaded, engine) -> None:
    entries = read_catalogue(catalogue_dir(tmp_path / "models", clean=1))
    with pytest.raises(CatalogueError, match="max_pulled=0"):
        run_catalogue(entries, loaded, engine, open_cache(tmp_path, loaded), max_pulled=0)
