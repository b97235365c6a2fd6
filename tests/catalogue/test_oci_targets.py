"""issue 17: ``verify-many`` catalogue lines naming ``oci://`` targets, against the real registry.

The registry is Debian's docker-registry (the CNCF distribution registry) started on
127.0.0.1 with htpasswd auth by the fixtures of tests/sources/test_oci_registry.py, which
also push the ModelPack artifacts. Nothing is mocked: the catalogue runner pulls, the local
engine's worker processes scan and judge, and the pulled folders are looked for afterwards.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from sources.test_oci_registry import (  # noqa: F401 - htpasswd_registry is a fixture, found by name
    REGISTRY_BIN,
    SAMPLES,
    Registry,
    auth_file,
    htpasswd_registry,
    push_model,
)

from catalogue.builders import safetensors_model
from weightguard.catalogue.cache import ResultsCache
from weightguard.catalogue.catalogue import read_catalogue
from weightguard.catalogue.interface import ModelOutcome, ModelUnit, UnitResult, WorkUnit
from weightguard.catalogue.local_engine import LocalEngine
from weightguard.catalogue.runner import run_catalogue
from weightguard.catalogue.units import execute_unit
from weightguard.pipeline import VerifyOptions
from weightguard.policy.load import LoadedPolicy, load_builtin

pytestmark = pytest.mark.skipif(
    not REGISTRY_BIN.exists() or shutil.which("htpasswd") is None,
    reason="docker-registry / htpasswd are not installed (run ci/install-services.sh as root on Debian)",
)

# A well-formed digest the registry does not hold.
MISSING = "sha256:" + "0" * 64


@dataclass
class Catalogue:
    registry: Registry
    path: Path
    approved: str  # oci:// URIs as listed
    blocked: str
    missing: str
    local: Path
    auth: Path


@pytest.fixture
def catalogue(htpasswd_registry: Registry, tmp_path: Path) -> Catalogue:  # noqa: F811 - the fixture imported above
    registry = htpasswd_registry
    approved = f"oci://{registry.host}/team/model@{push_model(registry, 'team/model', SAMPLES / 'approved')}"
    blocked = f"oci://{registry.host}/team/evil@{push_model(registry, 'team/evil', SAMPLES / 'blocked')}"
    missing = f"oci://{registry.host}/team/model@{MISSING}"
    local = safetensors_model(tmp_path / "models" / "local", seed=3)
    path = tmp_path / "models" / "catalogue.txt"
    path.write_text(f"{approved}\n{blocked}  # the pickle that calls exec\nlocal\n{missing}\n")
    return Catalogue(registry, path, approved, blocked, missing, local, auth_file(tmp_path, registry.host))


def cli(*args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    (tmp / "tmp").mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "weightguard", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={"TMPDIR": str(tmp / "tmp"), "PATH": "/usr/bin:/bin", "HOME": str(tmp)},
    )


def access(c: Catalogue) -> list[str]:
    return ["--registry-auth-file", str(c.auth), "--insecure-registry", c.registry.host]


def pulls_left(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("weightguard-oci-"))


def by_target(outcomes: Sequence[ModelOutcome]) -> dict[str, ModelOutcome]:
    return {m.entry.target: m for m in outcomes}


def test_a_catalogue_of_oci_and_local_models_gets_each_verdict_and_the_subject_verify_gives(
    catalogue: Catalogue, tmp_path: Path
) -> None:
    c = catalogue
    database = f"sqlite:///{tmp_path}/results.db"
    # One pull on disk at a time: four waves, one report.
    many = cli("verify-many", str(c.path), "-f", "json", "--workers", "1", "--database", database, *access(c),
               "--max-pulled", "1", tmp=tmp_path)  # fmt: skip
    assert many.returncode == 1, many.stderr  # one model is rejected
    report = json.loads(many.stdout)
    lines = {line["target"]: line for line in report["models"]}
    assert [line["target"] for line in report["models"]] == [c.approved, c.blocked, str(c.local), c.missing]
    assert lines[c.approved]["verdict"] == "approved"
    assert lines[c.blocked]["verdict"] == "rejected"
    assert lines[str(c.local)]["verdict"] == "approved"
    assert lines[c.missing]["verdict"] == "incomplete"
    assert report["counts"] == {"approved": 2, "rejected": 1, "incomplete": 1}
    assert "team/model" in lines[c.missing]["reasons"][0] and MISSING in lines[c.missing]["reasons"][0]
    # The subject names the manifest that was pulled, as verify's does.
    assert lines[c.approved]["subject"] == c.approved and lines[c.blocked]["subject"] == c.blocked

    for uri in (c.approved, c.blocked):
        one = cli("verify", uri, "-f", "json", *access(c), tmp=tmp_path)
        alone = json.loads(one.stdout)
        assert alone["verdict"] == lines[uri]["verdict"] and one.returncode == lines[uri]["exit_code"]
        assert alone["subject"]["uri"] == lines[uri]["subject"]
        assert alone["subject"]["root_digest"] == lines[uri]["root_digest"] is not None
    assert pulls_left(tmp_path / "tmp") == []  # every pull was removed, by both commands


class _Remote:
    """A local pool that says its workers need not see this machine's files (as a cluster's need not)."""

    name = "remote"
    shares_local_files = False

    def __init__(self, inner: LocalEngine) -> None:
        self.inner = inner

    def start(self, loaded: LoadedPolicy) -> None:
        self.inner.start(loaded)

    def run(self, units: Sequence[WorkUnit], loaded: LoadedPolicy) -> Iterator[UnitResult]:
        return self.inner.run(units, loaded)

    def close(self) -> None:
        self.inner.close()


@dataclass(frozen=True)
class SeesPull:
    """Runs units for real; for a model unit of a pull, logs the folder and whether it was there."""

    log: str

    def __call__(self, unit: WorkUnit, loaded: LoadedPolicy) -> UnitResult:
        if isinstance(unit, ModelUnit) and unit.pulled:
            with Path(self.log).open("a") as out:
                out.write(
                    json.dumps({"pinned": unit.pinned, "folder": unit.pulled, "there": Path(unit.pulled).is_dir()})
                )
                out.write("\n")
        return execute_unit(unit, loaded)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[LocalEngine]:
    engine = LocalEngine(1, max_retries=0, execute=SeesPull(str(tmp_path / "pulls.log")))
    try:
        yield engine
    finally:
        engine.close()


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This process's temporary folder, where the runner pulls (so what is left there can be seen)."""
    folder = tmp_path / "scratch"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_pulls_are_removed_as_their_models_are_judged_and_a_rerun_reuses_the_verdict(
    catalogue: Catalogue, tmp_path: Path, scratch: Path, engine: LocalEngine
) -> None:
    c, policy = catalogue, load_builtin("default")
    registry = VerifyOptions(registry_auth_file=c.auth, insecure_registries=(c.registry.host,))
    cache = ResultsCache(f"sqlite:///{tmp_path}/results.db", policy_sha256=policy.sha256, version="test")
    try:
        first = by_target(run_catalogue(read_catalogue(c.path), policy, engine, cache, registry=registry).models)
        assert first[c.approved].verdict == "approved" and not first[c.approved].cached
        assert first[c.blocked].verdict == "rejected"
        # Each model unit ran in a worker process on its own pull, under this run's temporary
        # folder, which was there then and is gone now.
        seen = [json.loads(line) for line in (tmp_path / "pulls.log").read_text().splitlines()]
        assert sorted(s["pinned"] for s in seen) == sorted([c.approved, c.blocked])
        assert all(s["there"] and Path(s["folder"]).is_relative_to(scratch) for s in seen)
        assert not any(Path(s["folder"]).exists() for s in seen)
        assert pulls_left(scratch) == []
        # Under --trust-file-metadata too: a pull's files are new, their stamps are neither read nor kept.
        again = run_catalogue(
            read_catalogue(c.path), policy, engine, cache, registry=registry, trust_file_metadata=True
        )
        second = by_target(again.models)
    finally:
        cache.close()
    # Pulled again (the files are checked as they are now), and judged from the cache: the
    # manifest digest and the files' digests are the same, so the verdict is.
    assert second[c.approved].cached and second[c.approved].verdict == "approved"
    assert second[c.approved].payload == first[c.approved].payload
    assert second[c.missing].verdict == "incomplete"
    # Only the local model's files were read to hash them: a pull's sha256 is taken from the pull.
    assert again.read_files == len(list(c.local.iterdir()))
    assert pulls_left(scratch) == []


