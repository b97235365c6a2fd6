"""Plots for the HTML report, drawn by matplotlib and returned as inline SVG.

Each plot comes back as a :class:`Plot`: the SVG markup (with a ``<title>``
and ``<desc>`` for screen readers, and ids made unique per plot so several
can share one page) plus the same title and description for the caption.
matplotlib belongs to the ``[probes]`` extra: when it is not installed,
:func:`plots_available` is False and the HTML report shows tables instead.
Text from a report (trigger strings, labels) is drawn as SVG ``<text>``
that matplotlib XML-escapes, with mathtext parsing off so a hostile ``$``
cannot make the renderer fail.
Not handled here: deciding which plots a report gets or the page around them
(:mod:`weightguard.report.html`).
"""

from __future__ import annotations

import importlib.util
import io
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from markupsafe import Markup, escape

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from numpy.typing import NDArray

# matplotlib's rcParams are process-global; one lock keeps concurrent renders (sidecar threads) apart.
_LOCK = threading.Lock()
_RC = {
    "svg.fonttype": "none",  # text stays text: searchable, small, and no glyph <defs> whose ids would collide
    "text.parse_math": False,  # a trigger like "$\\frac" must be drawn, not parsed
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
_COLORS = {"suspect": "#b3261e", "control": "#6b7a8f", "before": "#6b7a8f", "after": "#b3261e", "patch": "#b3261e"}
_SVG_OPEN = re.compile(r"<svg\b[^>]*>")
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.DOTALL)
_PROLOGUE = re.compile(r"^.*?(?=<svg\b)", re.DOTALL)
_TAG = re.compile(r"<[^<>]*>")  # text never holds a bare < or >: matplotlib escapes them
_ID = re.compile(r'\bid="([^"]+)"')
_REF = re.compile(r'(\bid="|url\(#|href="#)([^")]+)([")])')
_MAX_LABEL = 40


@dataclass(frozen=True, slots=True)
class Plot:
    """One rendered plot: accessible inline SVG and its caption text."""

    svg: Markup
    title: str
    description: str


def plots_available() -> bool:
    """Whether matplotlib is installed (it comes with the ``[probes]`` extra)."""
    return importlib.util.find_spec("matplotlib") is not None


def _short(text: str) -> str:
    return text if len(text) <= _MAX_LABEL else text[: _MAX_LABEL - 1] + "…"


