"""``weightguard serve``: run the registry sidecar (FastAPI under uvicorn; extra ``[sidecar]``).

Flags override ``WEIGHTGUARD_*`` environment variables, which override the
``--config`` YAML file. FastAPI is imported only when the command runs, so the
rest of the CLI works without the extra.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from weightguard.cli.common import fail
from weightguard.errors import MissingExtraError, WeightguardError


def serve_command(
    host: str | None = typer.Option(None, "--host", help="Address to listen on (default 127.0.0.1)."),
    port: int | None = typer.Option(None, "--port", help="Port to listen on (default 8080)."),
    policy: list[str] = typer.Option(  # noqa: B008
        [], "--policy", "-p", help="Default policy: a YAML file or builtin:NAME; repeat to layer overlays in order."
    ),
    model_root: list[Path] | None = typer.Option(
        None, "--model-root", help="Directory local targets must be inside (repeatable)."
    ),
    database: str | None = typer.Option(
        None, "--database", help="Jobs and rollout record URL (sqlite:///PATH or postgresql://USER@HOST/DB)."
    ),
    workers: int | None = typer.Option(None, "--workers", help="Verification worker threads."),
    queue_size: int | None = typer.Option(None, "--queue-size", help="Jobs that may wait before 429."),
    config: Path | None = typer.Option(None, "--config", help="YAML file with sidecar settings."),
    insecure_registry: list[str] | None = typer.Option(
        None, "--insecure-registry", help="HOST:PORT the Harbor adapter may pull from over plain HTTP (repeatable)."
    ),
    registry_ca_bundle: Path | None = typer.Option(
        None, "--registry-ca-bundle", help="PEM CA bundle for the registries the Harbor adapter pulls from."
    ),
) -> None:
    """Serve the verification API, the Harbor adapter and the webhook receivers."""
    try:
        from weightguard.sidecar.app import create_app
        from weightguard.sidecar.server import run
        from weightguard.sidecar.settings import load_settings
    except ImportError as exc:
        raise fail(MissingExtraError("sidecar", "weightguard serve")) from exc
    try:
        settings = load_settings(
            config,
            host=host,
            port=port,
            policy=(policy[0] if len(policy) == 1 else policy) if policy else None,
            model_roots=model_root or None,
            database=database,
            workers=workers,
            queue_size=queue_size,
            oci_insecure_registries=insecure_registry or None,
            oci_ca_bundle=registry_ca_bundle,
        )
        app = create_app(settings)
    except WeightguardError as exc:
        raise fail(exc) from exc
    sys.stderr.write(f"weightguard sidecar listening on http://{settings.host}:{settings.port}\n")
    run(app, settings)  # uvicorn, with deadlines for slow clients (see weightguard.sidecar.server)


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""
    app.command("serve")(serve_command)