def test_a_pull_the_registry_refuses_is_that_models_error_and_the_others_go_on(
    catalogue: Catalogue, tmp_path: Path, scratch: Path, engine: LocalEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    c, policy = catalogue, load_builtin("default")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))  # no credentials at all
    registry = VerifyOptions(insecure_registries=(c.registry.host,))
    cache = ResultsCache(f"sqlite:///{tmp_path}/results.db", policy_sha256=policy.sha256, version="test")
    try:
        models = by_target(run_catalogue(read_catalogue(c.path), policy, engine, cache, registry=registry).models)
    finally:
        cache.close()
    for uri in (c.approved, c.blocked, c.missing):
        assert models[uri].verdict == "incomplete" and "needs credentials" in models[uri].error
    assert models[str(c.local)].verdict == "approved"
    assert pulls_left(scratch) == []


def test_an_engine_whose_workers_need_not_see_this_machine_refuses_oci_lines_one_by_one(
    catalogue: Catalogue, tmp_path: Path, scratch: Path, engine: LocalEngine
) -> None:
    c, policy = catalogue, load_builtin("default")
    registry = VerifyOptions(registry_auth_file=c.auth, insecure_registries=(c.registry.host,))
    cache = ResultsCache(f"sqlite:///{tmp_path}/results.db", policy_sha256=policy.sha256, version="test")
    try:
        summary = run_catalogue(read_catalogue(c.path), policy, _Remote(engine), cache, registry=registry)
    finally:
        cache.close()
    models = by_target(summary.models)
    for uri in (c.approved, c.blocked, c.missing):
        assert models[uri].verdict == "incomplete" and "--engine local" in models[uri].error
    assert models[str(c.local)].verdict == "approved"
    assert pulls_left(scratch) == []


