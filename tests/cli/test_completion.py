"""Shell completion: ``weightguard completion SHELL`` prints a script, and bash really completes with it.

The script is run by a real bash against a ``weightguard`` executable that is
this checkout's entry point, exactly as a user's shell would run it.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "weightguard", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.fixture
def weightguard_on_path(tmp_path: Path) -> dict[str, str]:
    """An environment whose PATH holds a ``weightguard`` executable running this checkout (like the console script)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "weightguard"
    script.write_text(
        f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(REPO)!r})\n"
        "from weightguard.cli import main\nsys.exit(main())\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}


@pytest.mark.parametrize(
    ("shell", "marker"),
    [("bash", "complete -o default -F"), ("zsh", "#compdef weightguard"), ("fish", "complete --command weightguard")],
)
def test_completion_prints_the_script_for_the_shell(shell: str, marker: str) -> None:
    result = run_cli("completion", shell)
    assert result.returncode == 0, result.stderr
    assert marker in result.stdout and "_WEIGHTGUARD_COMPLETE" in result.stdout


def test_completion_of_an_unknown_shell_is_a_usage_error() -> None:
    result = run_cli("completion", "tcsh")
    assert result.returncode == 2 and "tcsh" in result.stderr


def test_root_help_offers_typer_completion_options() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    assert "--install-completion" in result.stdout and "--show-completion" in result.stdout


def _bash_complete(words: str, env: dict[str, str]) -> list[str]:
    """COMPREPLY after sourcing ``weightguard completion bash`` and completing the last word of ``words``."""
    program = (
        "source <(weightguard completion bash)\n"
        f"COMP_WORDS=({words})\n"
        "COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))\n"
        # an empty last word ("weightguard ") is kept as an element by the trailing ''
        "_weightguard_completion weightguard\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    result = subprocess.run(["bash", "-c", program], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completes_command_names(weightguard_on_path: dict[str, str]) -> None:
    assert _bash_complete("weightguard ver", weightguard_on_path) == ["verify", "verify-many", "verify-signature"]
    assert "scan" in _bash_complete("weightguard ''", weightguard_on_path)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completes_a_commands_options_and_choices(weightguard_on_path: dict[str, str]) -> None:
    assert "--format" in _bash_complete("weightguard scan --f", weightguard_on_path)
    assert _bash_complete("weightguard scan --format sa", weightguard_on_path) == ["sarif"]
