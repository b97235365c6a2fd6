"""The local engine: a worker that dies is replaced and only the lost units run again."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

from catalogue.builders import AlwaysCrashExecute, CrashOnceExecute, malicious_model, safetensors_model
from weightguard import __version__
from weightguard.catalogue.cache import ResultsCache
from weightguard.catalogue.catalogue import read_catalogue
from weightguard.catalogue.interface import FileUnit
from weightguard.catalogue.local_engine import LocalEngine
from weightguard.catalogue.runner import run_catalogue
from weightguard.policy.load import load_builtin


def _models(root: Path) -> Path:
    safetensors_model(root / "a", 1)
    malicious_model(root / "b")
    return root


def test_a_unit_whose_worker_dies_once_is_retried_and_the_verdicts_stand(tmp_path: Path) -> None:
    models = _models(tmp_path / "models")
    victim = hashlib.sha256((models / "a" / "model.safetensors").read_bytes()).hexdigest()
    marker = tmp_path / "crashed-once"
    loaded = load_builtin("default")
    engine = LocalEngine(2, max_retries=2, execute=CrashOnceExecute(victim, str(marker)))
    try:
        units = [FileUnit(victim, (models / "a" / "model.safetensors").stat().st_size, str(models / "a" / "model.safetensors"))]
        (result,) = list(engine.run(units, loaded))
        assert marker.exists() and result.ok and result.attempts == 2
    finally:
        engine.close()


def test_a_model_whose_unit_keeps_killing_workers_is_incomplete_never_approved(tmp_path: Path) -> None:
    models = _models(tmp_path / "models")
    victim = hashlib.sha256((models / "a" / "model.safetensors").read_bytes()).hexdigest()
    loaded = load_builtin("default")
    cache = ResultsCache(f"sqlite:///{tmp_path}/r.db", policy_sha256=loaded.sha256, version=__version__)
    engine = LocalEngine(1, max_retries=1, execute=AlwaysCrashExecute(victim))
    try:
        summary = run_catalogue(read_catalogue(models), loaded, engine, cache)
    finally:
        engine.close()
    a, b = summary.models
    assert a.verdict == "incomplete" and "died 2 time(s)" in a.error
    assert b.verdict == "rejected"  # the other model is still judged (its units ran in a fresh pool)


def test_a_unit_that_cannot_be_sent_to_a_worker_fails_alone_and_the_run_goes_on(tmp_path: Path) -> None:
    loaded = load_builtin("default")
    payload = tmp_path / "payload.bin"
    payload.write_bytes(b"\x00" * 16)
    good = FileUnit(hashlib.sha256(payload.read_bytes()).hexdigest(), 16, str(payload))
    # A lambda cannot be pickled: the batch holding it never reaches a worker.
    unsendable = FileUnit("0" * 64, 1, lambda: None)  # type: ignore[arg-type]
    engine = LocalEngine(1)
    try:
        results = {r.key: r for r in engine.run([unsendable], loaded)}
        results.update({r.key: r for r in engine.run([good], loaded)})
    finally:
        engine.close()
    assert results["0" * 64].payload is None
    assert "could not be sent to a worker" in results["0" * 64].error
    assert results[good.key].payload is not None


FORKED_RUN = """
import hashlib, sys, threading
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from catalogue.builders import CrashOnceExecute, catalogue_dir
from weightguard import __version__
from weightguard.catalogue.cache import ResultsCache
from weightguard.catalogue.catalogue import read_catalogue
from weightguard.catalogue.local_engine import LocalEngine, _context
from weightguard.catalogue.runner import run_catalogue
from weightguard.policy.load import load_builtin

assert threading.active_count() == 1 and _context().get_start_method() == "fork"
tmp = Path(sys.argv[2])
models = catalogue_dir(tmp / "models")
victim = hashlib.sha256((models / "clean-0" / "model.safetensors").read_bytes()).hexdigest()
loaded = load_builtin("default")
cache = ResultsCache(f"sqlite:///{tmp}/r.db", policy_sha256=loaded.sha256, version=__version__)
engine = LocalEngine(2, execute=CrashOnceExecute(victim, str(tmp / "crashed")))
summary = run_catalogue(read_catalogue(models), loaded, engine, cache)
engine.close()
assert (tmp / "crashed").exists()
print(" ".join(f"{Path(m.entry.target).name}={m.verdict}" for m in summary.models))
"""


def test_forked_workers_give_the_same_verdicts_and_survive_a_crash(tmp_path: Path) -> None:
    # pytest-xdist runs threads, so in-process tests use the fork server; a fresh process forks.
    tests = Path(__file__).resolve().parents[1]
    done = subprocess.run(  # noqa: S603 - our own script
        [sys.executable, "-c", FORKED_RUN, str(tests), str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["clean-0=approved", "clean-1=approved", "clean-2=approved", "evil=rejected", "odd=incomplete"]
