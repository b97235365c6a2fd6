"""issue 17: pulling model artifacts from a real OCI registry (the CNCF distribution registry, Debian's docker-registry).

Each test starts ``/usr/bin/docker-registry`` on 127.0.0.1 in a temporary folder, pushes a
ModelPack artifact with plain HTTP requests, and pulls it through weightguard's client.
Tests skip only when the registry binary is not installed (``ci/install-services.sh`` installs it).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import ipaddress
import json
import shutil
import socket
import ssl
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from weightguard.api import scan
from weightguard.errors import SourceError
from weightguard.pipeline import model_digest, verify
from weightguard.policy.load import load_builtin
from weightguard.sources.oci_registry import RegistryClient
from weightguard.sources.oci_target import RegistryFetcher, pull_oci_target
from weightguard.sources.oci_unpack import ArtifactRef, FetchError


def _pull(uri: str, dest: Path | None = None, **options: object) -> tuple[Path, str]:
    """The pulled folder and the manifest digest unpacked into it."""
    pulled = pull_oci_target(uri, dest, **options)  # type: ignore[arg-type]
    return pulled.folder, pulled.manifest_digest


REGISTRY_BIN = Path("/usr/bin/docker-registry")
SAMPLES = Path(__file__).resolve().parents[2] / "sample_models"
USER, PASSWORD = "alice", "s3cret-pass"
MODEL_MANIFEST = "application/vnd.cncf.model.manifest.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"

pytestmark = pytest.mark.skipif(
    not REGISTRY_BIN.exists() or shutil.which("htpasswd") is None,
    reason="docker-registry / htpasswd are not installed (run ci/install-services.sh as root on Debian)",
)


def tls_files(folder: Path) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate for 127.0.0.1 signed by it: (CA bundle, certificate, key)."""
    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "weightguard test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Registry:
    host: str
    root: Path
    push_auth: str  # an Authorization header value allowed to push
    scheme: str = "http"
    verify: ssl.SSLContext | bool = True  # for pushing over TLS

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"


