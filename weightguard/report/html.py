"""The HTML report: one self-contained page people read, rendered from the Report.

The page needs nothing beyond itself: the CSS is inline, plots are inline SVG
made by matplotlib (see :mod:`weightguard.report.html_plots`), there is no
JavaScript, and a Content-Security-Policy meta tag forbids scripts and
network fetches so the file is safe to open offline or attach to a CI run.
The verdict comes first, then the findings with their evidence (for pickles
the opcode path to the offending global and the decompiled excerpt), the
integrity diff, signatures, probe suspects with plots, and the coverage.
Every string from a report is untrusted (a hostile model names its own
tensors and pickle strings): jinja2 autoescaping is on for every template.
Not handled here: deciding anything (the report is already judged), writing
files (the CLI does) or the sidecar's dashboard (:mod:`weightguard.sidecar_dashboard`).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from jinja2 import BaseLoader, ChoiceLoader, Environment, PackageLoader, StrictUndefined

from weightguard.convert.interface import ConversionProof
from weightguard.findings import Severity
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
from weightguard.report.model import FindingModel, Report

# The page may use its own inline styles and data: images, and nothing else: no script, no fetch.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
_SEVERITY_ORDER = {
    s: i for i, s in enumerate((Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW, Severity.INFO))
}
_PICKLE_KEYS = ("global", "opcode", "offset", "call", "count", "danger", "reason", "decompiled")
_MISSING_PROBE_DATA = {
    "control_flip_rates": "the random controls' flip rates (SuspectModel.control_flip_rates: list[float])",
    "target_before": "the output distribution on clean inputs (SuspectModel.target_before: dict[str, float])",
    "target_after": "the output distribution with the trigger (SuspectModel.target_after: dict[str, float])",
}


@dataclass(frozen=True, slots=True)
class FindingView:
    """A finding with its evidence split for display."""

    finding: FindingModel
    opcode_path: tuple[str, ...]
    decompiled: str
    evidence: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class SuspectView:
    """A probe suspect with its plots and what the report lacks to draw the rest."""

    suspect: SuspectModel
    anchor: str
    plots: tuple[Plot, ...]
    missing: tuple[str, ...]


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
    return FindingView(f, tuple(path), f.evidence.get("decompiled", ""), rest)


def page_context(report: Report, *, plots: bool = True, key: str = "p") -> PageContext:
    """Build what the templates need; ``key`` prefixes plot ids so several reports can share a page."""
    available = plots and plots_available()
    if not plots:
        note = "Plots were turned off for this rendering; the tables hold the same numbers."
    elif not available:
        note = "matplotlib is not installed (pip install 'weightguard[probes]'), so plots are shown as tables."
    else:
        note = ""
    ordered = sorted(report.findings, key=lambda f: (not f.blocking, _SEVERITY_ORDER[f.severity], f.path, f.code))
    probes = _probe_view(report.probes, key, available) if report.probes is not None else None
    # Report.conversion is being added to the model; read it so the page shows it as soon as it lands.
    conversion = getattr(report, "conversion", None)
    proof = conversion if isinstance(conversion, ConversionProof) else None
    return PageContext(report, tuple(finding_view(f) for f in ordered), probes, available, note, proof)


def _probe_view(probes: ProbeReport, key: str, draw: bool) -> ProbeView:
    shown = [s for s in probes.suspects if s.level != "info"] or list(probes.suspects)
    overview = None
    if draw and shown:
        overview = flip_rates_overview(
            f"{key}-overview", [s.trigger for s in shown], [s.flip_rate for s in shown], [s.p_value for s in shown]
        )
    views = tuple(_suspect_view(s, f"{key}-s{i}", draw) for i, s in enumerate(probes.suspects))
    return ProbeView(probes, overview, views)


def _suspect_view(s: SuspectModel, key: str, draw: bool) -> SuspectView:
    # Fields a later ProbeReport may carry; read defensively so the page works before and after they land.
    controls = _floats(getattr(s, "control_flip_rates", None))
    before = _distribution(getattr(s, "target_before", None))
    after = _distribution(getattr(s, "target_after", None))
    # Weight-space notes (level info) have no flip rate to plot, so nothing is missing for them.
    wanted = s.level != "info"
    missing = [text for name, text in _MISSING_PROBE_DATA.items() if wanted and not getattr(s, name, None)]
    plots: list[Plot] = []
    if draw and controls:
        plots.append(flip_rate_plot(f"{key}-flip", s.trigger, s.flip_rate, controls, s.p_value))
    if draw and before and after:
        plots.append(target_distribution_plot(f"{key}-dist", s.trigger, before, after))
    if s.patch is not None:
        p = s.patch
        drawing = PatchDrawing(
            p.top,
            p.left,
            p.size,
            p.pattern,
            height=_int(getattr(p, "image_height", None)),
            width=_int(getattr(p, "image_width", None)),
            pixels=getattr(p, "pixels", None),
            sample_png=_png(getattr(p, "sample_png", None)),
        )
        if draw:
            plots.append(patch_plot(f"{key}-patch", s.trigger, drawing))
        if drawing.height is None:
            missing.append("the model's input size (PatchModel.image_height / image_width: int)")
        if drawing.pixels is None:
            missing.append("the inverted patch's pixels (PatchModel.pixels: list[list[list[float]]], C x size x size)")
        if drawing.sample_png is None:
            missing.append("a probe image to draw it on (PatchModel.sample_png: base64 PNG at the input size)")
    return SuspectView(s, key, tuple(plots), tuple(missing))


def _floats(value: object) -> list[float]:
    if not isinstance(value, list | tuple):
        return []
    return [float(v) for v in value if isinstance(v, int | float)]


def _distribution(value: object) -> dict[str, float]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): float(v) for k, v in value.items() if isinstance(v, int | float)}


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and value > 0 else None


def _png(value: object) -> bytes | None:
    if not isinstance(value, str) or not value:
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
    env = make_environment()
    return env.get_template("report.html.j2").render(page=page_context(report, plots=plots))


__all__ = ["CSP", "FindingView", "PageContext", "finding_view", "make_environment", "page_context", "render_html"]
