"""The lazy command table says exactly what each command module registers.

The root group imports a command's module only when that command is looked
up, by its name in ``weightguard.cli.COMMANDS``; a command a module registers
but the table misses would silently vanish from the CLI.
"""

from __future__ import annotations

import importlib
import re

import typer
import typer.main
from typer.testing import CliRunner

from weightguard.cli import COMMANDS, build_app


def registered_by(module_name: str) -> set[str]:
    app = typer.Typer()
    importlib.import_module(f"weightguard.cli.{module_name}").register(app)
    return set(typer.main.get_group(app).commands)


def test_the_table_lists_exactly_what_each_module_registers() -> None:
    for module_name in set(COMMANDS.values()):
        assert registered_by(module_name) == {n for n, m in COMMANDS.items() if m == module_name}, module_name


def test_help_lists_every_command_of_the_table() -> None:
    result = CliRunner().invoke(build_app(), ["--help"])
    assert result.exit_code == 0
    missing = [name for name in COMMANDS if not re.search(rf"^│ {re.escape(name)} ", result.output, re.M)]
    assert missing == []


def test_an_unknown_command_is_a_usage_error_naming_it() -> None:
    result = CliRunner().invoke(build_app(), ["rollout"])
    assert result.exit_code == 2 and "rollout" in result.output


def test_a_typo_is_answered_with_the_nearest_commands_even_those_not_loaded_yet() -> None:
    result = CliRunner().invoke(build_app(), ["verfy-many"])
    assert result.exit_code == 2 and "Did you mean 'verify-many'" in result.output


def test_version_is_answered_in_and_out_of_the_fast_path() -> None:
    # main() answers a bare --version before typer; the typer option still answers it after other options
    result = CliRunner().invoke(build_app(), ["--version"])
    assert result.exit_code == 0 and result.output.startswith("weightguard ")
