"""The catalogue's HTML page: valid, verdict first, every model and finding, evidence, escaping, bounds."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from xml.etree.ElementTree import Element

import pytest

from catalogue.builders import malicious_model, safetensors_model, unanalysable_model
from weightguard import __version__
from weightguard.catalogue import html as catalogue_html
from weightguard.catalogue.cache import ResultsCache
from weightguard.catalogue.catalogue import read_catalogue
from weightguard.catalogue.html import (
    MAX_FINDING_ROWS,
    MAX_SECTION_FINDINGS,
    MAX_SECTIONS,
    catalogue_page,
    render_catalogue_html,
)
from weightguard.catalogue.interface import CatalogueEntry, CatalogueSummary, ModelOutcome
from weightguard.catalogue.local_engine import LocalEngine
from weightguard.catalogue.report import CatalogueReport, catalogue_report
from weightguard.catalogue.runner import run_catalogue
from weightguard.integrity.report import DigestMismatch
from weightguard.policy.load import LoadedPolicy, load_builtin
from weightguard.report.html import CSP
from weightguard.report.html_plots import plots_available

html5lib = pytest.importorskip("html5lib")
needs_matplotlib = pytest.mark.skipif(not plots_available(), reason="matplotlib not installed ([probes] extra)")

# A directory name is what a catalogue's author controls; '/' is the one character it cannot hold.
HOSTILE = '<script>"pwned"\'&'
HOSTILE_GLOBAL = 'system<script>"x"'
SVG = "{http://www.w3.org/2000/svg}"

Run = tuple[CatalogueSummary, CatalogueReport, LoadedPolicy]


def hostile_model(out: Path) -> Path:
    """A raw pickle importing ``os.<HOSTILE_GLOBAL>``: its finding's message and evidence carry markup."""
    out.mkdir(parents=True, exist_ok=True)
    name = HOSTILE_GLOBAL.encode()
    (out / "payload.pkl").write_bytes(b"\x80\x02cos\n" + name + b"\nX\x02\x00\x00\x00id\x85R.")
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    root = tmp_path_factory.mktemp("html")
    models = root / "models"
    safetensors_model(models / "clean-0", 0)
    safetensors_model(models / "clean-1", 1)
    malicious_model(models / "evil")
    unanalysable_model(models / "odd")
    hostile_model(models / HOSTILE)
    loaded = load_builtin("default")
    engine = LocalEngine(1)
    try:
        cache = ResultsCache(f"sqlite:///{root}/r.db", policy_sha256=loaded.sha256, version=__version__)
        summary = run_catalogue(read_catalogue(models), loaded, engine, cache)
    finally:
        engine.close()
    return summary, catalogue_report(summary, loaded, __version__), loaded


@pytest.fixture(scope="module")
def pages(run: Run) -> dict[bool, str]:
    """The run's page with and without plots, rendered once for the module."""
    summary, report, _ = run
    return {plots: render_catalogue_html(summary, report, plots=plots) for plots in (False, True)}


def parse(page: str) -> Element:
    """Parse as tests/report/test_html.py does: html5lib in strict mode, where any HTML5 parse error raises."""
    return html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(page)


def text(node: Element) -> str:
    return " ".join("".join(node.itertext()).split())


def section(root: Element, heading_id: str) -> Element:
    [found] = [s for s in root.iter("section") if s.get("aria-labelledby") == heading_id]
    return found


def rows(table_section: Element) -> list[list[str]]:
    return [[text(cell) for cell in tr] for tr in table_section.iter("tr") if tr.find("td") is not None]


def name(target: str) -> str:
    return Path(target).name


@pytest.mark.parametrize("plots", [False, True])
def test_the_page_is_valid_html5_with_and_without_plots(pages: dict[bool, str], plots: bool) -> None:
    root = parse(pages[plots])
    assert root.get("lang") == "en"
    assert (len(list(root.iter(f"{SVG}svg"))) > 0) is (plots and plots_available())


def test_the_verdict_and_the_counts_come_first(run: Run, pages: dict[bool, str]) -> None:
    _, report, _ = run
    root = parse(pages[False])
    body = root.find("body")
    assert body is not None
    first = next(el for el in body.iter() if re.fullmatch(r"h[1-6]", str(el.tag)))
    assert first.tag == "h1" and text(first) == "weightguard verify-many: REJECTED"
    assert "5 model(s) under policy default: 2 approved, 2 rejected, 1 incomplete (exit 1)" in text(body)
    counts = rows(section(root, "counts-h"))
    assert counts == [["REJECTED", "2"], ["INCOMPLETE", "1"], ["APPROVED", "2"], ["Total", "5"]]
    stats = dict(rows(section(root, "run-h")))
    assert stats["Engine"] == "local"
    assert stats["Work units"] == f"{report.stats.units_executed} executed, 0 reused from the results cache"
    assert (
        stats["Files"]
        == f"{report.stats.files} file(s), {report.stats.unique_files} distinct content(s), {report.stats.read_files} read"
    )


