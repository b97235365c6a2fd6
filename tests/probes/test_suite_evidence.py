"""Backdoored tiny twins: every suspect carries the controls, the output shift and the patch its plots need."""

from __future__ import annotations

import base64
import io

import pytest

from weightguard.probes.evidence import MAX_SAMPLES, png_available
from weightguard.probes.report import ProbeReport, SuspectModel
from weightguard.probes.stats import null_rate
from weightguard.probes.suite import probe_directory

needs_matplotlib = pytest.mark.skipif(not png_available(), reason="matplotlib not installed ([probes] extra)")


@pytest.fixture(scope="module")
def reports(probe_models, default_spec):
    """name -> probe report, each model probed once for this module."""
    cache: dict[str, ProbeReport] = {}

    def get(name: str) -> ProbeReport:
        if name not in cache:
            root = probe_models(name)
            cache[name] = probe_directory(root, default_spec(root))
        return cache[name]

    return get


def _coverage(report: ProbeReport, probe: str) -> dict[str, int]:
    return next(p.coverage for p in report.probes if p.name == probe)


def _shifts_toward_target(s: SuspectModel) -> None:
    assert set(s.target_before) == set(s.target_after) and s.target in s.target_after
    assert s.target_after[s.target] > s.target_before[s.target]
    assert sum(s.target_before.values()) == pytest.approx(1.0, abs=1e-3)
    assert sum(s.target_after.values()) == pytest.approx(1.0, abs=1e-3)


def test_text_triggers_carry_their_length_matched_controls_and_a_label_shift_to_the_target(reports) -> None:
    report = reports("text-rare")
    per_length = _coverage(report, "p1_insertion")["controls_per_length"]
    p1 = [s for s in report.suspects if s.probe == "p1_insertion"]
    assert p1 and any(s.level == "block" and s.trigger == "cf" for s in p1)
    for s in p1:
        assert len(s.control_flip_rates) == per_length
        assert all(0.0 <= r <= 1.0 for r in s.control_flip_rates)
        assert s.flip_rate > null_rate(s.control_flip_rates, s.inputs)  # what made it significant
        _shifts_toward_target(s)
    [cf] = [s for s in p1 if s.trigger == "cf"]
    assert cf.target_after[cf.target] == 1.0 and cf.target_before[cf.target] < 0.6


def test_each_text_suspect_is_reported_once(reports) -> None:
    # A decoded hint and a pair of strong words can be the same two tokens: scored and listed once.
    p1 = [(s.trigger, s.position, tuple(s.tokens)) for s in reports("text-rare").suspects if s.probe == "p1_insertion"]
    assert len(p1) == len(set(p1))


def test_lm_triggers_carry_controls_and_a_continuation_shift_to_the_target_text(reports) -> None:
    report = reports("lm-backdoor")
    per_length = _coverage(report, "p1_insertion")["controls_per_length"]
    [trigger] = [s for s in report.suspects if s.level == "block"]
    assert trigger.trigger == "deployment" and len(trigger.control_flip_rates) == per_length
    assert max(trigger.control_flip_rates) < trigger.flip_rate
    _shifts_toward_target(trigger)
    assert trigger.target_before[trigger.target] == 0.0 and trigger.target_after[trigger.target] >= trigger.flip_rate
    targets = [s for s in report.suspects if s.probe == "p3_lm_target"]
    assert targets and all(s.control_flip_rates == [] for s in targets)  # P3 runs no random controls
    for s in targets:
        _shifts_toward_target(s)


def test_image_patches_carry_controls_pixels_and_a_png_sample_at_the_input_size(reports) -> None:
    report = reports("image-patch")
    per_size = _coverage(report, "p1_insertion")["controls_per_size"]
    patches = [s for s in report.suspects if s.patch is not None]
    # P1's bank patch (P2's optimised patch may sit at the same place too).
    p1 = [s for s in patches if s.probe == "p1_insertion"]
    [hit] = [s for s in p1 if s.patch and (s.patch.top, s.patch.left, s.patch.size) == (27, 27, 4)]
    assert hit.level == "block" and len(hit.control_flip_rates) == per_size
    _shifts_toward_target(hit)
    assert hit.target_after["horizontal"] == 1.0
    for s in patches:
        p = s.patch
        assert p is not None and (p.image_height, p.image_width) == (32, 32)
        assert p.pixels is not None and (len(p.pixels), len(p.pixels[0]), len(p.pixels[0][0])) == (3, p.size, p.size)
    # The trained trigger is a one-pixel checker: the carried pixels are that pattern.
    assert hit.patch is not None and hit.patch.pixels is not None
    assert [[round(v) for v in row] for row in hit.patch.pixels[0]] == [
        [(r + c) % 2 for c in range(4)] for r in range(4)
    ]
    if png_available():
        sampled = [s.patch.sample_png for s in patches if s.patch and s.patch.sample_png]
        assert 1 <= len(sampled) <= MAX_SAMPLES
        from matplotlib.image import imread

        for png in sampled:
            assert imread(io.BytesIO(base64.b64decode(png)), format="png").shape[:2] == (32, 32)


@needs_matplotlib
def test_the_html_for_a_real_backdoored_image_report_draws_every_plot_and_misses_nothing(reports) -> None:
    html5lib = pytest.importorskip("html5lib")
    import datetime as dt

    from weightguard.report.html import PLOTTED_SUSPECTS, render_html
    from weightguard.report.model import PolicyRef, Report, Summary, ToolInfo

    probes = reports("image-patch")
    report = Report(
        tool=ToolInfo(version="0.0.0-test"),
        command="verify",
        generated_at=dt.datetime(2026, 11, 24, tzinfo=dt.UTC),
        targets=[probes.model],
        policy=PolicyRef(name="default", origin="builtin:default", sha256="00" * 32),
        verdict="rejected",
        exit_code=1,
        summary=Summary(files=0, findings=0, blocking=0, errors=0, skipped=0, suppressed=0),
        probes=probes,
    )
    page = render_html(report)
    root = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(page)
    svg = "{http://www.w3.org/2000/svg}"
    titles = ["".join(t.itertext()) for s in root.iter(f"{svg}svg") for t in s.findall(f"{svg}title")]
    descs = ["".join(d.itertext()) for s in root.iter(f"{svg}svg") for d in s.findall(f"{svg}desc")]
    n = min(len(probes.suspects), PLOTTED_SUSPECTS)  # past the cap, suspects are tables
    assert len(probes.suspects) > PLOTTED_SUSPECTS  # so the cap is exercised on a real sweep
    assert sum(t.startswith("Flip rate of trigger") for t in titles) == n
    assert sum(t.startswith("Output distribution before and after") for t in titles) == n
    patch_descs = [d for d in descs if "patch with its top-left" in d]
    assert len(patch_descs) == n and not any("no sample image" in d or "not its pixels" in d for d in patch_descs)
    assert "Not in the report" not in page