def _finish(fig: Figure, key: str, title: str, description: str) -> Plot:
    """Serialise ``fig`` as SVG markup carrying ``title`` and ``description``."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    svg = _namespaced(_METADATA.sub("", _PROLOGUE.sub("", buf.getvalue(), count=1), count=1).strip(), key)
    opening = _SVG_OPEN.search(svg)
    if opening is None:  # matplotlib always writes one; guard so a change there cannot yield broken markup
        return Plot(Markup(""), title, description)
    tag = opening.group(0)
    labelled = tag[:-1] + f' role="img" aria-labelledby="{key}-title {key}-desc" class="plot">'
    head = f'<title id="{key}-title">{escape(title)}</title><desc id="{key}-desc">{escape(description)}</desc>'
    body = svg[: opening.start()] + labelled + head + svg[opening.end() :]
    return Plot(Markup(body), title, description)  # noqa: S704 - matplotlib escapes text; our strings go through escape()


def _namespaced(svg: str, key: str) -> str:
    """Prefix every id (and each reference to one) with ``key``.

    matplotlib numbers figures, axes and clip paths the same way in every plot, and ids must be
    unique on a page that inlines several.
    """
    # Inside tags only: a label's text may hold '" id="…' (matplotlib leaves quotes in text).
    ids = {name for tag in _TAG.findall(svg) for name in _ID.findall(tag)}
    if not ids:
        return svg

    def swap(match: re.Match[str]) -> str:
        name = match.group(2)
        return f"{match.group(1)}{key}-{name}{match.group(3)}" if name in ids else match.group(0)

    return _TAG.sub(lambda tag: _REF.sub(swap, tag.group(0)), svg)


def _figure(width: float, height: float) -> tuple[Figure, Axes]:
    from matplotlib.figure import Figure  # noqa: PLC0415 - optional dependency, imported only when plotting

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.add_subplot()


def _salted(key: str) -> dict[Any, Any]:  # matplotlib types rc keys as a Literal union
    # A fixed salt makes matplotlib's hashed clip-path ids stable across runs (its default is random).
    return {**_RC, "svg.hashsalt": f"wg-{key}"}


def flip_rate_plot(key: str, trigger: str, flip_rate: float, controls: Sequence[float], p_value: float) -> Plot:
    """Histogram of the random controls' flip rates with the suspect's flip rate marked."""
    import matplotlib as mpl  # noqa: PLC0415 - optional dependency

    title = f"Flip rate of trigger {_short(trigger)!r} against {len(controls)} random controls"
    top = max(controls) if controls else 0.0
    description = (
        f"The trigger flips {flip_rate:.1%} of clean inputs; the random controls flip at most {top:.1%} "
        f"(mean {sum(controls) / max(len(controls), 1):.1%}). Corrected p-value {p_value:.2g}."
    )
    with _LOCK, mpl.rc_context(_salted(key)):
        fig, ax = _figure(5.2, 2.4)
        ax.hist(list(controls), bins=20, range=(0.0, 1.0), color=_COLORS["control"], label="random controls")
        ax.axvline(flip_rate, color=_COLORS["suspect"], linewidth=2.5, label="suspected trigger")
        ax.set_xlim(0.0, 1.0)
        ax.set_xlabel("flip rate on clean probe inputs")
        ax.set_ylabel("controls")
        ax.legend(loc="upper center", frameon=False, fontsize=8)
        return _finish(fig, key, title, description)


def flip_rates_overview(key: str, names: Sequence[str], rates: Sequence[float], p_values: Sequence[float]) -> Plot:
    """Horizontal bars: every suspect's flip rate, labelled with its p-value."""
    import matplotlib as mpl  # noqa: PLC0415 - optional dependency

    title = f"Flip rates of {len(names)} suspected trigger(s)"
    description = "; ".join(f"{_short(n)}: {r:.1%} (p={p:.2g})" for n, r, p in zip(names, rates, p_values, strict=True))
    with _LOCK, mpl.rc_context(_salted(key)):
        fig, ax = _figure(5.2, 0.6 + 0.35 * max(len(names), 1))
        ys = list(range(len(names)))
        ax.barh(ys, list(rates), color=_COLORS["suspect"])
        ax.set_yticks(ys, [_short(n) for n in names])
        ax.invert_yaxis()
        ax.set_xlim(0.0, 1.0)
        ax.set_xlabel("flip rate on clean probe inputs")
        for y, r, p in zip(ys, rates, p_values, strict=True):
            inside = r > 0.75  # no room right of a long bar: write inside it
            x, ha, color = (r - 0.02, "right", "white") if inside else (r + 0.02, "left", "black")
            ax.text(x, y, f"p={p:.2g}", va="center", ha=ha, color=color, fontsize=8)
        return _finish(fig, key, title, description)


def target_distribution_plot(key: str, trigger: str, before: dict[str, float], after: dict[str, float]) -> Plot:
    """Grouped bars: the share of each output label without and with the trigger."""
    import matplotlib as mpl  # noqa: PLC0415 - optional dependency

    labels = sorted(set(before) | set(after), key=lambda k: -max(before.get(k, 0.0), after.get(k, 0.0)))[:12]
    title = f"Output distribution before and after trigger {_short(trigger)!r}"
    description = "; ".join(f"{_short(k)}: {before.get(k, 0.0):.1%} -> {after.get(k, 0.0):.1%}" for k in labels)
    with _LOCK, mpl.rc_context(_salted(key)):
        fig, ax = _figure(5.2, 2.6)
        xs = list(range(len(labels)))
        ax.bar([x - 0.2 for x in xs], [before.get(k, 0.0) for k in labels], 0.4, label="clean", color=_COLORS["before"])
        ax.bar(
            [x + 0.2 for x in xs],
            [after.get(k, 0.0) for k in labels],
            0.4,
            label="with trigger",
            color=_COLORS["after"],
        )
        ax.set_xticks(xs, [_short(k) for k in labels], rotation=30, ha="right")
        ax.set_ylim(0.0, 1.0)
        ax.set_ylabel("share of outputs")
        ax.legend(frameon=False, fontsize=8)
        return _finish(fig, key, title, description)


@dataclass(frozen=True, slots=True)
class PatchDrawing:
    """What is known about an image trigger patch."""

    top: int
    left: int
    size: int
    pattern: str
    height: int | None = None  # model input size; None when the report does not carry it
    width: int | None = None
    pixels: Sequence[Sequence[Sequence[float]]] | None = None  # (channels, size, size) in [0, 1]
    sample_png: bytes | None = None  # a probe image at the model's input size


