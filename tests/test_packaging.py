"""Packaging: the core installs without torch, and the Dockerfile installs what the README documents."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

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


def test_dockerfile_installs_the_core_package_like_the_readme() -> None:
    docker_targets = _pip_installs((REPO / "Dockerfile").read_text())
    readme_targets = _pip_installs((REPO / "README.md").read_text())
    assert docker_targets, "the Dockerfile must pip install the package"
    # The main-job command of the README installs the core package; the image must install the same.
    assert docker_targets[0] == readme_targets[0] == "."


def test_dockerfile_runs_as_non_root_with_weightguard_as_entrypoint() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^USER (?!root)\w+", text, re.M)
    assert 'ENTRYPOINT ["weightguard"]' in text
    assert "HEALTHCHECK" in text


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
