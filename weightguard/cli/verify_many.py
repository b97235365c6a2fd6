"""``weightguard verify-many``: verify a catalogue of models, locally or on a Ray cluster.

Exit 0 when every model is approved, 1 when any is rejected, 2 when any
could not be verified (or the run itself could not proceed).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path

import typer

from weightguard.cli.common import OUTPUT_OPTION, POLICY_OPTION, emit, fail
from weightguard.errors import WeightguardError


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


@contextmanager
def _progress_bar(enabled: bool) -> Iterator[Callable[[str, int, int], None] | None]:
    """A rich progress bar on stderr, one task per phase; nothing when stderr is not a terminal."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

    tasks: dict[str, TaskID] = {}
    columns = (TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:

        def update(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done, total=total)

        yield update


def verify_many_command(
    catalog: Path = typer.Argument(..., help="A file listing targets (one per line) or a directory of models."),
    policy: Path | None = POLICY_OPTION,
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
) -> None:
    """Verify every model of CATALOG; exit 0 all approved, 1 any rejected, 2 any incomplete."""
    from weightguard import __version__
    from weightguard.catalogue.cache import ResultsCache
    from weightguard.catalogue.catalogue import read_catalogue
    from weightguard.catalogue.interface import Engine
    from weightguard.catalogue.report import catalogue_report, render_json, render_sarif, render_text
    from weightguard.catalogue.runner import run_catalogue
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
            with _progress_bar(sys.stderr.isatty()) as progress:
                summary = run_catalogue(
                    entries,
                    loaded,
                    runner,
                    cache,
                    progress=progress,
                    convert_root=convert_dir,
                    trust_file_metadata=trust_file_metadata,
                )
        finally:
            runner.close()
            cache.close()
        report = catalogue_report(summary, loaded, __version__)
    except WeightguardError as exc:
        raise fail(exc) from exc
    if fmt is ManyFormat.JSON:
        body = render_json(report)
    elif fmt is ManyFormat.SARIF:
        body = render_sarif(summary, report, root=Path.cwd())
    elif fmt is ManyFormat.HTML:
        from weightguard.catalogue.html import render_catalogue_html  # jinja2 only when HTML is asked for

        body = render_catalogue_html(summary, report)
    else:
        body = render_text(report)
    counts = report.counts
    line = (
        f"weightguard: {counts['approved']} approved, {counts['rejected']} rejected, "
        f"{counts['incomplete']} incomplete (exit {report.exit_code})"
    )
    emit(body, line, output, for_people=fmt is ManyFormat.TEXT)
    raise typer.Exit(report.exit_code)


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""
    app.command("verify-many")(verify_many_command)
