"""Packaging: the core installs without torch, and the README's commands and extras exist.

The Dockerfile and its lock files are checked in ``test_dockerfile.py``.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "fastapi", "uvicorn", "ray", "mlflow")


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_core_dependencies_need_no_gpu_stack() -> None:
    core = [d.lower() for d in _pyproject()["project"]["dependencies"]]
    assert not [d for d in core if d.startswith(HEAVY)]


def test_heavy_parts_live_in_extras() -> None:
    extras = _pyproject()["project"]["optional-dependencies"]
    assert any(d.startswith("torch") for d in extras["torch"])
    assert any(d.startswith("transformers") for d in extras["probes"])


def test_ci_runs_exactly_the_readme_test_command() -> None:
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    commands = re.findall(r"```bash\n(.+?)\n```", readme, re.S)
    test_command = next(c for c in commands if "pytest" in c)
    assert test_command.strip() in ci


def test_extras_in_the_readme_exist() -> None:
    extras = set(_pyproject()["project"]["optional-dependencies"])
    for group in re.findall(r"\.\[([\w,]+)\]", (REPO / "README.md").read_text()):
        assert set(group.split(",")) <= extras, group


@pytest.mark.slow
def test_the_readme_core_install_works_in_a_fresh_venv(tmp_path: Path) -> None:
    """What the README's first command runs (pip install .), in a fresh virtual environment: no torch."""
    import subprocess
    import sys

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(REPO)], capture_output=True, text=True, timeout=900, check=False)
    assert pip.returncode == 0, pip.stderr[-2000:]
    check = subprocess.run([str(venv / "bin" / "python"), "-c", "import importlib.util as u; print(u.find_spec('torch') is None)"],
                           capture_output=True, text=True, check=True)
    assert check.stdout.strip() == "True", "the core install must not pull torch"
    entry = subprocess.run([str(venv / "bin" / "weightguard"), "verify", str(REPO / "sample_models" / "blocked")],
                           capture_output=True, text=True, timeout=120, check=False)
    assert entry.returncode == 1 and "WG-PKL-001" in entry.stderr
