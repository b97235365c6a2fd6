"""The HTML report: one self-contained page people read, rendered from the Report.

The page needs nothing beyond itself: the CSS is inline, plots are inline SVG
made by matplotlib (see :mod:`weightguard.report.html_plots`), there is no
JavaScript, and a Content-Security-Policy meta tag forbids scripts and
network fetches so the file is safe to open offline or attach to a CI run.
The verdict comes first, then the findings with their evidence (for pickles
the opcode path to the offending global and the decompiled excerpt), the
integrity diff, signatures, probe suspects with plots, and the coverage.
Each probe suspect's plots (its flip rate against the random controls, the
output distribution without and with the trigger, an image patch drawn on a
probe image) come straight from its report fields; with plots off the same
numbers are shown as text and tables, and a note names only evidence the
report genuinely lacks (a probe that ran no controls, a patch too large to carry).
Every string from a report is untrusted (a hostile model names its own
tensors and pickle strings): jinja2 autoescaping is on for every template.
Not handled here: deciding anything (the report is already judged), writing
files (the CLI does) or the sidecar's dashboard (:mod:`weightguard.sidecar_dashboard`).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from jinja2 import BaseLoader, ChoiceLoader, Environment, PackageLoader, StrictUndefined

from weightguard.catalog import rule_for
from weightguard.convert.interface import ConversionProof
from weightguard.probes.report import ProbeReport, SuspectModel
from weightguard.report.html_plots import (
    PatchDrawing,
    Plot,
    flip_rate_plot,
    flip_rates_overview,
    patch_plot,
    plots_available,
    target_distribution_plot,
)
from weightguard.report.model import FindingModel, Report, verdict_label

# The page may use its own inline styles and data: images, and nothing else: no script, no fetch.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
PLOTTED_SUSPECTS = 12
_PICKLE_KEYS = ("global", "opcode", "offset", "call", "count", "danger", "reason", "decompiled")


@dataclass(frozen=True, slots=True)
class FindingView:
    """A finding with its evidence split for display."""

    finding: FindingModel
    opcode_path: tuple[str, ...]
    decompiled: str
    evidence: tuple[tuple[str, str], ...]
    remediation: str = ""  # the rule's full remediation text (issue 18: fixes were hidden)


@dataclass(frozen=True, slots=True)
class SuspectView:
    """A probe suspect with its plots, the same numbers as text when plots are off, and what the report lacks."""

    suspect: SuspectModel
    anchor: str
    plots: tuple[Plot, ...]
    missing: tuple[str, ...]
    controls: str = ""  # a one-line summary of the control flip rates, shown when they are not plotted
    distribution: tuple[tuple[str, float, float], ...] = ()  # (output, before, after), shown when not plotted


@dataclass(frozen=True, slots=True)
class ProbeView:
    """The probes section: an overview plot and one view per suspect."""

    report: ProbeReport
    overview: Plot | None
    suspects: tuple[SuspectView, ...]


@dataclass(frozen=True, slots=True)
class PageContext:
    """Everything the report templates read, besides the Report itself."""

    report: Report
    findings: tuple[FindingView, ...]
    probes: ProbeView | None
    plots: bool
    plots_note: str
    conversion: ConversionProof | None = None
    csp: str = CSP

    @property
    def verdict_label(self) -> str:
        """The verdict as the page names it (a scan passes or blocks; only verify approves)."""
        return verdict_label(self.report)


def make_environment(extra: Sequence[BaseLoader] = ()) -> Environment:
    """A jinja2 environment over the report templates (plus ``extra`` loaders first), autoescaping on."""
    loader = ChoiceLoader([*extra, PackageLoader("weightguard.report", "templates")])
    env = Environment(loader=loader, autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["seconds"] = _seconds
    env.filters["when"] = _when
    return env


def _when(value: dt.datetime) -> str:
    if value.utcoffset() == dt.timedelta(0):
        return value.strftime("%Y-%m-%d %H:%M:%S UTC")
    return value.isoformat(sep=" ", timespec="seconds")


def _seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


def finding_view(f: FindingModel) -> FindingView:
    """Split a finding's evidence: the opcode path and decompiled text get their own display."""
    path: list[str] = []
    if "global" in f.evidence:
        path.append(f"file {f.path}")
        path += [f"member {m}" for m in f.member.split(":") if m]
        where = f" at byte offset {f.evidence['offset']}" if "offset" in f.evidence else ""
        path.append(f"{f.evidence.get('opcode', 'opcode')}{where}")
        path.append(f"imports {f.evidence['global']}")
        if "call" in f.evidence:
            opcode, _, offset = f.evidence["call"].partition("@")
            path.append(f"called by {opcode} at byte offset {offset}" if offset else f"called by {opcode}")
    shown = _PICKLE_KEYS if path else ("decompiled",)
    rest = tuple((k, v) for k, v in f.evidence.items() if k not in shown)
    rule = rule_for(f.code)
    remediation = rule.help.strip() if rule is not None else ""
    return FindingView(f, tuple(path), f.evidence.get("decompiled", ""), rest, remediation)


