"""issue 17, pull cost: layers fetched in parallel, digests the pull vouches for, and GET bodies through http.client.

The registry is the real one (test_oci_registry's fixtures); the broken-off body comes from a real
HTTP server on 127.0.0.1 that promises more than it sends.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from test_oci_registry import OCI_MANIFEST, PASSWORD, USER, Registry, auth_file, push_blob, tar_bytes

from weightguard.integrity.binding import ChangedWhileHashedError
from weightguard.integrity.hashing import HashRequest, hash_files
from weightguard.sources.local import LocalSource
from weightguard.sources.oci_blobs import vouched_hashes
from weightguard.sources.oci_registry import RegistryClient
from weightguard.sources.oci_target import list_oci_target, pull_oci_target
from weightguard.sources.oci_unpack import FetchError, FetchLimits, Unpack

RAW = "application/vnd.cncf.model.weight.v1.raw"
TAR = "application/vnd.cncf.model.weight.config.v1.tar"


def push_layers(registry: Registry, repository: str, layers: list[tuple[str, bytes, str | None]]) -> str:
    """Push a manifest of ``(media type, blob, filepath annotation)`` layers, in that order; its digest."""
    descriptors = []
    for media_type, data, filepath in layers:
        descriptor: dict[str, object] = {"mediaType": media_type, "digest": push_blob(registry, repository, data)}
        descriptor["size"] = len(data)
        if filepath is not None:
            descriptor["annotations"] = {"org.cncf.model.filepath": filepath}
        descriptors.append(descriptor)
    config = b"{}"
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.empty.v1+json",
                "digest": push_blob(registry, repository, config),
                "size": 2,
            },
            "layers": descriptors,
        }
    ).encode()
    answer = httpx.put(
        f"{registry.url}/v2/{repository}/manifests/v1",
        content=manifest,
        headers={"Authorization": registry.push_auth, "Content-Type": OCI_MANIFEST},
        verify=registry.verify,
    )
    assert answer.status_code == 201, answer.text
    return "sha256:" + hashlib.sha256(manifest).hexdigest()


def options(tmp_path: Path, registry: Registry) -> dict[str, object]:
    return {"auth_file": auth_file(tmp_path, registry.host, USER, PASSWORD), "insecure_registries": [registry.host]}


def test_layers_fetched_in_parallel_are_applied_in_manifest_order(htpasswd_registry: Registry, tmp_path: Path) -> None:
    registry = htpasswd_registry
    digest = push_layers(
        registry,
        "team/layers",
        [
            (RAW, b"first weights" * 1000, "w.bin"),
            (RAW, b"other" * 1000, "sub/other.bin"),
            (TAR, tar_bytes({"w.bin": b"the tar layer came later", "cfg.json": b"{}"}), None),
            (RAW, b'{"raw": "came last"}', "cfg.json"),
        ],
    )
    (tmp_path / "pulls").mkdir()
    pulled = pull_oci_target(
        f"oci://{registry.host}/team/layers@{digest}", tmp_path / "pulls" / "model", **options(tmp_path, registry)
    )  # type: ignore[arg-type]
    folder = pulled.folder
    assert (folder / "w.bin").read_bytes() == b"the tar layer came later"
    assert (folder / "cfg.json").read_bytes() == b'{"raw": "came last"}'
    assert (folder / "sub" / "other.bin").read_bytes() == b"other" * 1000
    assert [p.name for p in (tmp_path / "pulls").iterdir()] == ["model"]  # no staging folder left behind
    # The pull made the folder, private, so it vouches for what it wrote: the sha256 of each file's bytes.
    assert folder.stat().st_mode & 0o777 == 0o700
    assert {w.relpath: w.sha256 for w in pulled.written} == {
        rel: hashlib.sha256((folder / rel).read_bytes()).hexdigest() for rel in ("w.bin", "cfg.json", "sub/other.bin")
    }


def test_a_pull_into_a_folder_it_did_not_make_vouches_for_nothing(htpasswd_registry: Registry, tmp_path: Path) -> None:
    registry = htpasswd_registry
    digest = push_layers(registry, "team/m", [(RAW, b"a" * 100, "a.bin"), (RAW, b"b" * 100, "b.bin")])
    (tmp_path / "given").mkdir()
    pulled = pull_oci_target(
        f"oci://{registry.host}/team/m@{digest}", tmp_path / "given", **options(tmp_path, registry)
    )  # type: ignore[arg-type]
    assert pulled.written == () and (pulled.folder / "a.bin").read_bytes() == b"a" * 100


def test_a_pulled_file_rewritten_afterwards_loses_its_vouched_digest_and_a_reused_digest_is_checked(
    htpasswd_registry: Registry, tmp_path: Path
) -> None:
    registry = htpasswd_registry
    digest = push_layers(registry, "team/m", [(RAW, b"a" * 100, "a.bin"), (RAW, b"b" * 100, "b.bin")])
    uri = f"oci://{registry.host}/team/m@{digest}"
    listed = list_oci_target(uri, tmp_path / "model", ca_bundle=None, allow_tag=False, **options(tmp_path, registry))  # type: ignore[arg-type]
    assert set(listed.known) == {"a.bin", "b.bin"} and listed.uri == uri
    assert listed.known["a.bin"].digests["sha256"] == hashlib.sha256(b"a" * 100).hexdigest()
    pulled = pull_oci_target(uri, tmp_path / "again", **options(tmp_path, registry))  # type: ignore[arg-type]
    listing = LocalSource(pulled.folder, allow_symlinks=False).collect()
    known = vouched_hashes(pulled.written, listing.files)
    (pulled.folder / "a.bin").write_bytes(b"x" * 100)  # same size, other bytes, after the listing
    relisted = LocalSource(pulled.folder, allow_symlinks=False).collect()
    assert set(vouched_hashes(pulled.written, relisted.files)) == {"b.bin"}
    # A digest handed over with the earlier listing is not taken for a file that changed since.
    with pytest.raises(ChangedWhileHashedError, match=r"a\.bin"):
        hash_files(listing.files, HashRequest(), known=known)


class _Promising(BaseHTTPRequestHandler):
    """Answers every GET with a body shorter than its Content-Length, then closes; counts connections."""

    protocol_version = "HTTP/1.1"
    connections: list[int] = []

    def setup(self) -> None:
        super().setup()
        type(self).connections.append(1)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path.endswith("/manifests/ok"):
            body = b"{}"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        self.wfile.write(b"x" * 1000)
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def promising() -> Iterator[str]:
    _Promising.connections = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Promising)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_get_answers_reuse_the_connection_and_a_body_cut_short_is_a_fetch_error(promising: str) -> None:
    with RegistryClient(promising, insecure=True, max_retries=0) as client:
        for _ in range(3):
            with client.request("GET", "/v2/team/m/manifests/ok", "team/m") as response:
                assert b"".join(response.iter_raw()) == b"{}"
        assert len(_Promising.connections) == 1  # kept alive, not one connection per answer
        digest = "sha256:" + "0" * 64
        with pytest.raises(FetchError, match="broke off"), client.blob("team/m", digest) as reader:
            reader.drain()


def test_one_tampered_layer_among_parallel_ones_fails_the_pull_and_leaves_nothing(
    htpasswd_registry: Registry, tmp_path: Path
) -> None:
    registry = htpasswd_registry
    blobs = [bytes([i]) * 300_000 for i in range(4)]
    digest = push_layers(registry, "team/m", [(RAW, blob, f"w{i}.bin") for i, blob in enumerate(blobs)])
    hexdigest = hashlib.sha256(blobs[2]).hexdigest()
    data = registry.root / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest / "data"
    data.write_bytes(b"x" * len(blobs[2]))  # same size, other bytes
    (tmp_path / "pulls").mkdir()
    with pytest.raises(FetchError, match=f"blob sha256:{hexdigest} .*does not match its digest"):
        pull_oci_target(
            f"oci://{registry.host}/team/m@{digest}", tmp_path / "pulls" / "model", **options(tmp_path, registry)
        )  # type: ignore[arg-type]
    assert list((tmp_path / "pulls").iterdir()) == []  # neither the folder it made nor the staged layers


def test_a_staged_layer_file_swapped_before_it_is_placed_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "staging").mkdir()
    state = Unpack(tmp_path / "model", FetchLimits(), record=True)
    staged = tmp_path / "staging" / "0"
    written = state.receive(io.BytesIO(b"the layer's bytes"), staged)
    assert written.sha256 == hashlib.sha256(b"the layer's bytes").hexdigest()
    staged.unlink()
    staged.write_bytes(b"someone else's file")  # another inode under the staged name
    with pytest.raises(FetchError, match="staged layer file was replaced"):
        state.place("w.bin", staged, written)
    assert state.written == {}


class _Storage(BaseHTTPRequestHandler):
    """Blob storage: serves BLOB, remembers the Authorization headers it was sent."""

    protocol_version = "HTTP/1.1"
    seen: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        type(self).seen.append(self.headers.get("Authorization"))
        self.send_response(200)
        self.send_header("Content-Length", str(len(BLOB)))
        self.end_headers()
        self.wfile.write(BLOB)

    def log_message(self, *args: object) -> None:
        pass


BLOB = b"weights in blob storage" * 50_000


def serve(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_blob_redirected_to_storage_arrives_whole_without_the_registry_credential() -> None:
    _Storage.seen = []
    storage = serve(_Storage)

    class Registry(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        seen: list[str | None] = []

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            type(self).seen.append(self.headers.get("Authorization"))
            self.send_response(307)
            self.send_header("Location", f"http://127.0.0.1:{storage.server_address[1]}/bucket/blob?sig=1")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    registry = serve(Registry)
    try:
        digest = "sha256:" + hashlib.sha256(BLOB).hexdigest()
        with (
            RegistryClient(
                f"127.0.0.1:{registry.server_address[1]}", insecure=True, authorization="Basic c2VjcmV0"
            ) as client,
            client.blob("team/m", digest) as reader,
        ):
            assert b"".join(iter(lambda: reader.read(1 << 20), b"")) == BLOB
        assert Registry.seen == ["Basic c2VjcmV0"] and _Storage.seen == [None]
    finally:
        for server in (registry, storage):
            server.shutdown()
            server.server_close()
