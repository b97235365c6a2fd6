"""hf:// targets: resolved offline by huggingface_hub itself, checked against the Hub's own hashes.

Every test runs against a cache laid out exactly as the Hub writes it (see
hf_cache.py) with HF_HUB_OFFLINE=1, and with outgoing connections made
impossible, so a network call would fail the test instead of passing silently.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.sources.hf_cache import COMMIT, REPO, HubCache
from weightguard.errors import SourceError
from weightguard.findings import RuleKind
from weightguard.integrity.hashing import HashRequest, hash_files
from weightguard.integrity.hub import check_hub_hashes, hub_request, parse_listing
from weightguard.integrity.manifest import Manifest
from weightguard.sources.hf_snapshot import HfSnapshot, HfSnapshotSource, parse_hf_uri


class NetworkUsed(AssertionError):
    pass


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    def refuse(*args: object, **kwargs: object) -> None:
        raise NetworkUsed(f"network call attempted: {args!r}")

    # Guard at the socket layer, below any HTTP client: no mock of huggingface_hub itself.
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    return tmp_path / "hub"


@pytest.fixture
def hub(offline: Path) -> HubCache:
    return HubCache(offline).build()


def _checked(snapshot: HfSnapshot) -> list[tuple[str, str]]:
    assert snapshot.hub is not None
    hashes = hash_files(snapshot.listing.files, hub_request(HashRequest()))
    return [(f.code, f.path) for f in check_hub_hashes(snapshot.hub, hashes)]


def test_a_pinned_commit_resolves_offline_through_huggingface_hub(hub: HubCache) -> None:
    snapshot = HfSnapshotSource(f"hf://{REPO}@{COMMIT}").resolve()
    assert snapshot.commit == COMMIT
    assert Path(snapshot.listing.root) == hub.snapshot
    assert [f.relpath for f in snapshot.listing.files] == ["1_Pooling/config.json", "config.json", "model.safetensors"]
    assert snapshot.listing.findings == ()
    assert snapshot.hub_findings == ()
    assert snapshot.hub is not None
    assert snapshot.hub.origin.endswith(f"trees/{COMMIT}.json")
    assert _checked(snapshot) == []


def test_the_sha256_in_the_manifest_is_the_hubs_lfs_oid_from_the_same_pass(hub: HubCache) -> None:
    snapshot = HfSnapshotSource(f"hf://{REPO}@{COMMIT}").resolve()
    hashes = hash_files(snapshot.listing.files, hub_request(HashRequest()))
    assert Manifest.of(hashes).entries["model.safetensors"].digests["sha256"] == hub.etag("model.safetensors")
    assert set(hashes["config.json"].digests) == {"sha256", "git-sha1"}


def test_a_branch_is_resolved_to_its_commit_through_refs_and_reported(hub: HubCache) -> None:
    snapshot = HfSnapshotSource(f"hf://{REPO}@main").resolve()
    assert snapshot.commit == COMMIT
    assert [(f.code, f.evidence["commit"]) for f in snapshot.listing.findings] == [("WG-INT-008", COMMIT)]


def test_a_branch_is_refused_when_the_policy_requires_a_commit(offline: Path) -> None:
    # No cache at all: a refused revision must not even be looked up.
    snapshot = HfSnapshotSource(f"hf://{REPO}", require_commit=True).resolve()
    [finding] = snapshot.listing.findings
    assert (finding.code, finding.kind) == ("WG-INT-009", RuleKind.ERROR)
    assert snapshot.listing.files == ()
    assert snapshot.commit == ""


def test_a_tampered_blob_keeping_its_name_is_caught(hub: HubCache) -> None:
    weights = hub.blob("model.safetensors")
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))  # the blob's name still claims the old sha256
    config = hub.blob("config.json")
    config.write_bytes(config.read_bytes().replace(b"8", b"9"))
    assert _checked(HfSnapshotSource(f"hf://{REPO}@{COMMIT}").resolve()) == [
        ("WG-INT-010", "config.json"),
        ("WG-INT-010", "model.safetensors"),
    ]


def test_a_saved_api_listing_can_be_given_by_the_caller(offline: Path, tmp_path: Path) -> None:
    hub = HubCache(offline).build(with_tree_cache=False)
    saved = tmp_path / "tree.json"
    saved.write_bytes(hub.api_listing())
    snapshot = HfSnapshotSource(f"hf://{REPO}@{COMMIT}", listing_path=saved).resolve()
    assert snapshot.hub is not None
    assert snapshot.hub.origin == str(saved)
    assert _checked(snapshot) == []


def test_without_a_listing_offline_the_hub_check_is_an_error_unless_allowed(offline: Path) -> None:
    HubCache(offline).build(with_tree_cache=False)
    [strict] = HfSnapshotSource(f"hf://{REPO}@{COMMIT}").resolve().hub_findings
    assert (strict.code, strict.kind) == ("WG-INT-013", RuleKind.ERROR)
    [lenient] = HfSnapshotSource(f"hf://{REPO}@{COMMIT}", allow_missing_listing=True).resolve().hub_findings
    assert (lenient.code, lenient.kind) == ("WG-INT-014", RuleKind.FINDING)


def test_a_malformed_listing_is_a_finding_not_a_crash(hub: HubCache, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('[{"type": "file", "path": "config.json", "size": -1, "oid": "x"}]')
    snapshot = HfSnapshotSource(f"hf://{REPO}@{COMMIT}", listing_path=bad).resolve()
    assert snapshot.hub is None
    assert [f.code for f in snapshot.hub_findings] == ["WG-INT-013"]


def test_files_added_to_the_snapshot_or_missing_from_it_are_reported(hub: HubCache, tmp_path: Path) -> None:
    (hub.snapshot / "added.py").write_text("import os\n")
    listing = tmp_path / "tree.json"
    listing.write_bytes(hub.api_listing().replace(b'"config.json"', b'"config2.json"', 1))
    snapshot = HfSnapshotSource(f"hf://{REPO}@{COMMIT}", listing_path=listing).resolve()
    assert sorted(_checked(snapshot)) == [
        ("WG-INT-011", "config2.json"),
        ("WG-INT-012", "added.py"),
        ("WG-INT-012", "config.json"),
    ]


def test_a_snapshot_link_leaving_the_repo_cache_is_never_followed(hub: HubCache, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("outside")
    (hub.snapshot / "stolen.txt").symlink_to(secret)
    snapshot = HfSnapshotSource(f"hf://{REPO}@{COMMIT}").resolve()
    assert "stolen.txt" not in [f.relpath for f in snapshot.listing.files]
    assert [(f.code, f.path) for f in snapshot.listing.findings] == [("WG-INT-015", "stolen.txt")]


def test_an_incomplete_snapshot_is_refused_by_huggingface_hub_itself(hub: HubCache) -> None:
    (hub.snapshot / "config.json").unlink()
    with pytest.raises(SourceError, match="IncompleteSnapshotError"):
        HfSnapshotSource(f"hf://{REPO}@{COMMIT}").resolve()


def test_an_unknown_commit_is_a_source_error_offline(hub: HubCache) -> None:
    with pytest.raises(SourceError, match="LocalEntryNotFoundError"):
        HfSnapshotSource(f"hf://{REPO}@{'0' * 40}").resolve()


def test_the_policy_offline_switch_works_without_the_environment(
    hub: HubCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")
    snapshot = HfSnapshotSource(f"hf://{REPO}@{COMMIT}", offline=True).resolve()
    assert snapshot.commit == COMMIT
    assert _checked(snapshot) == []


@pytest.mark.parametrize(
    "uri",
    ["hf://org", "hf://org/name/extra", "hf://../x", "hf://org/name@../../etc", "hf://org/name@a//b", "s3://x/y"],
)
def test_malformed_uris_are_refused_before_anything_is_read(uri: str) -> None:
    with pytest.raises(SourceError):
        parse_hf_uri(uri)


def test_uris_default_to_main_and_know_when_they_are_pinned() -> None:
    assert parse_hf_uri("hf://org/name").revision == "main"
    assert parse_hf_uri(f"hf://org/name@{COMMIT}").pinned
    assert not parse_hf_uri("hf://org/name@refs/pr/1").pinned


def test_tree_cache_and_api_listing_parse_to_the_same_files(offline: Path) -> None:
    hub = HubCache(offline)
    assert parse_listing(hub.tree_cache(), "a").files == parse_listing(hub.api_listing(), "b").files
