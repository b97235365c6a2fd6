"""The command-line interface: thin commands over the library, one module each.

Commands are listed explicitly in ``COMMANDS`` (command name -> the module under
``weightguard.cli`` whose ``register`` adds it). Every command catches only
:class:`~weightguard.errors.WeightguardError`; anything else is a bug and is
reported as such (exit 2) rather than as a verdict.

Start-up is part of the interface: pre-commit hooks and CI steps run the CLI
once per file or job, so every import it does not need is paid again and again
(``benchmarks/startup.py`` measures it, ``tests/cli/test_import_budget.py``
guards it). Hence:

* ``main`` answers a bare ``--version`` before importing typer at all;
* the root group is a :class:`LazyGroup` (click's documented lazy-loading
  pattern): a command's module is imported only when that command is looked up,
  so ``weightguard scan`` never imports the signing, rollout or server modules;
* command modules import the library inside their function bodies;
* the objects alive at exit are frozen, so the interpreter's last garbage
  collection does not walk them all before the process ends.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
from typing import TYPE_CHECKING

from weightguard import __version__

if TYPE_CHECKING:
    import typer
    from typer._click import Command, Context

# Order is the order ``--help`` lists them in. One module may register several commands.
COMMANDS: dict[str, str] = {
    "scan": "scan",
    "verify": "verify",
    "verify-many": "verify_many",
    "convert": "convert",
    "probe": "probe",
    "hash": "hash",
    "lock": "lock",
    "sign": "sign",
    "verify-signature": "verify_signature",
    "promote": "rollout",
    "approve": "rollout",
    "status": "rollout",
    "history": "rollout",
    "revoke": "rollout",
    "attestation": "rollout",
    "serve": "serve",
    "render": "render",
    "rules": "rules",
    "policy": "policy",
    "completion": "completion",
}

_HELP = "Verify model weights before rollout: formats, static analysis, integrity, signatures, probes."


def _version(value: bool) -> None:
    if value:
        import typer

        sys.stdout.write(f"weightguard {__version__}\n")
        raise typer.Exit(0)


def _lazy_group_class() -> type:
    """Return the root group class; built on first use so that importing this package stays free of typer."""
    import typer
    from typer.core import TyperGroup

    class LazyGroup(TyperGroup):
        """A group whose commands are imported from ``COMMANDS`` when first looked up."""

        def list_commands(self, ctx: Context) -> list[str]:
            return [*COMMANDS, *(name for name in super().list_commands(ctx) if name not in COMMANDS)]

        def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
            if cmd_name not in self.commands and cmd_name in COMMANDS:
                self._load(COMMANDS[cmd_name])
            return super().get_command(ctx, cmd_name)

        def resolve_command(self, ctx: Context, args: list[str]) -> tuple[str | None, Command | None, list[str]]:
            if args and args[0] not in COMMANDS:
                # A typo: typer's "Did you mean" looks only at loaded commands, so load them all first.
                for module_name in dict.fromkeys(COMMANDS.values()):
                    self._load(module_name)
            return super().resolve_command(ctx, args)

        def _load(self, module_name: str) -> None:
            module = importlib.import_module(f"weightguard.cli.{module_name}")
            holder = typer.Typer()
            module.register(holder)
            # get_group turns the module's typer commands into click commands exactly as a
            # direct registration on the root app would (same markup mode, same defaults).
            for name, command in typer.main.get_group(holder).commands.items():
                self.commands.setdefault(name, command)

    return LazyGroup


def build_app() -> typer.Typer:
    """Build the Typer application; commands are registered lazily (see the module docstring)."""
    import typer

    app = typer.Typer(
        name="weightguard",
        help=_HELP,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        cls=_lazy_group_class(),
    )

    @app.callback()
    def _root(
        version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
    ) -> None:
        """weightguard: the gate in front of model rollout."""

    return app


def main() -> None:
    """Run the CLI; unexpected exceptions exit 2 with a clear message, never a verdict."""
    if sys.argv[1:] == ["--version"]:
        # The one answer that needs nothing: no typer, no library (pre-commit and CI ask it often).
        sys.stdout.write(f"weightguard {__version__}\n")
        return
    # pydantic would otherwise load every installed distribution's "pydantic" entry points the
    # first time a model is built: code from any package in the environment, run inside the gate,
    # after reading every distribution's metadata (~7 ms here). weightguard uses no pydantic plugin
    # (typer disables them for its own adapters too); a user who sets the variable keeps the choice.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    app = build_app()
    try:
        app(standalone_mode=True)
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001 - last line of defence: a crash must still fail closed
        sys.stderr.write(f"weightguard: internal error: {type(exc).__name__}: {exc}\n")
        sys.exit(2)
    finally:
        # The process exits next. Its final garbage collection would walk every object the
        # imports created (pydantic schemas, typer's adapters, rule tables) only to free memory
        # the OS reclaims anyway: ~60 ms of a 0.3 s scan. Frozen objects are skipped by it;
        # atexit handlers and finalizers registered with weakref.finalize still run.
        gc.freeze()
