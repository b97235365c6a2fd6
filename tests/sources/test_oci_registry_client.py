"""issue 17: the OCI registry client's rules, against scripted HTTP answers (httpx.MockTransport).

The real-registry behaviour is in test_oci_registry.py; these cover what a stock registry will not
do on demand: 429/5xx answers, redirects to blob storage, indexes, oversized or lying answers.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from weightguard.errors import SourceError
from weightguard.sources.oci_auth import load_credentials, parse_challenge
from weightguard.sources.oci_registry import RegistryClient, parse_oci_uri
from weightguard.sources.oci_unpack import FetchError, FetchLimits

WEIGHTS = b"\x00weights" * 100
MODEL = "application/vnd.cncf.model.manifest.v1+json"


def ok(content: bytes) -> httpx.Response:
    return httpx.Response(200, stream=httpx.ByteStream(content))  # streamed, as a real transport answers


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def manifest_bytes(blob: bytes = WEIGHTS) -> bytes:
    layer = {
        "mediaType": "application/vnd.cncf.model.weight.v1.raw",
        "digest": digest_of(blob),
        "size": len(blob),
        "annotations": {"org.cncf.model.filepath": "weights/model.bin"},
    }
    return json.dumps(
        {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "layers": [layer]}
    ).encode()


def client(handler: Callable[[httpx.Request], httpx.Response], **kwargs: object) -> tuple[RegistryClient, list[float]]:
    slept: list[float] = []
    made = RegistryClient(
        "https://reg.test",
        transport=httpx.MockTransport(handler),
        sleep=slept.append,
        backoff_s=0.01,
        **kwargs,  # type: ignore[arg-type]
    )
    return made, slept


def serving(objects: dict[str, bytes], blob: bytes = WEIGHTS) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        if "/blobs/" in request.url.path:
            return ok(blob)
        return ok(objects[request.url.path.rsplit("/", 1)[-1]])

    return handler


def test_429_and_503_are_retried_with_bounded_backoff_honouring_retry_after(tmp_path: Path) -> None:
    manifest = manifest_bytes()
    answers = iter([httpx.Response(429, headers={"Retry-After": "2"}), httpx.Response(503), ok(manifest)])
    made, slept = client(lambda request: next(answers))
    assert made.manifest("team/m", digest_of(manifest))["schemaVersion"] == 2
    assert slept == [2.0, 0.02]
    made, slept = client(lambda request: httpx.Response(503), max_retries=3)
    with pytest.raises(FetchError, match="answered 503"):
        made.manifest("team/m", digest_of(manifest))
    assert len(slept) == 3


def test_a_redirect_to_blob_storage_is_followed_without_the_registry_credential(tmp_path: Path) -> None:
    manifest = manifest_bytes()
    seen: list[tuple[str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.host, request.headers.get("authorization")))
        if request.url.host == "storage.test":
            return ok(WEIGHTS)
        if "/blobs/" in request.url.path:
            return httpx.Response(307, headers={"Location": "https://storage.test/presigned?sig=1"})
        return ok(manifest)

    made, _ = client(handler, authorization="Bearer registry-token")
    fetched = made.pull("team/m", digest_of(manifest), tmp_path / "out")
    assert (tmp_path / "out/weights/model.bin").read_bytes() == WEIGHTS and fetched.files == 1
    assert ("storage.test", None) in seen and ("reg.test", "Bearer registry-token") in seen


def test_an_index_is_narrowed_to_its_one_model_manifest_and_otherwise_refused(tmp_path: Path) -> None:
    manifest = manifest_bytes()
    entry = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": digest_of(manifest),
        "size": len(manifest),
    }
    image = {**entry, "digest": "sha256:" + "1" * 64, "platform": {"os": "linux", "architecture": "amd64"}}
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [image, {**entry, "artifactType": MODEL}],
        }
    ).encode()
    made, _ = client(serving({digest_of(index): index, digest_of(manifest): manifest}))
    assert made.pull("team/m", digest_of(index), tmp_path / "out").manifest_digest == digest_of(manifest)
    platforms = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [image, {**image, "digest": "sha256:" + "2" * 64}],
        }
    ).encode()
    made, _ = client(serving({digest_of(platforms): platforms}))
    with pytest.raises(FetchError, match="lists 2 manifests and 0 model or platform-less ones") as caught:
        made.pull("team/m", digest_of(platforms), tmp_path / "o2")
    assert caught.value.hint == "name the model manifest's own digest"


def test_a_manifest_or_blob_that_does_not_match_its_digest_or_is_too_big_is_refused(tmp_path: Path) -> None:
    manifest = manifest_bytes()
    made, _ = client(lambda request: ok(manifest + b" "))
    with pytest.raises(FetchError, match="does not match its digest"):
        made.manifest("team/m", digest_of(manifest))
    made, _ = client(serving({digest_of(manifest): manifest}, blob=WEIGHTS + b"!"))
    with pytest.raises(FetchError, match="blob .* does not match its digest"):
        made.pull("team/m", digest_of(manifest), tmp_path / "out")
    assert not (tmp_path / "out/weights/model.bin").exists()
    made, _ = client(serving({digest_of(manifest): manifest}), limits=FetchLimits(max_bytes=100))
    with pytest.raises(FetchError, match="over 100 bytes"):
        made.pull("team/m", digest_of(manifest), tmp_path / "o2")
    made, _ = client(serving({digest_of(manifest): manifest}), limits=FetchLimits(max_manifest_bytes=10))
    with pytest.raises(FetchError, match="manifest .* over 10 bytes"):
        made.manifest("team/m", digest_of(manifest))


def test_a_token_realm_over_plain_http_never_gets_the_credentials() -> None:
    from weightguard.sources.oci_auth import RegistryCredentials

    challenge = 'Bearer realm="http://evil.test/token",service="reg"'
    made, _ = client(
        lambda request: httpx.Response(401, headers={"WWW-Authenticate": challenge}),
        credentials=RegistryCredentials("u", "p"),
    )
    with pytest.raises(FetchError, match="non-HTTPS token service"):
        made.manifest("team/m", "sha256:" + "0" * 64)


def test_oci_uris_are_parsed_strictly() -> None:
    ref = parse_oci_uri("oci://Reg.Example:5000/team/model@sha256:" + "a" * 64)
    assert (ref.host, ref.repository, ref.tag) == ("reg.example:5000", "team/model", None)
    assert parse_oci_uri("oci://reg:5000/team/model:v1.2").tag == "v1.2"
    for bad in (
        "oci://reg/Team/model@sha256:" + "a" * 64,
        "oci://reg/m@sha512:abc",
        "oci://reg/../x@sha256:" + "a" * 64,
        "https://reg/m",
    ):
        with pytest.raises(FetchError):
            parse_oci_uri(bad)


def test_credentials_come_from_docker_config_auths_or_a_named_file(tmp_path: Path) -> None:
    auth = base64.b64encode(b"bob:pa:ss").decode()
    (tmp_path / "config.json").write_text(
        json.dumps({"auths": {"https://reg.test:5000": {"auth": auth}}, "credsStore": "desktop"})
    )
    found = load_credentials("reg.test:5000", env={"DOCKER_CONFIG": str(tmp_path)})
    assert found is not None and (found.username, found.password) == ("bob", "pa:ss") and "pa:ss" not in repr(found)
    assert load_credentials("other:5000", env={"DOCKER_CONFIG": str(tmp_path)}) is None
    assert load_credentials("reg.test:5000", env={"DOCKER_CONFIG": str(tmp_path / "none")}) is None
    with pytest.raises(SourceError, match="cannot read registry credentials"):
        load_credentials("reg.test:5000", tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text(json.dumps({"auths": {"reg.test:5000": {"auth": "!!"}}}))
    with pytest.raises(SourceError, match="malformed"):
        load_credentials("reg.test:5000", tmp_path / "bad.json")


def test_challenges_are_parsed_with_quoted_commas() -> None:
    assert parse_challenge('Bearer realm="https://a/t",service="r",scope="repository:x:pull,push"') == (
        "bearer",
        {"realm": "https://a/t", "service": "r", "scope": "repository:x:pull,push"},
    )


def test_layers_from_a_registry_follow_the_same_unpacking_rules_as_a_local_layout(tmp_path: Path) -> None:
    import io
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        link = tarfile.TarInfo("weights/link.bin")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
        evil = tarfile.TarInfo("../escape.bin")
        evil.size = 1
        archive.addfile(evil, io.BytesIO(b"x"))
    layer = out.getvalue()
    descriptor = {
        "mediaType": "application/vnd.cncf.model.weight.v1.tar",
        "digest": digest_of(layer),
        "size": len(layer),
    }
    manifest = json.dumps({"schemaVersion": 2, "layers": [descriptor]}).encode()
    made, _ = client(serving({digest_of(manifest): manifest}, blob=layer))
    with pytest.raises(FetchError, match="unsafe member name '../escape.bin'"):
        made.pull("team/m", digest_of(manifest), tmp_path / "out")
    assert not (tmp_path / "escape.bin").exists() and not (tmp_path / "out/weights/link.bin").exists()


class BrokenStream(httpx.SyncByteStream):
    def __iter__(self) -> Iterator[bytes]:
        yield b"partial"
        raise httpx.ReadError("connection reset")


def test_a_body_that_breaks_off_while_streaming_is_a_fetch_error(tmp_path: Path) -> None:
    manifest = manifest_bytes()

    def handler(request: httpx.Request) -> httpx.Response:
        if "/blobs/" in request.url.path:
            return httpx.Response(200, stream=BrokenStream())
        return ok(manifest)

    made, _ = client(handler)
    with pytest.raises(FetchError, match="broke off: connection reset"):
        made.pull("team/m", digest_of(manifest), tmp_path / "out")
