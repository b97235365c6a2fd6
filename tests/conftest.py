"""Shared fixtures: paths and policy helpers used across the suite."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


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