def start_registry(tmp: Path, auth_yaml: str, tls: tuple[Path, Path] | None = None) -> Iterator[Registry]:
    port = free_port()
    root = tmp / "storage"
    config = tmp / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: "
        f"{root}\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: weightguard-test\n"
        + (f"  tls:\n    certificate: {tls[0]}\n    key: {tls[1]}\n" if tls else "")
        + auth_yaml
    )
    process = subprocess.Popen(
        [str(REGISTRY_BIN), "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if tls:  # any TLS answer means it is up (the test CA is not trusted here)
                    httpx.get(f"https://127.0.0.1:{port}/v2/", timeout=1, verify=False)
                else:
                    httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"registry did not start: {process.stderr.read() if process.stderr else b''!r}"
                    ) from None
                time.sleep(0.1)
        yield Registry(f"127.0.0.1:{port}", root, "")
    finally:
        process.terminate()
        process.wait(timeout=10)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def htpasswd_registry(tmp_path: Path) -> Iterator[Registry]:
    htpasswd = tmp_path / "htpasswd"
    line = subprocess.run(["htpasswd", "-Bbn", USER, PASSWORD], capture_output=True, check=True, text=True).stdout
    htpasswd.write_text(line.strip() + "\n")
    auth = f"auth:\n  htpasswd:\n    realm: weightguard-test\n    path: {htpasswd}\n"
    for registry in start_registry(tmp_path, auth):
        registry.push_auth = basic(USER, PASSWORD)
        yield registry


# -- a tiny token issuer (the distribution token spec), signing ES256 JWTs with a test certificate --


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenIssuer:
    def __init__(self, folder: Path) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "weightguard test token issuer")])
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.bundle = folder / "token-ca.pem"
        self.bundle.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.requests: list[str] = []

    def token(self, scope: str) -> str:
        header = {
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()],
        }
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        now = int(time.time())
        claims = {
            "iss": "weightguard-test-issuer",
            "sub": USER,
            "aud": "weightguard-test-registry",
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": str(now) + scope,
            "access": [{"type": kind, "name": name, "actions": actions.split(",")}],
        }
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def serve(self) -> tuple[ThreadingHTTPServer, int]:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                query = parse_qs(urlparse(self.path).query)
                issuer.requests.append(self.path)
                if self.headers.get("Authorization") != basic(USER, PASSWORD):
                    self.send_response(401)
                    self.end_headers()
                    return
                body = json.dumps({"token": issuer.token(query["scope"][0])}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server, int(server.server_address[1])


@pytest.fixture
def token_registry(tmp_path: Path) -> Iterator[tuple[Registry, TokenIssuer]]:
    issuer = TokenIssuer(tmp_path)
    server, port = issuer.serve()
    auth = (
        f"auth:\n  token:\n    realm: http://127.0.0.1:{port}/token\n    service: weightguard-test-registry\n"
        f"    issuer: weightguard-test-issuer\n    rootcertbundle: {issuer.bundle}\n"
    )
    try:
        for registry in start_registry(tmp_path, auth):
            registry.push_auth = "Bearer " + issuer.token("repository:team/model:pull,push")
            yield registry, issuer
    finally:
        server.shutdown()


# -- pushing a ModelPack artifact with plain HTTP requests --


def push_blob(registry: Registry, repository: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    headers = {"Authorization": registry.push_auth}
    started = httpx.post(f"{registry.url}/v2/{repository}/blobs/uploads/", headers=headers, verify=registry.verify)
    assert started.status_code == 202, started.text
    location = httpx.URL(registry.url).join(started.headers["location"])
    done = httpx.put(
        location.copy_merge_params({"digest": digest}),
        verify=registry.verify,
        content=data,
        headers={**headers, "Content-Type": "application/octet-stream"},
    )
    assert done.status_code == 201, done.text
    return digest


def tar_bytes(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def push_model(registry: Registry, repository: str, model: Path) -> str:
    """Push ``model``'s files as a ModelPack artifact: weights as .raw layers, the rest as one .tar layer."""
    config = json.dumps({"descriptor": {"name": model.name}, "modelfs": {"type": "layers", "diffIds": []}}).encode()
    layers = []
    others: dict[str, bytes] = {}
    for path in sorted(p for p in model.rglob("*") if p.is_file()):
        relpath = path.relative_to(model).as_posix()
        if path.suffix in (".safetensors", ".bin"):
            data = path.read_bytes()
            layers.append(
                {
                    "mediaType": "application/vnd.cncf.model.weight.v1.raw",
                    "digest": push_blob(registry, repository, data),
                    "size": len(data),
                    "annotations": {"org.cncf.model.filepath": relpath},
                }
            )
        else:
            others[relpath] = path.read_bytes()
    packed = tar_bytes(others)
    layers.append(
        {
            "mediaType": "application/vnd.cncf.model.weight.config.v1.tar",
            "digest": push_blob(registry, repository, packed),
            "size": len(packed),
        }
    )
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": MODEL_MANIFEST,
            "config": {
                "mediaType": "application/vnd.cncf.model.config.v1+json",
                "digest": push_blob(registry, repository, config),
                "size": len(config),
            },
            "layers": layers,
        }
    ).encode()
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    answer = httpx.put(
        f"{registry.url}/v2/{repository}/manifests/v1",
        verify=registry.verify,
        content=manifest,
        headers={"Authorization": registry.push_auth, "Content-Type": OCI_MANIFEST},
    )
    assert answer.status_code == 201, answer.text
    assert answer.headers["docker-content-digest"] == digest
    return digest


def auth_file(tmp_path: Path, host: str, user: str = USER, password: str = PASSWORD) -> Path:
    path = tmp_path / "auth.json"
    path.write_text(json.dumps({"auths": {host: {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}}}))
    return path


# -- the specification --


def test_an_approved_model_pulled_by_digest_gets_the_same_verdict_and_oms_digest_as_on_disk(
    htpasswd_registry: Registry, tmp_path: Path
) -> None:
    registry = htpasswd_registry
    digest = push_model(registry, "team/model", SAMPLES / "approved")
    folder, pulled = _pull(
        f"oci://{registry.host}/team/model@{digest}",
        tmp_path / "pulled",
        auth_file=auth_file(tmp_path, registry.host),
        insecure_registries=[registry.host],
    )
    assert pulled == digest
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in (SAMPLES / "approved").iterdir())
    policy = load_builtin("default")
    assert verify(str(folder), policy).verdict == "approved"
    assert scan([folder], policy).verdict == scan([SAMPLES / "approved"], policy).verdict == "approved"
    assert model_digest(str(folder), policy)[1] == model_digest(str(SAMPLES / "approved"), policy)[1]


def test_a_blocked_model_pulled_from_the_registry_is_rejected(htpasswd_registry: Registry, tmp_path: Path) -> None:
    registry = htpasswd_registry
    digest = push_model(registry, "team/evil", SAMPLES / "blocked")
    folder, _ = _pull(
        f"oci://{registry.host}/team/evil@{digest}",
        tmp_path / "pulled",
        auth_file=auth_file(tmp_path, registry.host),
        insecure_registries=[registry.host],
    )
    report = verify(str(folder), load_builtin("default"))
    assert report.verdict == "rejected" and scan([folder], load_builtin("default")).verdict == "rejected"
    assert any(f.code == "WG-PKL-001" and f.blocking for f in report.findings)