def page_context(report: Report, *, plots: bool = True, key: str = "p") -> PageContext:
    """Build what the templates need; ``key`` prefixes plot ids so several reports can share a page."""
    available = plots and plots_available()
    if not plots:
        note = "Plots were turned off for this rendering; the tables hold the same numbers."
    elif not available:
        note = "matplotlib is not installed (pip install 'weightguard[probes]'), so plots are shown as tables."
    else:
        note = ""
    ordered = sorted(report.findings, key=lambda f: (not f.blocking, -f.severity.rank, f.path, f.code))
    probes = _probe_view(report.probes, key, available) if report.probes is not None else None
    # Report.conversion is being added to the model; read it so the page shows it as soon as it lands.
    proof = report.conversion
    return PageContext(report, tuple(finding_view(f) for f in ordered), probes, available, note, proof)


def _probe_view(probes: ProbeReport, key: str, draw: bool) -> ProbeView:
    shown = [s for s in probes.suspects if s.level != "info"] or list(probes.suspects)
    overview = None
    if draw and shown:
        overview = flip_rates_overview(
            f"{key}-overview", [s.trigger for s in shown], [s.flip_rate for s in shown], [s.p_value for s in shown]
        )
    samples = _samples(probes.suspects)
    # Plots for the first suspects only, blocking ones first: a wide sweep can list dozens, and
    # three plots each would make the page megabytes. The others show the same numbers as tables.
    rank = {"block": 0, "review": 1, "info": 2}
    order = sorted(range(len(probes.suspects)), key=lambda i: rank[probes.suspects[i].level])
    drawn = set(order[:PLOTTED_SUSPECTS])
    views = tuple(_suspect_view(s, f"{key}-s{i}", draw and i in drawn, samples) for i, s in enumerate(probes.suspects))
    return ProbeView(probes, overview, views)


def _samples(suspects: Sequence[SuspectModel]) -> dict[tuple[int, int], bytes]:
    """One probe image per input size: the report bounds how many suspects carry their own."""
    out: dict[tuple[int, int], bytes] = {}
    for s in suspects:
        p = s.patch
        png = _png(p.sample_png) if p is not None else None
        if p is not None and png is not None and p.image_height and p.image_width:
            out.setdefault((p.image_height, p.image_width), png)
    return out


def _suspect_view(s: SuspectModel, key: str, draw: bool, samples: Mapping[tuple[int, int], bytes]) -> SuspectView:
    controls, before, after = s.control_flip_rates, s.target_before, s.target_after
    # Weight-space notes (level info) have no flip rate to plot, so nothing is missing for them.
    wanted = s.level != "info"
    missing: list[str] = []
    if wanted and not controls:
        missing.append("random-control flip rates (this probe tested the suspect against no random controls)")
    if wanted and not (before and after):
        missing.append("the output distribution without and with the trigger")
    plots: list[Plot] = []
    if draw and controls:
        plots.append(flip_rate_plot(f"{key}-flip", s.trigger, s.flip_rate, controls, s.p_value))
    if draw and before and after:
        plots.append(target_distribution_plot(f"{key}-dist", s.trigger, before, after))
    if s.patch is not None:
        p = s.patch
        size = (p.image_height, p.image_width) if p.image_height and p.image_width else None
        # A suspect past the report's bound on samples is drawn on another probe image of the same size.
        sample = _png(p.sample_png) or (samples.get(size) if size else None)
        drawing = PatchDrawing(
            p.top,
            p.left,
            p.size,
            p.pattern,
            height=p.image_height,
            width=p.image_width,
            pixels=p.pixels,
            sample_png=sample,
        )
        if draw:
            plots.append(patch_plot(f"{key}-patch", s.trigger, drawing))
        if size is None:
            missing.append("the model's input size")
        if p.pixels is None:
            missing.append("the patch's pixels (too large to carry, or not recorded)")
        if sample is None:
            missing.append("a probe image to draw the patch on")
    summary = ""
    if controls and not draw:
        summary = (
            f"{len(controls)} random controls flip {min(controls):.1%} to {max(controls):.1%} "
            f"(mean {sum(controls) / len(controls):.1%}); this suspect flips {s.flip_rate:.1%}."
        )
    rows = (
        tuple((k, before.get(k, 0.0), after.get(k, 0.0)) for k in dict.fromkeys([*before, *after]))
        if before and after and not draw
        else ()
    )
    return SuspectView(s, key, tuple(plots), tuple(missing), summary, rows)


def _png(value: str | None) -> bytes | None:
    # The report may come from a JSON file someone else wrote: a broken sample is not drawn, never a crash.
    if not value:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def render_html(report: Report, *, plots: bool = True) -> str:
    """Return the report as one self-contained HTML page.

    Args:
        report: the report to render.
        plots: draw plots with matplotlib when it is installed (False: tables only, e.g. for goldens).
    """
    return _environment().get_template("report.html.j2").render(page=page_context(report, plots=plots))


@functools.cache
def _environment() -> Environment:
    # Compiling the templates costs more than rendering them; the sidecar renders a page per request.
    return make_environment()


__all__ = ["CSP", "FindingView", "PageContext", "finding_view", "make_environment", "page_context", "render_html"]
