"""``weightguard verify-many``: verify a catalogue of models, locally or on a Ray cluster.

Exit 0 when every model is approved, 1 when any is rejected, 2 when any
could not be verified (or the run itself could not proceed).
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from weightguard.cli.common import (
    INSECURE_REGISTRY_OPTION,
    OUTPUT_OPTION,
    POLICY_OPTION,
    REGISTRY_AUTH_OPTION,
    REGISTRY_CA_OPTION,
    emit,
    fail,
)
from weightguard.cli.progress import QUIET_OPTION, progress_display, wanted
from weightguard.errors import WeightguardError

if TYPE_CHECKING:
    from weightguard.catalogue.interface import CatalogueSummary
    from weightguard.catalogue.report import CatalogueReport


class EngineChoice(str, Enum):
    """Where work units run."""

    LOCAL = "local"
    RAY = "ray"


class ManyFormat(str, Enum):
    """Output formats of the catalogue report."""

    TEXT = "text"
    JSON = "json"
    SARIF = "sarif"
    HTML = "html"
    CYCLONEDX = "cyclonedx"


def verify_many_command(
    catalog: Path = typer.Argument(..., help="A file listing targets (one per line) or a directory of models."),
    policy: list[Path] = POLICY_OPTION,
    engine: EngineChoice = typer.Option(EngineChoice.LOCAL, "--engine", help="Where work units run."),
    ray_address: str | None = typer.Option(None, "--ray-address", help="Ray cluster address (ray.init(address=...))."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Local worker processes (default: CPUs)."),
    max_retries: int = typer.Option(2, "--max-retries", min=0, help="Re-runs of a unit whose worker died."),
    database: str | None = typer.Option(
        None, "--database", help="Results cache and rollout record URL (default: the policy's rollout database)."
    ),
    fmt: ManyFormat = typer.Option(ManyFormat.TEXT, "--format", "-f", help="Output format.", case_sensitive=False),
    output: Path | None = OUTPUT_OPTION,
    convert_dir: Path | None = typer.Option(
        None,
        "--convert-dir",
        help="When the policy converts pickle weights: the folder that receives one converted copy per model "
        "(default: the working directory).",
    ),
    trust_file_metadata: bool = typer.Option(
        False,
        "--trust-file-metadata",
        help="Reuse the digests of files whose device, inode, size, mtime and ctime are unchanged since this "
        "cache hashed them, instead of reading them again (as git does; a change that keeps all five needs "
        "control of the clock). Off: every file is read and hashed on every run.",
    ),
    registry_auth_file: Path | None = REGISTRY_AUTH_OPTION,
    insecure_registry: list[str] = INSECURE_REGISTRY_OPTION,
    registry_ca_bundle: Path | None = REGISTRY_CA_OPTION,
    max_pulled: int = typer.Option(
        4,
        "--max-pulled",
        min=1,
        help="At most this many oci:// models are pulled on disk at once: a catalogue with more runs in waves "
        "(each pulled, analysed, judged and removed before the next is pulled).",
    ),
    quiet: bool = QUIET_OPTION,
) -> None:
    """Verify every model of CATALOG; exit 0 all approved, 1 any rejected, 2 any incomplete."""
    from weightguard import __version__
    from weightguard.catalogue.cache import ResultsCache
    from weightguard.catalogue.catalogue import read_catalogue
    from weightguard.catalogue.interface import Engine
    from weightguard.catalogue.report import catalogue_report
    from weightguard.catalogue.runner import run_catalogue
    from weightguard.pipeline import VerifyOptions
    from weightguard.policy.load import load_policy
    from weightguard.state import database_url

    try:
        loaded = load_policy(policy)
        entries = read_catalogue(catalog)
        cache = ResultsCache(
            database_url(database, loaded.policy.spec.rollout.database),
            policy_sha256=loaded.sha256,
            version=__version__,
        )
        runner: Engine
        if engine is EngineChoice.RAY:
            from weightguard.catalogue.ray_engine import RayEngine

            runner = RayEngine(ray_address, max_retries=max_retries)
        else:
            from weightguard.catalogue.local_engine import LocalEngine

            runner = LocalEngine(workers, max_retries=max_retries)
        try:
            with progress_display(wanted(quiet)) as display:
                summary = run_catalogue(
                    entries,
                    loaded,
                    runner,
                    cache,
                    progress=display.phase,
                    convert_root=convert_dir,
                    trust_file_metadata=trust_file_metadata,
                    registry=VerifyOptions(
                        registry_auth_file=registry_auth_file,
                        insecure_registries=tuple(insecure_registry),
                        registry_ca_bundle=registry_ca_bundle,
                    ),
                    max_pulled=max_pulled,
                )
        finally:
            runner.close()
            cache.close()
        report = catalogue_report(summary, loaded, __version__)
        body = _render(fmt, summary, report)  # may raise: a damaged cached report, a missing [bom] extra
    except WeightguardError as exc:
        raise fail(exc) from exc
    counts = report.counts
    line = (
        f"weightguard: {counts['approved']} approved, {counts['rejected']} rejected, "
        f"{counts['incomplete']} incomplete (exit {report.exit_code})"
    )
    emit(body, line, output, for_people=fmt is ManyFormat.TEXT)
    raise typer.Exit(report.exit_code)


def _render(fmt: ManyFormat, summary: CatalogueSummary, report: CatalogueReport) -> str:
    from weightguard.catalogue.report import render_json, render_sarif, render_text

    if fmt is ManyFormat.JSON:
        return render_json(report)
    if fmt is ManyFormat.SARIF:
        return render_sarif(summary, report, root=Path.cwd())
    if fmt is ManyFormat.HTML:
        from weightguard.catalogue.html import render_catalogue_html  # jinja2 only when HTML is asked for

        return render_catalogue_html(summary, report)
    if fmt is ManyFormat.CYCLONEDX:
        from weightguard.catalogue.bom import render_catalogue_cyclonedx  # the [bom] extra, only when asked for

        return render_catalogue_cyclonedx(summary, report)
    return render_text(report)


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""
    app.command("verify-many")(verify_many_command)
