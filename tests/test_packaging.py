"""Packaging: the core installs without torch, and the Dockerfile installs what the README documents."""

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


def _pip_installs(text: str) -> list[str]:
    return re.findall(r"pip install (?:-q )?(\S+)", text)


def _stage_installs(text: str) -> dict[str, str]:
    stages: dict[str, str] = {}
    stage = ""
    for line in text.splitlines():
        if m := re.match(r"FROM \S+ AS (\w+)", line):
            stage = m.group(1)
        elif m := re.match(r"RUN pip install (\S+)", line):
            stages[stage] = m.group(1).strip("'")
    return stages


def test_dockerfile_installs_the_core_package_like_the_readme() -> None:
    stages = _stage_installs((REPO / "Dockerfile").read_text())
    readme_targets = _pip_installs((REPO / "README.md").read_text())
    # The main-job command of the README installs the core package; the core image installs the same.
    assert stages["core"] == readme_targets[0] == "."


def test_dockerfile_extras_are_the_packages_extras() -> None:
    extras = set(_pyproject()["project"]["optional-dependencies"])
    for stage, target in _stage_installs((REPO / "Dockerfile").read_text()).items():
        named = re.findall(r"\[([\w,]+)\]", target)
        for group in named:
            assert set(group.split(",")) <= extras, (stage, group)
    stages = _stage_installs((REPO / "Dockerfile").read_text())
    assert stages["sidecar"] == ".[sidecar,postgres]" and "probes" in stages["torch"]


def test_dockerfile_runs_as_non_root_with_weightguard_as_entrypoint() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^USER (?!root)\w+", text, re.M)
    assert text.rstrip().splitlines()[-1].startswith("USER weightguard"), "the last stage must drop root"
    assert 'ENTRYPOINT ["weightguard"]' in text
    assert "/healthz" in text and 'CMD ["serve"]' in text


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
def test_the_core_install_steps_of_the_image_work_in_a_fresh_venv(tmp_path: Path) -> None:
    """What the Dockerfile's core stage runs (pip install .), in a fresh virtual environment: no torch."""
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