def test_wrong_credentials_are_a_clear_source_error(htpasswd_registry: Registry, tmp_path: Path) -> None:
    registry = htpasswd_registry
    digest = push_model(registry, "team/model", SAMPLES / "approved")
    with pytest.raises(SourceError, match="credentials are wrong"):
        _pull(
            f"oci://{registry.host}/team/model@{digest}",
            tmp_path / "pulled",
            auth_file=auth_file(tmp_path, registry.host, password="wrong"),
            insecure_registries=[registry.host],
        )
    with pytest.raises(SourceError, match="needs credentials"):
        _pull(
            f"oci://{registry.host}/team/model@{digest}",
            tmp_path / "pulled2",
            auth_file=auth_file(tmp_path, "elsewhere:5000"),
            insecure_registries=[registry.host],
        )


def test_a_blob_tampered_in_the_registry_storage_is_refused(htpasswd_registry: Registry, tmp_path: Path) -> None:
    registry = htpasswd_registry
    digest = push_model(registry, "team/model", SAMPLES / "approved")
    weights = (SAMPLES / "approved" / "model.safetensors").read_bytes()
    hexdigest = hashlib.sha256(weights).hexdigest()
    data = registry.root / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest / "data"
    assert data.read_bytes() == weights
    data.write_bytes(weights[:-1] + bytes([weights[-1] ^ 1]))  # same size, one bit flipped
    with pytest.raises(FetchError, match=f"blob sha256:{hexdigest} .*does not match its digest"):
        _pull(
            f"oci://{registry.host}/team/model@{digest}",
            tmp_path / "pulled",
            auth_file=auth_file(tmp_path, registry.host),
            insecure_registries=[registry.host],
        )


