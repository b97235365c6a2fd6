"""The catalogue's HTML report: one self-contained page over a whole ``verify-many`` run.

The page follows the single-model report (:mod:`weightguard.report.html`): inline
CSS, plots as inline SVG drawn by matplotlib, no JavaScript, and the same
Content-Security-Policy meta tag forbidding scripts and network fetches. The
verdict comes first (the overall verdict, the counts by verdict with a small
bar chart and the same numbers as a table), then the run's statistics, every
model (rejected and incomplete first), the findings over the catalogue, the
slowest models, and one detailed section per model that was not approved,
drawn with the single report's macros. Detailed sections and finding rows are
bounded so a catalogue of thousands of models still gives a page a browser
opens; the page says how much it left out.
Every target, path and message comes from files someone else wrote: jinja2
autoescaping is on for every template, which is also what makes the id and
heading rewriting in :func:`_nested` sound (untrusted text can never hold a
literal ``<`` or ``"``).
Not handled here: running or judging anything (the summary is already judged),
the text/JSON/SARIF renderings (:mod:`weightguard.catalogue.report`), or
writing the file (the CLI does).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from jinja2 import PackageLoader
from markupsafe import Markup

from weightguard.catalogue.interface import CatalogueSummary, ModelOutcome
from weightguard.catalogue.report import CatalogueFinding, CatalogueReport, ModelLine
from weightguard.report.html import CSP, PageContext, make_environment, page_context

# The figure helpers are html_plots' own: one rcParams lock, the fixed hash salt, and the
# accessible-SVG serialisation (title, desc, per-plot ids) every plot on a page must share.
from weightguard.report.html_plots import Plot, counts_plot, plots_available
from weightguard.report.model import Report, Verdict

MAX_SECTIONS = 50  # detailed per-model sections on one page
MAX_FINDING_ROWS = 1000  # rows of the catalogue-wide findings table
MAX_SECTION_FINDINGS = 100  # findings shown with their evidence in one model's section
_VERDICTS: tuple[Verdict, ...] = ("rejected", "incomplete", "approved")
_RANK = {v: i for i, v in enumerate(_VERDICTS)}
_HEADING = re.compile(r"<(/?)h([1-6])(?=[\s>])")
_TAG = re.compile(r"<[^<>]*>")  # escaped text and plot labels never hold a bare < or >
_ID = re.compile(r'\bid="([^"]+)"')
_REFERENCE = re.compile(r'(\b(?:aria-labelledby|aria-describedby)=")([^"]*)(")|(href="#|url\(#)([^")]+)')


@dataclass(frozen=True, slots=True)
class ModelRow:
    """A line of the models table, with the anchor of its detailed section ("" when it has none)."""

    line: ModelLine
    anchor: str


@dataclass(frozen=True, slots=True)
class ModelSection:
    """One non-approved model's detailed section: its line and its own report's page context."""

    line: ModelLine
    anchor: str
    key: str  # prefix of the ids inside the section (plots, probe anchors, the reused macros' sections)
    page: PageContext
    findings_left_out: int = 0


@dataclass(frozen=True, slots=True)
class CataloguePage:
    """Everything the catalogue template reads."""

    report: CatalogueReport
    verdict: Verdict
    models: tuple[ModelRow, ...]
    findings: tuple[CatalogueFinding, ...]
    findings_left_out: int
    counts_plot: Plot | None
    plots_note: str
    sections: tuple[ModelSection, ...]
    sections_left_out: int
    unjudged: int  # models not approved that have no report at all (could not be judged)
    csp: str = CSP


def overall_verdict(report: CatalogueReport) -> Verdict:
    """The run's verdict, ranked as its exit code: any rejection, else any incomplete model, else approved."""
    return next((v for v in _VERDICTS[:2] if report.counts.get(v)), "approved")


def _section(index: int, line: ModelLine, own: Report, plots: bool) -> ModelSection:
    """A model's detailed section, its findings bounded (blocking ones come first in the page context)."""
    page = page_context(own, plots=plots, key=f"m{index}")
    left_out = max(0, len(page.findings) - MAX_SECTION_FINDINGS)
    if left_out:
        page = dataclasses.replace(page, findings=page.findings[:MAX_SECTION_FINDINGS])
    return ModelSection(line, f"model-{index}", f"m{index}", page, left_out)


