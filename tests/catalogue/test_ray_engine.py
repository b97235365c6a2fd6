"""The Ray engine, for real, on a local cluster on 127.0.0.1 (extra ``[cluster]``)."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from catalogue import builders
from catalogue.builders import CrashOnceExecute, catalogue_dir
from weightguard import __version__
from weightguard.catalogue.cache import ResultsCache
from weightguard.catalogue.catalogue import read_catalogue
from weightguard.catalogue.interface import FileUnit, ModelUnit
from weightguard.catalogue.local_engine import LocalEngine
from weightguard.catalogue.ray_engine import RayEngine, task_options
from weightguard.catalogue.runner import run_catalogue
from weightguard.errors import MissingExtraError
from weightguard.policy.load import load_builtin

HAVE_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAVE_RAY, reason="ray is not installed (pip install 'weightguard[cluster]')")


def test_probe_units_alone_ask_ray_for_a_gpu() -> None:
    probe = ModelUnit("k", "m", (), (), probes=True)
    plain = ModelUnit("k", "m", (), (), probes=False)
    scan = FileUnit("0" * 64, 1, "f")
    assert task_options(probe, max_retries=2)["num_gpus"] == 1
    assert task_options(plain, max_retries=2)["num_gpus"] == 0
    assert task_options(scan, max_retries=2) == {"num_cpus": 1, "num_gpus": 0, "max_retries": 2, "retry_exceptions": False}


def test_without_ray_the_ray_engine_names_the_cluster_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes `import ray` fail, as on an install without the extra.
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MissingExtraError) as caught:
        RayEngine()
    assert "cluster" in caught.value.diagnostics()


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    # The test's unit wrappers live in the test tree, which Ray workers cannot import: ship them by value.
    ray.cloudpickle.register_pickle_by_value(builders)
    yield
    ray.shutdown()


@needs_ray
def test_ray_gives_the_same_verdicts_as_the_local_engine(tmp_path: Path, ray_cluster: None) -> None:
    entries = read_catalogue(catalogue_dir(tmp_path / "models", clean=2))
    loaded = load_builtin("default")
    results = []
    for name, engine in (("local", LocalEngine(2)), ("ray", RayEngine())):
        cache = ResultsCache(f"sqlite:///{tmp_path}/{name}.db", policy_sha256=loaded.sha256, version=__version__)
        try:
            summary = run_catalogue(entries, loaded, engine, cache)
        finally:
            engine.close()
        results.append([(m.entry.target, m.verdict, m.report.exit_code if m.report else None) for m in summary.models])
    assert results[0] == results[1]
    assert [v for _, v, _ in results[1]] == ["approved", "approved", "rejected", "incomplete"]


@needs_ray
def test_ray_reruns_a_unit_whose_worker_was_killed(tmp_path: Path, ray_cluster: None) -> None:
    models = catalogue_dir(tmp_path / "models", clean=2)
    victim = hashlib.sha256((models / "clean-0" / "model.safetensors").read_bytes()).hexdigest()
    marker = tmp_path / "killed-once"
    loaded = load_builtin("default")
    cache = ResultsCache(f"sqlite:///{tmp_path}/r.db", policy_sha256=loaded.sha256, version=__version__)
    engine = RayEngine(max_retries=2, execute=CrashOnceExecute(victim, str(marker)))
    summary = run_catalogue(read_catalogue(models), loaded, engine, cache)
    assert marker.exists()  # the worker did die...
    assert [m.verdict for m in summary.models] == ["approved", "approved", "rejected", "incomplete"]  # ...and it ran again