def test_a_failed_pull_into_a_folder_it_made_leaves_nothing_behind(
    htpasswd_registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = htpasswd_registry
    digest = push_model(registry, "team/model", SAMPLES / "approved")
    weights = (SAMPLES / "approved" / "model.safetensors").read_bytes()
    hexdigest = hashlib.sha256(weights).hexdigest()
    (registry.root / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest / "data").write_bytes(
        b"x" * len(weights)
    )
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr("tempfile.tempdir", None)
    with pytest.raises(FetchError, match="does not match its digest"):
        _pull(
            f"oci://{registry.host}/team/model@{digest}",
            auth_file=auth_file(tmp_path, registry.host),
            insecure_registries=[registry.host],
        )
    assert list((tmp_path / "tmp").iterdir()) == []


def test_a_tag_is_refused_unless_asked_for_and_then_resolved_to_its_digest(
    htpasswd_registry: Registry, tmp_path: Path
) -> None:
    registry = htpasswd_registry
    digest = push_model(registry, "team/model", SAMPLES / "approved")
    options = {"auth_file": auth_file(tmp_path, registry.host), "insecure_registries": [registry.host]}
    with pytest.raises(FetchError, match="not pinned to a digest"):
        _pull(f"oci://{registry.host}/team/model:v1", tmp_path / "a", **options)  # type: ignore[arg-type]
    _, pulled = _pull(f"oci://{registry.host}/team/model:v1", tmp_path / "b", allow_tag=True, **options)  # type: ignore[arg-type]
    assert pulled == digest


def test_plain_http_is_refused_unless_the_registry_is_named_insecure(
    htpasswd_registry: Registry, tmp_path: Path
) -> None:
    registry = htpasswd_registry
    digest = push_model(registry, "team/model", SAMPLES / "approved")
    with pytest.raises(
        FetchError, match="cannot reach the registry"
    ):  # https to a plain HTTP port fails the TLS handshake
        _pull(
            f"oci://{registry.host}/team/model@{digest}", tmp_path / "a", auth_file=auth_file(tmp_path, registry.host)
        )
    with pytest.raises(FetchError, match="refusing plain HTTP"):
        RegistryClient(registry.url)


def test_the_token_flow_gets_a_scoped_token_with_basic_credentials(
    token_registry: tuple[Registry, TokenIssuer], tmp_path: Path
) -> None:
    registry, issuer = token_registry
    digest = push_model(registry, "team/model", SAMPLES / "approved")
    folder, pulled = _pull(
        f"oci://{registry.host}/team/model@{digest}",
        tmp_path / "pulled",
        auth_file=auth_file(tmp_path, registry.host),
        insecure_registries=[registry.host],
    )
    assert pulled == digest and verify(str(folder), load_builtin("default")).verdict == "approved"
    assert any(
        "scope=repository%3Ateam%2Fmodel%3Apull" in r and "service=weightguard-test-registry" in r
        for r in issuer.requests
    )
    with pytest.raises(SourceError, match="token service .* refused the credentials"):
        _pull(
            f"oci://{registry.host}/team/model@{digest}",
            tmp_path / "bad",
            auth_file=auth_file(tmp_path, registry.host, password="wrong"),
            insecure_registries=[registry.host],
        )


def test_the_harbor_fetcher_uses_the_ready_authorization_value(
    token_registry: tuple[Registry, TokenIssuer], tmp_path: Path
) -> None:
    registry, issuer = token_registry
    digest = push_model(registry, "team/model", SAMPLES / "approved")
    fetcher = RegistryFetcher(insecure_registries=[registry.host])
    bearer = "Bearer " + issuer.token("repository:team/model:pull")
    fetched = fetcher.fetch(ArtifactRef(registry.url, "team/model", digest, authorization=bearer), tmp_path / "a")
    assert fetched.manifest_digest == digest and fetched.files == 3
    assert issuer.requests == []  # the ready token was used as it is
    # Harbor may hand over robot credentials as Basic: they are taken to the token service.
    fetched = fetcher.fetch(
        ArtifactRef(registry.url, "team/model", digest, authorization=basic(USER, PASSWORD)), tmp_path / "b"
    )
    assert fetched.files == 3
    with pytest.raises(FetchError, match="credentials are wrong"):
        fetcher.fetch(
            ArtifactRef(registry.url, "team/model", digest, authorization="Bearer not-a-token"), tmp_path / "c"
        )


def test_tls_with_a_custom_ca_bundle_is_verified(tmp_path: Path) -> None:
    ca, cert, key = tls_files(tmp_path)
    htpasswd = tmp_path / "htpasswd"
    line = subprocess.run(["htpasswd", "-Bbn", USER, PASSWORD], capture_output=True, check=True, text=True).stdout
    htpasswd.write_text(line.strip() + "\n")
    auth = f"auth:\n  htpasswd:\n    realm: weightguard-test\n    path: {htpasswd}\n"
    for registry in start_registry(tmp_path, auth, tls=(cert, key)):
        pusher = Registry(
            registry.host, registry.root, basic(USER, PASSWORD), "https", ssl.create_default_context(cafile=str(ca))
        )
        digest = push_model(pusher, "team/model", SAMPLES / "approved")
        uri = f"oci://{registry.host}/team/model@{digest}"
        folder, pulled = _pull(uri, tmp_path / "pulled", auth_file=auth_file(tmp_path, registry.host), ca_bundle=ca)
        assert pulled == digest and verify(str(folder), load_builtin("default")).verdict == "approved"
        with pytest.raises(FetchError, match="cannot reach the registry .*CERTIFICATE_VERIFY_FAILED"):
            _pull(uri, tmp_path / "untrusted", auth_file=auth_file(tmp_path, registry.host))


# issue 17: the CLI wiring (pipeline.resolve_target + verify options)


def verify_cli(uri: str, *options: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "weightguard", "verify", uri, "--format", "json", *options]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=120, env={"TMPDIR": str(tmp), "PATH": "/usr/bin:/bin"}
    )


def test_verify_oci_pulls_by_digest_judges_like_on_disk_and_leaves_no_files(
    htpasswd_registry: Registry, tmp_path: Path
) -> None:
    registry = htpasswd_registry
    work = tmp_path / "work"
    work.mkdir()
    creds = ["--registry-auth-file", str(auth_file(tmp_path, registry.host)), "--insecure-registry", registry.host]
    digest = push_model(registry, "team/approved", SAMPLES / "approved")
    approved = verify_cli(f"oci://{registry.host}/team/approved@{digest}", *creds, tmp=work)
    assert approved.returncode == 0, approved.stderr
    report = json.loads(approved.stdout)
    assert report["subject"]["root_digest"] == model_digest(str(SAMPLES / "approved"), load_builtin("default"))[1]
    blocked = push_model(registry, "team/blocked", SAMPLES / "blocked")
    assert verify_cli(f"oci://{registry.host}/team/blocked@{blocked}", *creds, tmp=work).returncode == 1
    wrong = [
        "--registry-auth-file",
        str(auth_file(tmp_path, registry.host, password="no")),
        "--insecure-registry",
        registry.host,
    ]
    refused = verify_cli(f"oci://{registry.host}/team/approved@{digest}", *wrong, tmp=work)
    assert refused.returncode == 2 and "credentials are wrong" in refused.stderr
    assert list(work.iterdir()) == []