def _nested(html: str, key: str, shift: int) -> Markup:
    """Reuse a single-report fragment inside a model section.

    The report macros give their sections fixed ids and ``h2``/``h3`` headings; here
    several of them share one page under an ``h3``, so every id not already namespaced
    with ``key`` (plots and probe anchors are) is prefixed with it, references follow,
    and headings move ``shift`` levels down (never past ``h6``). Only tags are rewritten:
    autoescaping (and matplotlib, in plot SVG) keeps a bare ``<`` or ``>`` out of text, but
    plot labels may hold quotes, so a label that looks like an attribute is left as it is.
    """
    mine = {name for tag in _TAG.findall(html) for name in _ID.findall(tag) if not name.startswith(f"{key}-")}

    def rename(name: str) -> str:
        return f"{key}-{name}" if name in mine else name

    def reference(match: re.Match[str]) -> str:
        if match.group(1):
            names = " ".join(rename(n) for n in match.group(2).split())
            return f"{match.group(1)}{names}{match.group(3)}"
        return f"{match.group(4)}{rename(match.group(5))}"

    # Inside tags only: a plot label's text may hold a quote and what looks like an attribute.
    out = _TAG.sub(
        lambda tag: _REFERENCE.sub(reference, _ID.sub(lambda m: f'id="{rename(m.group(1))}"', tag.group(0))), html
    )
    out = _HEADING.sub(lambda m: f"<{m.group(1)}h{min(6, int(m.group(2)) + shift)}", out)
    return Markup(out)  # noqa: S704 - rewrites markup the autoescaping templates produced


def _within(path: str, model: str) -> str:
    """A finding's path relative to its model's target, when it lies inside it (the table names the model)."""
    prefix = model.rstrip("/") + "/"
    return path[len(prefix) :] if path.startswith(prefix) and len(path) > len(prefix) else path


def _own_report(outcome: ModelOutcome | None) -> Report | None:
    return outcome.report if outcome is not None else None


def catalogue_page(summary: CatalogueSummary, report: CatalogueReport, *, plots: bool = True) -> CataloguePage:
    """Build what the catalogue template needs.

    Args:
        summary: The run (it holds each model's full report, for the detailed sections).
        report: The catalogue report made from ``summary``.
        plots: Draw the counts chart and the models' plots when matplotlib is installed.
    """
    available = plots and plots_available()
    if not plots:
        note = "Plots were turned off for this rendering; the tables hold the same numbers."
    elif not available:
        note = "matplotlib is not installed (pip install 'weightguard[probes]'), so plots are shown as tables."
    else:
        note = ""
    lines = sorted(report.models, key=lambda line: _RANK[line.verdict])  # stable: catalogue order within a verdict
    outcomes = {o.entry.target: o for o in summary.models}
    detailed = [
        (i, line, own)
        for i, line in enumerate(lines)
        if line.verdict != "approved" and (own := _own_report(outcomes.get(line.target))) is not None
    ]
    sections = [_section(i, line, own, plots) for i, line, own in detailed[:MAX_SECTIONS]]
    anchors = {s.line.target: s.anchor for s in sections}
    order = {line.target: i for i, line in enumerate(lines)}
    findings = sorted(
        report.findings, key=lambda f: (not f.blocking, -f.severity.rank, order.get(f.model, len(order)), f.path)
    )
    return CataloguePage(
        report=report,
        verdict=overall_verdict(report),
        models=tuple(ModelRow(line, anchors.get(line.target, "")) for line in lines),
        findings=tuple(findings[:MAX_FINDING_ROWS]),
        findings_left_out=max(0, len(findings) - MAX_FINDING_ROWS),
        counts_plot=counts_plot("counts", report.counts, _VERDICTS) if available else None,
        plots_note=note,
        sections=tuple(sections),
        sections_left_out=len(detailed) - len(sections),
        unjudged=sum(1 for line in lines if line.verdict != "approved") - len(detailed),
    )


def render_catalogue_html(summary: CatalogueSummary, report: CatalogueReport, *, plots: bool = True) -> str:
    """Return the catalogue run as one self-contained HTML page.

    Args:
        summary: The run, as :func:`weightguard.catalogue.runner.run_catalogue` returns it.
        report: ``catalogue_report(summary, ...)``.
        plots: Draw plots with matplotlib when it is installed (False: tables only).
    """
    env = make_environment([PackageLoader("weightguard.catalogue", "templates")])
    env.filters["nested"] = _nested
    env.filters["within"] = _within
    page = catalogue_page(summary, report, plots=plots)
    return env.get_template("catalogue.html.j2").render(page=page)


__all__ = [
    "MAX_FINDING_ROWS",
    "MAX_SECTION_FINDINGS",
    "MAX_SECTIONS",
    "CataloguePage",
    "ModelRow",
    "ModelSection",
    "catalogue_page",
    "counts_plot",
    "overall_verdict",
    "render_catalogue_html",
]