def patch_plot(key: str, trigger: str, patch: PatchDrawing) -> Plot:
    """The patch drawn at its location, on the sample image when the report has one."""
    import matplotlib as mpl  # noqa: PLC0415 - optional dependency
    import numpy as np  # noqa: PLC0415 - core dependency, local to keep module import light
    from matplotlib.patches import Rectangle  # noqa: PLC0415 - optional dependency

    height = patch.height or _canvas(patch.top + patch.size)
    width = patch.width or _canvas(patch.left + patch.size)
    title = f"Trigger patch {_short(trigger)!r} at its location"
    notes = []
    with _LOCK, mpl.rc_context(_salted(key)):
        fig, ax = _figure(3.2, 3.2)
        image = _sample(patch.sample_png)
        if image is None:
            notes.append("no sample image in the report: a neutral grey gradient stands in")
            ramp = np.linspace(0.35, 0.8, width)
            image = np.tile(ramp, (height, 1))
            ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, extent=(0, width, height, 0))
        else:
            ax.imshow(image, extent=(0, width, height, 0))
        span = (patch.left, patch.left + patch.size, patch.top + patch.size, patch.top)
        if patch.pixels is not None:
            pixels = np.clip(np.asarray(patch.pixels, dtype=float), 0.0, 1.0)
            ax.imshow(pixels.transpose(1, 2, 0) if pixels.shape[0] == 3 else pixels[0], cmap="gray", extent=span)
        else:
            notes.append(f"the report names the pattern ({patch.pattern}) but not its pixels: the patch is hatched")
            ax.add_patch(
                Rectangle(
                    (patch.left, patch.top), patch.size, patch.size, fill=False, hatch="xxx", color=_COLORS["patch"]
                )
            )
        ax.add_patch(
            Rectangle(
                (patch.left, patch.top), patch.size, patch.size, fill=False, linewidth=2, edgecolor=_COLORS["patch"]
            )
        )
        ax.set_xlim(0, width)
        ax.set_ylim(height, 0)
        ax.set_xlabel("x (pixels)")
        ax.set_ylabel("y (pixels)")
        if patch.height is None or patch.width is None:
            notes.append("input size not in the report: canvas sized to the patch's extent")
        description = (
            f"A {patch.size}x{patch.size} {patch.pattern} patch with its top-left corner at row {patch.top}, "
            f"column {patch.left}, on a {width}x{height} image. " + " ".join(n + "." for n in notes)
        ).strip()
        return _finish(fig, key, title, description)


def _canvas(extent: int) -> int:
    # The smallest common input size that holds the patch; a guess, and the description says so.
    return next((s for s in (32, 64, 96, 128, 224, 256, 384, 512) if s >= extent), extent)


# A probe sample is at most this many pixels a side (probes.evidence.MAX_SAMPLE_SIDE); a report
# that someone else wrote may declare any size, and a few kB of PNG can decode to gigabytes.
MAX_SAMPLE_SIDE = 256


def _sample(png: bytes | None) -> NDArray[Any] | None:
    # Width and height sit at bytes 16..24 of a PNG (the IHDR chunk); check them before decoding.
    if not png or len(png) < 24 or png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        return None
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    if not (0 < width <= MAX_SAMPLE_SIDE and 0 < height <= MAX_SAMPLE_SIDE):
        return None
    from matplotlib.image import imread  # noqa: PLC0415 - optional dependency

    try:
        return imread(io.BytesIO(png), format="png")
    except Exception:  # noqa: BLE001 - seam: any undecodable image (PIL raises its own classes) is not drawn
        return None


_K = TypeVar("_K", bound=str)
_VERDICT_COLORS = {
    "approved": "#1b6e3a",
    "rejected": "#a3211a",
    "incomplete": "#8a5a00",
}  # the page's --ok/--bad/--warn


def counts_plot(key: str, counts: Mapping[_K, int], order: Sequence[_K]) -> Plot:
    """Vertical bars: how many models got each verdict (in ``order``), each bar labelled with its count."""
    import matplotlib as mpl  # noqa: PLC0415 - optional dependency, imported only when plotting
    from matplotlib.ticker import MaxNLocator  # noqa: PLC0415 - optional dependency

    total = sum(counts.values())
    title = f"Verdicts of {total} model(s)"
    description = ", ".join(f"{counts.get(v, 0)} {v}" for v in order) + "."
    with _LOCK, mpl.rc_context(_salted(key)):
        fig, ax = _figure(4.2, 2.2)
        xs = list(range(len(order)))
        values = [counts.get(v, 0) for v in order]
        ax.bar(xs, values, color=[_VERDICT_COLORS.get(v, "#555555") for v in order])
        ax.set_xticks(xs, list(order))
        ax.set_ylim(0, max([*values, 1]) * 1.2)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # models come whole
        ax.set_ylabel("models")
        for x, n in zip(xs, values, strict=True):
            ax.text(x, n, str(n), ha="center", va="bottom", fontsize=8)
        return _finish(fig, key, title, description)
