"""``weightguard completion SHELL``: print the shell completion script.

Typer's own ``--install-completion`` edits the user's shell start-up file and
``--show-completion`` guesses the shell from the parent process; this command
does neither: it prints the script for the named shell, for packagers and for
``eval "$(weightguard completion bash)"``. The script is typer's, so it talks to
the same completion protocol (``_WEIGHTGUARD_COMPLETE``) the options install.
"""

from __future__ import annotations

import sys
from enum import Enum

import typer


class Shell(str, Enum):
    """Shells typer can complete for."""

    BASH = "bash"
    ZSH = "zsh"
    FISH = "fish"
    POWERSHELL = "powershell"
    PWSH = "pwsh"


PROG = "weightguard"
COMPLETE_VAR = "_WEIGHTGUARD_COMPLETE"


def completion_command(
    shell: Shell = typer.Argument(..., help="The shell to print the script for.", case_sensitive=False),
) -> None:
    """Print the completion script for SHELL (e.g. eval "$(weightguard completion bash)")."""
    # typer's own script (what --show-completion prints); typer keeps it in a private module
    from typer._completion_shared import get_completion_script

    sys.stdout.write(
        get_completion_script(prog_name=PROG, complete_var=COMPLETE_VAR, shell=shell.value).rstrip("\n") + "\n"
    )


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""
    app.command("completion")(completion_command)
