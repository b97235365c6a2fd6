"""`weightguard hash` and `weightguard lock`, run through Typer on an app with only these commands."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from tests.sources.hf_cache import COMMIT, REPO, HubCache
from weightguard.cli import hash as hash_cli
from weightguard.cli import lock as lock_cli
from weightguard.policy.load import parse_policy

OMS_ORDERING = Path(__file__).resolve().parents[3] / "shared" / "interop" / "oms" / "model-ordering"


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Test app."""

    hash_cli.register(app)
    lock_cli.register(app)
    return app


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def model(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    for rel in ("w.json", "w/part.bin", "w-2.bin", "W.bin"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(rel.encode() * 3)
    return root


def test_hash_prints_the_manifest_in_oms_order_and_the_root_digest(
    app: typer.Typer, runner: CliRunner, model: Path
) -> None:
    result = runner.invoke(app, ["hash", str(model)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split("  ")[1] for line in lines[:-1]] == ["W.bin", "w/part.bin", "w-2.bin", "w.json"]
    assert lines[0].split()[0] == hashlib.sha256(b"W.bin" * 3).hexdigest()
    digests = b"".join(bytes.fromhex(line.split()[0]) for line in lines[:-1])
    assert lines[-1].split()[0] == hashlib.sha256(digests).hexdigest()


@pytest.mark.skipif(not OMS_ORDERING.is_dir(), reason="OMS interop vectors not present")
def test_hash_json_gives_model_signings_root_digest_for_its_ordering_vector(
    app: typer.Typer, runner: CliRunner
) -> None:
    result = runner.invoke(app, ["hash", str(OMS_ORDERING), "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    # Subject digest of sigs/ordering-key-p256.sig, signed by model-signing 1.1.1 over the same folder.
    assert doc["root_digest"] == "68c7c346eb348bf10482c3c588258ce1756e74538a348685bcda578e5e9b312b"
    assert [f["path"] for f in doc["files"]] == ["W.bin", "w/part.bin", "w-2.bin", "w.json", "é.txt"]


def test_hash_with_blake3_uses_blake3_digests(app: typer.Typer, runner: CliRunner, model: Path) -> None:
    import blake3

    result = runner.invoke(app, ["hash", str(model), "-a", "blake3", "-f", "json"])
    doc = json.loads(result.stdout)
    assert doc["algorithm"] == "blake3"
    assert doc["files"][0]["digest"] == blake3.blake3(b"W.bin" * 3).hexdigest()


def test_hash_of_a_missing_target_exits_2_with_a_message(app: typer.Typer, runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["hash", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "no such file" in result.stderr


def test_lock_writes_a_complete_policy_pinning_every_file_in_oms_order(
    app: typer.Typer, runner: CliRunner, model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "lock.yaml"
    result = runner.invoke(app, ["lock", str(model), "-o", str(out)])
    assert result.exit_code == 0, result.output
    pinned = yaml.safe_load(out.read_text())["spec"]["integrity"]["pinned"]
    assert list(pinned) == ["W.bin", "w/part.bin", "w-2.bin", "w.json"]
    assert pinned["w.json"] == "sha256:" + hashlib.sha256(b"w.json" * 3).hexdigest()
    spec = parse_policy(out.read_bytes(), "lock.yaml").policy.spec.integrity
    assert spec.pinned == pinned


def test_lock_refuses_a_model_with_a_refused_symlink(
    app: typer.Typer, runner: CliRunner, model: Path, tmp_path: Path
) -> None:
    (model / "link.bin").symlink_to("W.bin")
    out = tmp_path / "lock.yaml"
    result = runner.invoke(app, ["lock", str(model), "-o", str(out)])
    assert result.exit_code == 1
    assert "WG-SRC-001" in result.stderr
    assert not out.exists()


def test_hash_and_lock_read_hf_targets_offline(
    app: typer.Typer, runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("network call"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    hub = HubCache(tmp_path / "hub").build()
    result = runner.invoke(app, ["hash", f"hf://{REPO}@{COMMIT}", "-f", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["commit"] == COMMIT
    assert {f["path"]: f["digest"] for f in doc["files"]}["model.safetensors"] == hub.etag("model.safetensors")
    locked = runner.invoke(app, ["lock", f"hf://{REPO}@{COMMIT}"])
    assert locked.exit_code == 0
    assert f"# commit {COMMIT}" in locked.stdout


def test_lock_refuses_a_tampered_hf_cache(
    app: typer.Typer, runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    hub = HubCache(tmp_path / "hub").build()
    hub.blob("config.json").write_bytes(b"{}")
    result = runner.invoke(app, ["lock", f"hf://{REPO}@{COMMIT}"])
    assert result.exit_code == 1
    assert "WG-INT-010" in result.stderr
    assert result.stdout == ""


def test_a_branch_is_refused_by_a_policy_requiring_commits(
    app: typer.Typer, runner: CliRunner, tmp_path: Path, write_policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    HubCache(tmp_path / "hub").build()
    policy = write_policy("integrity:\n  require_pinned_revision: true")
    result = runner.invoke(app, ["hash", f"hf://{REPO}@main", "--policy", str(policy)])
    assert result.exit_code == 2
    assert "WG-INT-009" in result.stderr
