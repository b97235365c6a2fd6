"""The catalogue report: counts, exit code, and a SARIF log valid against the 2.1.0 schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from catalogue.builders import catalogue_dir
from weightguard import __version__
from weightguard.catalogue.cache import ResultsCache
from weightguard.catalogue.catalogue import read_catalogue
from weightguard.catalogue.local_engine import LocalEngine
from weightguard.catalogue.report import (
    CatalogueReport,
    catalogue_report,
    exit_code_of,
    render_json,
    render_sarif,
    render_text,
)
from weightguard.catalogue.runner import run_catalogue
from weightguard.policy.load import load_builtin

SCHEMA = Path(__file__).resolve().parents[1] / "data" / "sarif-schema-2.1.0.json"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("report")
    loaded = load_builtin("default")
    engine = LocalEngine(2)
    try:
        cache = ResultsCache(f"sqlite:///{root}/r.db", policy_sha256=loaded.sha256, version=__version__)
        summary = run_catalogue(read_catalogue(catalogue_dir(root / "models", clean=2)), loaded, engine, cache)
    finally:
        engine.close()
    return summary, catalogue_report(summary, loaded, __version__)


def test_counts_and_exit_code_cover_every_model(run) -> None:
    _, report = run
    assert report.counts == {"approved": 2, "rejected": 1, "incomplete": 1}
    assert report.exit_code == 1
    assert len(report.models) == 4 and len(report.slowest) == 4
    assert any(f.blocking and f.code == "WG-PKL-001" and f.model.endswith("evil") for f in report.findings)


def test_exit_codes_rank_a_block_over_an_unfinished_check() -> None:
    assert exit_code_of({"approved": 3, "rejected": 0, "incomplete": 0}) == 0
    assert exit_code_of({"approved": 1, "rejected": 0, "incomplete": 1}) == 2
    assert exit_code_of({"approved": 1, "rejected": 1, "incomplete": 1}) == 1


def test_the_json_report_validates_back_into_the_model(run) -> None:
    _, report = run
    assert CatalogueReport.model_validate_json(render_json(report)) == report


def test_the_sarif_log_is_one_valid_run_with_results_from_every_model(run) -> None:
    summary, report = run
    log = json.loads(render_sarif(summary, report))
    schema = json.loads(SCHEMA.read_text())
    jsonschema.validators.validator_for(schema)(schema).validate(log)  # the dialect the schema declares
    (sarif_run,) = log["runs"]
    models = {r["properties"]["model"] for r in sarif_run["results"]}
    assert {Path(m).name for m in models} == {"evil", "odd"}
    rules = [r["id"] for r in sarif_run["tool"]["driver"]["rules"]]
    assert all(rules[r["ruleIndex"]] == r["ruleId"] for r in sarif_run["results"])


def test_the_text_report_names_what_blocks_and_the_slowest_models(run) -> None:
    _, report = run
    text = render_text(report)
    assert "approved 2  rejected 1  incomplete 1" in text
    assert "REJECTED" in text and "WG-PKL-001" in text and "Slowest models:" in text
