"""CI integrations run as users run them: the Action's shell steps, and the pre-commit hooks through try-repo."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_models"


def _action_step(step_id_or_name: str) -> str:
    action = yaml.safe_load((REPO / "action.yml").read_text())
    for step in action["runs"]["steps"]:
        if step.get("id") == step_id_or_name or step.get("name") == step_id_or_name:
            assert step["shell"] == "bash", "composite run steps must declare their shell"
            return step["run"]
    raise AssertionError(f"no step {step_id_or_name}")


def _render(script: str, values: dict[str, str]) -> str:
    # What the Actions runner does before running a step: substitute ${{ ... }} expressions.
    return re.sub(r"\$\{\{\s*([\w.-]+)\s*\}\}", lambda m: values[m.group(1)], script)


def _run_action(tmp_path: Path, model: Path) -> tuple[int, dict[str, str]]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    output_file = tmp_path / "github_output"
    output_file.write_text("")
    env["GITHUB_OUTPUT"] = str(output_file)
    sarif = tmp_path / "wg.sarif"
    inputs = {"inputs.path": str(model), "inputs.policy": "", "inputs.output": str(sarif)}
    verify = subprocess.run(
        ["bash", "-c", _render(_action_step("verify"), inputs)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert verify.returncode == 0, verify.stderr  # the verify step records the code and never fails itself
    outputs = dict(line.split("=", 1) for line in output_file.read_text().splitlines())
    values = {
        **inputs,
        "steps.verify.outputs.exit-code": outputs["exit-code"],
        "steps.verify.outputs.verdict": outputs["verdict"],
    }
    final = subprocess.run(
        ["bash", "-c", _render(_action_step("Fail on a blocked or incomplete verification"), values)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert sarif.exists() and '"version": "2.1.0"' in sarif.read_text()
    return final.returncode, outputs


def test_the_action_passes_an_approved_model(tmp_path: Path) -> None:
    code, outputs = _run_action(tmp_path, SAMPLES / "approved")
    assert (code, outputs["verdict"]) == (0, "approved")


def test_the_action_fails_the_job_on_a_blocked_model(tmp_path: Path) -> None:
    code, outputs = _run_action(tmp_path, SAMPLES / "blocked")
    assert (code, outputs["verdict"], outputs["exit-code"]) == (1, "rejected", "1")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None, reason="pre-commit needs git")
def test_pre_commit_try_repo_blocks_a_staged_malicious_checkpoint(tmp_path: Path) -> None:
    pre_commit = Path(sys.executable).with_name("pre-commit")
    if not pre_commit.exists():
        pytest.skip("pre-commit is not installed (it is in the [test] extra)")
    # try-repo needs a git repository to clone: snapshot the working tree into one.
    hooks_repo = tmp_path / "hooks-repo"
    shutil.copytree(
        REPO, hooks_repo, ignore=shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.egg-info", ".pytest_cache")
    )
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q"], cwd=hooks_repo, check=True)
    subprocess.run([*git, "add", "-A"], cwd=hooks_repo, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "hooks"], cwd=hooks_repo, check=True)
    work = tmp_path / "work"
    work.mkdir()
    subprocess.run([*git, "init", "-q"], cwd=work, check=True)
    shutil.copy(SAMPLES / "blocked" / "pytorch_model.bin", work / "pytorch_model.bin")
    shutil.copy(SAMPLES / "approved" / "model.safetensors", work / "model.safetensors")
    subprocess.run([*git, "add", "-A"], cwd=work, check=True)
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pc-home")}
    result = subprocess.run(
        [str(pre_commit), "try-repo", str(hooks_repo), "weightguard-scan", "--all-files"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode != 0, result.stdout + result.stderr
    assert "WG-PKL-001" in result.stdout + result.stderr
