"""The command-line interface: thin commands over the library, one module each.

Commands are listed explicitly in ``COMMANDS``. Every command catches only
:class:`~weightguard.errors.WeightguardError`; anything else is a bug and is
reported as such (exit 2) rather than as a verdict.
"""

from __future__ import annotations

import sys
from types import ModuleType

import typer

from weightguard import __version__
from weightguard.cli import (
    convert,
    lock,
    policy,
    probe,
    render,
    rollout,
    rules,
    scan,
    serve,
    sign,
    verify,
    verify_many,
    verify_signature,
)
from weightguard.cli import hash as hash_cmd


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"weightguard {__version__}\n")
        raise typer.Exit(0)


COMMANDS: tuple[ModuleType, ...] = (
    scan,
    verify,
    verify_many,
    convert,
    probe,
    hash_cmd,
    lock,
    sign,
    verify_signature,
    rollout,
    serve,
    render,
    rules,
    policy,
)


def build_app() -> typer.Typer:
    """Build the Typer application with every command registered."""
    app = typer.Typer(
        name="weightguard",
        help="Verify model weights before rollout: formats, static analysis, integrity, signatures, probes.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )

    @app.callback()
    def _root(
        version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
    ) -> None:
        """weightguard: the gate in front of model rollout."""

    for module in COMMANDS:
        module.register(app)
    return app


def main() -> None:
    """Run the CLI; unexpected exceptions exit 2 with a clear message, never a verdict."""
    app = build_app()
    try:
        app(standalone_mode=True)
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001 - last line of defence: a crash must still fail closed
        sys.stderr.write(f"weightguard: internal error: {type(exc).__name__}: {exc}\n")
        sys.exit(2)
