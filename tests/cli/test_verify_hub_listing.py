"""`weightguard verify --hub-listing`: an offline hf:// snapshot checked against a saved Hub listing.

Without a listing the run cannot check the Hub's hashes (incomplete, exit 2) and the report
says how to fix it; with the saved listing (the option ``hash`` and ``lock`` already take)
the same snapshot is verified and approved.
"""

from __future__ import annotations

import json
import socket
import struct
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tests.sources.hf_cache import COMMIT, FILES, REPO, HubCache
from weightguard.cli import verify as verify_cli


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Test app."""

    verify_cli.register(app)
    return app


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HubCache:
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("network call"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    header = json.dumps({"w": {"dtype": "U8", "shape": [2048], "data_offsets": [0, 2048]}}).encode()
    weights = struct.pack("<Q", len(header)) + header + bytes(range(256)) * 8  # a well-formed safetensors file
    files = {**FILES, "model.safetensors": weights}
    return HubCache(tmp_path / "hub", files=files).build(with_tree_cache=False)


def test_verify_without_a_listing_is_incomplete_and_says_how_to_fix_it(app: typer.Typer, offline_hub: HubCache) -> None:
    result = CliRunner().invoke(app, ["verify", f"hf://{REPO}@{COMMIT}"])
    assert result.exit_code == 2, result.output
    assert "WG-INT-013" in result.stderr
    said = " ".join(result.stderr.split())
    assert "fix: Run once online (the listing is cached), pass a saved listing with --hub-listing" in said


def test_verify_with_a_saved_hub_listing_checks_the_snapshot_against_it(
    app: typer.Typer, offline_hub: HubCache, tmp_path: Path
) -> None:
    listing = tmp_path / "listing.json"
    listing.write_bytes(offline_hub.api_listing())
    result = CliRunner().invoke(app, ["verify", f"hf://{REPO}@{COMMIT}", "--hub-listing", str(listing), "-f", "json"])
    report = json.loads(result.stdout)
    assert "WG-INT-013" not in {f["code"] for f in report["findings"]}
    assert (result.exit_code, report["verdict"]) == (0, "approved"), result.output


def test_verify_with_a_saved_listing_refuses_a_blob_that_differs_from_it(
    app: typer.Typer, offline_hub: HubCache, tmp_path: Path
) -> None:
    listing = tmp_path / "listing.json"
    listing.write_bytes(offline_hub.api_listing())
    offline_hub.blob("config.json").write_bytes(b"{}")
    result = CliRunner().invoke(app, ["verify", f"hf://{REPO}@{COMMIT}", "--hub-listing", str(listing), "-f", "json"])
    assert result.exit_code == 1, result.output
    assert "WG-INT-010" in {f["code"] for f in json.loads(result.stdout)["findings"]}
