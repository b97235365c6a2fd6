"""Shared fixtures: paths and policy helpers used across the suite."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Under pytest-xdist every worker would give torch (OpenMP) a thread per core: two workers on two
# cores then run four spinning threads and the probe tests take three times as long. Share the cores.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    _threads = str(max(1, _cores // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    os.environ.setdefault("OMP_NUM_THREADS", _threads)
    os.environ.setdefault("MKL_NUM_THREADS", _threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(autouse=True)
def _private_state_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test writes the user's real state directory (the default rollout record and cache live there)."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("xdg-state")))


@pytest.fixture
def repo_root() -> Path:
    return REPO


@pytest.fixture
def write_policy(tmp_path: Path):
    """Write a policy YAML with the given spec body (indented YAML text) and return its path."""

    def _write(spec: str = "", name: str = "test") -> Path:
        body = "\n".join("  " + line for line in spec.strip("\n").splitlines()) if spec.strip() else "  {}"
        text = (
            "apiVersion: weightguard/v1alpha1\nkind: VerificationPolicy\n"
            f"metadata:\n  name: {name}\nspec:\n{body}\n"
        )
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        return path

    return _write


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-goldens", action="store_true", help="rewrite tests/goldens from the current renderers")


# A real PostgreSQL (issue 17, replicas): `postgres_server`, `postgres_url`, and `database_url`
# (every test using it runs once on SQLite and once on PostgreSQL).
from postgres_support import database_url, postgres_server, postgres_url  # noqa: E402, F401