def pulled_now(scratch: Path) -> list[str]:
    """The pulls on disk now: the folders inside the run's temporary folder(s) under ``scratch``."""
    return sorted(str(pull) for run in scratch.glob("weightguard-oci-*") for pull in run.iterdir())


@dataclass(frozen=True)
class CountsPulls:
    """Runs units for real; before each unit, logs which pulls are on disk (and the model unit's own)."""

    log: str
    scratch: str

    def __call__(self, unit: WorkUnit, loaded: LoadedPolicy) -> UnitResult:
        mine = unit.pulled if isinstance(unit, ModelUnit) else ""
        with Path(self.log).open("a") as out:
            out.write(json.dumps({"kind": unit.kind.value, "pulls": pulled_now(Path(self.scratch)), "mine": mine}))
            out.write("\n")
        return execute_unit(unit, loaded)


def test_a_catalogue_pulling_more_than_the_bound_runs_in_waves_with_the_verdicts_and_counts_of_one_pass(
    catalogue: Catalogue, tmp_path: Path, scratch: Path
) -> None:
    c, policy = catalogue, load_builtin("default")
    # Four more models, sharing their config and tokenizer (one tar layer each, same files inside).
    seeded = [
        f"oci://{c.registry.host}/team/s{k}@"
        + push_model(c.registry, f"team/s{k}", safetensors_model(tmp_path / "pushed" / f"s{k}", seed=10 + k))
        for k in range(4)
    ]
    c.path.write_text(c.path.read_text() + "".join(f"{uri}\n" for uri in seeded))
    entries = read_catalogue(c.path)  # 7 oci:// lines (6 pullable, 1 missing) and a local model
    registry = VerifyOptions(registry_auth_file=c.auth, insecure_registries=(c.registry.host,))
    log = tmp_path / "units.log"
    engine = LocalEngine(1, max_retries=0, execute=CountsPulls(str(log), str(scratch)))
    seen_here: list[list[str]] = []
    starts: list[str] = []

    def progress(phase: str, done: int, _total: int) -> None:
        seen_here.append(pulled_now(scratch))  # in the runner's process, between its steps
        if done == 0:
            starts.append(phase)

    try:
        runs = {}
        for bound in (2, 10):
            cache = ResultsCache(f"sqlite:///{tmp_path}/results-{bound}.db", policy_sha256=policy.sha256, version="t")
            try:
                runs[bound] = run_catalogue(
                    entries, policy, engine, cache, registry=registry, progress=progress, max_pulled=bound
                )
            finally:
                cache.close()
            if bound == 2:
                waved = [json.loads(line) for line in log.read_text().splitlines()]
                waved_here, waved_starts = list(seen_here), list(starts)
    finally:
        engine.close()

    # Every verdict is the one pass's, and so is every count of the summary.
    waves, one = runs[2], runs[10]
    assert [(m.entry.target, m.verdict) for m in waves.models] == [(m.entry.target, m.verdict) for m in one.models]
    verdicts = by_target(waves.models)
    assert [verdicts[u].verdict for u in (c.approved, c.blocked, str(c.local), c.missing, *seeded)] == [
        "approved", "rejected", "approved", "incomplete", "approved", "approved", "approved", "approved"
    ]  # fmt: skip
    for count in ("executed", "reused", "files", "unique_files", "read_files"):
        assert getattr(waves, count) == getattr(one, count), count
    # Four waves: {approved, blocked, local}, {missing, s0}, {s1, s2}, {s3}; the one pass is one.
    assert waved_starts == ["hashing"] + ["analysing", "judging"] * 4
    assert starts[len(waved_starts) :] == ["hashing", "analysing", "judging"]
    # Seen before every unit in the workers and at every step of the runner: never more than two
    # pulls on disk, at times two, and each model unit of a pull judged its own folder, there then.
    observed = [entry["pulls"] for entry in waved] + waved_here
    assert max(len(pulls) for pulls in observed) == 2
    judged = [entry for entry in waved if entry["mine"]]
    assert len({entry["mine"] for entry in judged}) == 6
    assert all(any(p == str(Path(e["mine"]).parent) for p in e["pulls"]) for e in judged)
    # The one pass held all six at once (what the bound prevents), and nothing is left by either.
    assert max(len(pulls) for pulls in seen_here[len(waved_here) :]) >= 6
    assert pulls_left(scratch) == []