def test_every_model_is_listed_with_its_verdict_rejected_and_incomplete_first(run: Run, pages: dict[bool, str]) -> None:
    _, report, _ = run
    table = rows(section(parse(pages[False]), "models-h"))
    listed = [(name(r[0]), r[1]) for r in table]
    assert listed == [
        (HOSTILE, "REJECTED"),  # '<' sorts before letters: the directory catalogue lists it first
        ("evil", "REJECTED"),
        ("odd", "INCOMPLETE"),
        ("clean-0", "APPROVED"),
        ("clean-1", "APPROVED"),
    ]
    evil = next(r for r in table if name(r[0]) == "evil")
    evil_line = next(line for line in report.models if name(line.target) == "evil")
    assert evil_line.root_digest is not None and evil[4] == evil_line.root_digest[:12]
    assert evil[5] == "1" and "WG-PKL-001" in evil[6]


def test_the_findings_table_names_each_model_code_and_place(run: Run, pages: dict[bool, str]) -> None:
    _, report, _ = run
    table = rows(section(parse(pages[False]), "all-findings-h"))
    assert len(table) == len(report.findings)
    assert [name(r[0]) for r in table[:3]] == [HOSTILE, "evil", "odd"]  # blocking first, then by severity
    evil = next(r for r in table if name(r[0]) == "evil" and r[1] == "WG-PKL-001")
    assert evil[2:4] == ["critical", "pytorch_model.bin:archive/data.pkl"]
    assert "builtins.exec" in evil[4] and evil[5] == "yes"
    slowest = rows(section(parse(pages[False]), "slowest-h"))
    assert len(slowest) == 5


def test_the_malicious_model_has_a_section_with_its_finding_and_evidence(pages: dict[bool, str]) -> None:
    root = parse(pages[False])
    link = next(a for a in section(root, "models-h").iter("a") if name(text(a)) == "evil")
    anchor = (link.get("href") or "").removeprefix("#")
    [model] = [s for s in root.iter("section") if s.get("id") == anchor]
    heading = model.find("h3")
    assert heading is not None and name(text(heading)) == "evil: REJECTED"
    article = next(a for a in model.iter("article") if "WG-PKL-001" in text(a))
    path = [text(li) for ol in article.iter("ol") for li in ol.iter("li")]
    assert "imports builtins.exec" in path and "called by REDUCE at byte offset 31" in path
    assert any("exec('print(1)')" in text(code) for code in article.iter("code"))
    details = section(root, "details-h")
    sections = [s for s in details.iter("section") if s.get("class") == "model"]
    assert len(sections) == 3  # evil, the hostile one, odd: approved models get none


def test_hostile_targets_and_messages_stay_text(pages: dict[bool, str]) -> None:
    for plots in (False, True):
        page = pages[plots]
        root = parse(page)
        assert "<script" not in page
        assert not [el for el in root.iter() if el.tag in {"script", "iframe", "object", "embed"}]
        assert not any(k.startswith("on") for el in root.iter() for k in el.attrib)
        rendered = text(root)
        assert f"models/{HOSTILE}" in rendered  # the reader sees the name exactly as it is on disk
        assert f"pickle imports os.{HOSTILE_GLOBAL}" in rendered
        assert "&lt;script&gt;&#34;pwned&#34;&#39;&amp;" in page


def test_the_page_forbids_scripts_and_network_fetches(pages: dict[bool, str]) -> None:
    root = parse(pages[True])
    [meta] = [m for m in root.iter("meta") if m.get("http-equiv") == "Content-Security-Policy"]
    assert meta.get("content") == CSP
    links = [(el.tag, v) for el in root.iter() for k, v in el.attrib.items() if k == "src" or k.endswith("href")]
    assert any(str(tag).startswith(SVG) for tag, _ in links)  # the plot's own references are checked too
    assert all(v.startswith(("#", "data:")) for _, v in links), links
    assert "@import" not in text(root) and "url(http" not in text(root)


def test_accessibility_basics_headings_table_headers_unique_ids(pages: dict[bool, str]) -> None:
    root = parse(pages[True])
    levels = [int(str(el.tag)[1]) for el in root.iter() if re.fullmatch(r"h[1-6]", str(el.tag))]
    assert levels.count(1) == 1 and levels[0] == 1
    assert all(b <= a + 1 for a, b in zip(levels, levels[1:], strict=False)), levels
    assert all(th.get("scope") in {"col", "row"} for th in root.iter("th"))
    ids = [el.get("id") for el in root.iter() if el.get("id")]
    assert len(ids) == len(set(ids)), "the reused report sections must not repeat their ids"
    for el in root.iter():
        for ref in (el.get("aria-labelledby") or "").split():
            assert ref in ids, ref


@needs_matplotlib
def test_the_counts_chart_has_a_text_alternative_and_the_table_stays(pages: dict[bool, str]) -> None:
    counts = section(parse(pages[True]), "counts-h")
    [svg] = list(counts.iter(f"{SVG}svg"))
    title, desc = svg.find(f"{SVG}title"), svg.find(f"{SVG}desc")
    assert title is not None and text(title) == "Verdicts of 5 model(s)"
    assert desc is not None and text(desc) == "2 rejected, 1 incomplete, 2 approved."
    assert svg.get("role") == "img" and svg.get("aria-labelledby") == "counts-title counts-desc"
    assert rows(counts)[-1] == ["Total", "5"]


def test_without_matplotlib_the_counts_are_a_table_and_the_page_says_why(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary, report, _ = run
    # matplotlib is installed in the test environment: hide it from the renderer to check the fallback.
    monkeypatch.setattr(catalogue_html, "plots_available", lambda: False)
    root = parse(render_catalogue_html(summary, report))
    counts = section(root, "counts-h")
    assert list(counts.iter(f"{SVG}svg")) == []
    assert "matplotlib is not installed" in text(counts)
    assert rows(counts)[0] == ["REJECTED", "2"]


def test_a_model_that_could_not_be_judged_shows_why(run: Run) -> None:
    summary, _, loaded = run
    lost = CatalogueEntry("/models/lost", "catalog.txt:9")
    broken = ModelOutcome.failed(lost, "worker died")
    summary = dataclasses.replace(summary, models=(*summary.models, broken))
    root = parse(render_catalogue_html(summary, catalogue_report(summary, loaded, __version__), plots=False))
    assert ["/models/lost", "INCOMPLETE", "0 ms", "no", "—", "0", "worker died"] in rows(section(root, "models-h"))
    assert "1 model(s) could not be judged at all" in text(section(root, "details-h"))


def test_report_sections_reused_for_several_models_keep_ids_unique_and_headings_nested(run: Run) -> None:
    summary, _, loaded = run
    evil = next(m for m in summary.models if name(m.entry.target) == "evil")
    assert evil.report is not None and evil.report.integrity is not None
    diff = DigestMismatch(path=f"{HOSTILE}.bin", algorithm="sha256", expected="00" * 32, actual="ff" * 32)
    integrity = evil.report.integrity.model_copy(update={"pinned": True, "mismatched": [diff]})
    tampered = evil.report.model_copy(update={"integrity": integrity})
    models = tuple(
        ModelOutcome.judged(CatalogueEntry(f"/models/tampered-{i}", "catalogue"), tampered.model_dump_json())
        for i in range(2)
    )
    both = dataclasses.replace(summary, models=models)
    root = parse(render_catalogue_html(both, catalogue_report(both, loaded, __version__), plots=False))
    integrity_sections = [s for s in root.iter("section") if (s.get("aria-labelledby") or "").endswith("integrity-h")]
    assert [s.get("aria-labelledby") for s in integrity_sections] == ["m0-integrity-h", "m1-integrity-h"]
    for found in integrity_sections:
        assert [h.tag for h in found if str(h.tag).startswith("h")] == ["h4", "h5", "h5", "h5", "h5"]
        assert [f"{HOSTILE}.bin", "sha256", "00" * 32, "ff" * 32] in rows(found)
    ids = [el.get("id") for el in root.iter() if el.get("id")]
    assert len(ids) == len(set(ids))


def test_a_large_catalogue_is_bounded_and_says_what_it_left_out(run: Run) -> None:
    summary, _, loaded = run
    evil = next(m for m in summary.models if name(m.entry.target) == "evil")
    assert evil.report is not None
    copies = MAX_FINDING_ROWS // len(evil.report.findings) + 10
    many = tuple(
        dataclasses.replace(evil, entry=CatalogueEntry(f"/models/evil-{i}", "catalogue")) for i in range(copies)
    )
    big = dataclasses.replace(summary, models=many)
    report = catalogue_report(big, loaded, __version__)
    page = catalogue_page(big, report, plots=False)
    assert len(page.sections) == MAX_SECTIONS and page.sections_left_out == copies - MAX_SECTIONS
    assert len(page.findings) == MAX_FINDING_ROWS
    assert page.findings_left_out == len(report.findings) - MAX_FINDING_ROWS > 0
    assert all(f.blocking for f in page.findings[: len(many)])  # what is cut is the least severe
    rendered = text(parse(render_catalogue_html(big, report, plots=False)))
    assert f"{copies - MAX_SECTIONS} more model(s) not approved are not detailed here" in rendered
    assert f"{page.findings_left_out} more finding(s), the least severe, are not listed here" in rendered


def test_one_model_with_very_many_findings_is_bounded_in_its_section(run: Run) -> None:
    summary, _, loaded = run
    evil = next(m for m in summary.models if name(m.entry.target) == "evil")
    assert evil.report is not None and evil.report.findings
    first = evil.report.findings[0]
    flood = [first.model_copy(update={"message": f"{first.message} #{i}"}) for i in range(MAX_SECTION_FINDINGS + 7)]
    noisy = ModelOutcome.judged(evil.entry, evil.report.model_copy(update={"findings": flood}).model_dump_json())
    big = dataclasses.replace(summary, models=(noisy,))
    report = catalogue_report(big, loaded, __version__)
    [section] = catalogue_page(big, report, plots=False).sections
    assert len(section.page.findings) == MAX_SECTION_FINDINGS and section.findings_left_out == 7
    rendered = text(parse(render_catalogue_html(big, report, plots=False)))
    assert "7 more finding(s) of this model are not detailed here" in rendered
