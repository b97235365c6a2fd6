"""issue 17: approvals back to the registry, against the real CNCF distribution registry.

``verify oci://… --attest KEY --attach`` pushes the approval attestation as an OCI 1.1
referrer of the model manifest; ``attestation verify oci://…`` finds it again and checks
it against the artifact pulled and hashed now. Debian's docker-registry (distribution 2.8)
has no referrers API, so these runs exercise the tag-schema fallback (``sha256-<hex>``);
the API path is covered with scripted answers at the end, as test_oci_registry_client does.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from test_oci_registry import OCI_MANIFEST, REGISTRY_BIN, SAMPLES, Registry, TokenIssuer, auth_file, push_model

from weightguard.pipeline import model_digest
from weightguard.policy.load import load_builtin
from weightguard.sources.oci_push import attach, fallback_tag, merge_index, open_client, referrers
from weightguard.sources.oci_registry import RegistryClient, parse_oci_uri
from weightguard.sources.oci_unpack import FetchError
from weightguard.verdict.oci_attestation import SIGSTORE_BUNDLE_TYPE

pytestmark = pytest.mark.skipif(
    not REGISTRY_BIN.exists() or shutil.which("htpasswd") is None,
    reason="docker-registry / htpasswd are not installed (run ci/install-services.sh as root on Debian)",
)


def keypair(folder: Path) -> tuple[Path, Path]:
    private = ec.generate_private_key(ec.SECP256R1())
    key, pub = folder / "approver.pem", folder / "approver.pub.pem"
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    pub.write_bytes(
        private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return key, pub


def cli(*args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "weightguard", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"TMPDIR": str(tmp), "PATH": "/usr/bin:/bin", "HOME": str(tmp)},
    )


def access(registry: Registry, tmp_path: Path) -> list[str]:
    return ["--registry-auth-file", str(auth_file(tmp_path, registry.host)), "--insecure-registry", registry.host]


def listing(registry: Registry, repository: str, digest: str) -> httpx.Response:
    return httpx.get(
        f"{registry.url}/v2/{repository}/manifests/{fallback_tag(digest)}",
        headers={"Authorization": registry.push_auth, "Accept": "application/vnd.oci.image.index.v1+json"},
    )


def attach_cli(
    registry: Registry, uri: str, key: Path, tmp_path: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    att = tmp_path / "approval.att.json"
    return cli("verify", uri, "--format", "json", "--attest", str(key), "--attestation", str(att), "--attach",
               *extra, *access(registry, tmp_path), tmp=tmp_path)  # fmt: skip


def check_cli(registry: Registry, uri: str, pub: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return cli("attestation", "verify", uri, "--public-key", str(pub), *access(registry, tmp_path), tmp=tmp_path)


def test_an_approval_attached_by_verify_is_found_and_holds_for_the_artifact_in_the_registry(
    htpasswd_registry: Registry, tmp_path: Path
) -> None:
    registry = htpasswd_registry
    key, pub = keypair(tmp_path)
    digest = push_model(registry, "team/model", SAMPLES / "approved")
    uri = f"oci://{registry.host}/team/model@{digest}"

    attached = attach_cli(registry, uri, key, tmp_path)
    assert attached.returncode == 0, attached.stderr
    assert f"attestation attached to {digest}" in attached.stderr and fallback_tag(digest) in attached.stderr

    # What the registry holds: an index under sha256-<hex> naming one referrer whose subject is the model.
    index = listing(registry, "team/model", digest).json()
    [entry] = index["manifests"]
    assert entry["artifactType"] == SIGSTORE_BUNDLE_TYPE
    referrer = httpx.get(
        f"{registry.url}/v2/team/model/manifests/{entry['digest']}",
        headers={"Authorization": registry.push_auth, "Accept": OCI_MANIFEST},
    ).json()
    assert referrer["subject"]["digest"] == digest and referrer["artifactType"] == SIGSTORE_BUNDLE_TYPE
    assert referrer["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"
    assert (
        referrer["layers"][0]["digest"]
        == "sha256:" + hashlib.sha256((tmp_path / "approval.att.json").read_bytes()).hexdigest()
    )

    checked = check_cli(registry, uri, pub, tmp_path)
    assert checked.returncode == 0, checked.stderr
    answer = json.loads(checked.stdout)
    assert answer["valid"] is True and answer["result"] == "PASSED" and answer["manifest_digest"] == digest
    assert answer["digest"] == model_digest(str(SAMPLES / "approved"), load_builtin("default"))[1]

    # A second approval joins the first in the same index instead of replacing it.
    assert attach_cli(registry, uri, key, tmp_path).returncode == 0
    assert len(listing(registry, "team/model", digest).json()["manifests"]) == 2
    assert check_cli(registry, uri, pub, tmp_path).returncode == 0

    (tmp_path / "other").mkdir()
    _, other_pub = keypair(tmp_path / "other")
    refused = check_cli(registry, uri, other_pub, tmp_path)
    assert refused.returncode == 1 and "not signed by the given key" in refused.stderr


def test_a_manifest_re_pushed_with_one_changed_layer_is_not_covered_by_the_old_approval(
    htpasswd_registry: Registry, tmp_path: Path
) -> None:
    registry = htpasswd_registry
    key, pub = keypair(tmp_path)
    old = push_model(registry, "team/model", SAMPLES / "approved")
    assert attach_cli(registry, f"oci://{registry.host}/team/model@{old}", key, tmp_path).returncode == 0

    changed = tmp_path / "changed"
    shutil.copytree(SAMPLES / "approved", changed)
    (changed / "tokenizer.json").write_bytes((changed / "tokenizer.json").read_bytes() + b"\n")  # one layer differs
    new = push_model(registry, "team/model", changed)  # same tag v1, new manifest digest
    assert new != old

    missing = check_cli(registry, f"oci://{registry.host}/team/model@{new}", pub, tmp_path)
    assert missing.returncode == 1
    assert f"no approval attestation is attached to oci://{registry.host}/team/model@{new}" in missing.stderr

    # Anyone who may push can attach the old, validly signed bundle to the new manifest: it still does not hold.
    bundle = (tmp_path / "approval.att.json").read_bytes()
    with open_client(
        parse_oci_uri(f"oci://{registry.host}/team/model@{new}"),
        auth_file=auth_file(tmp_path, registry.host),
        insecure_registries=[registry.host],
    ) as client:
        attach(client, "team/model", new, SIGSTORE_BUNDLE_TYPE, bundle)
        assert len(referrers(client, "team/model", new, SIGSTORE_BUNDLE_TYPE)) == 1
    copied = check_cli(registry, f"oci://{registry.host}/team/model@{new}", pub, tmp_path)
    assert copied.returncode == 1 and f"does not name the manifest {new}" in copied.stderr

    # The old digest is still what was approved.
    assert check_cli(registry, f"oci://{registry.host}/team/model@{old}", pub, tmp_path).returncode == 0


def test_a_blocked_model_gets_nothing_attached(htpasswd_registry: Registry, tmp_path: Path) -> None:
    registry = htpasswd_registry
    key, pub = keypair(tmp_path)
    digest = push_model(registry, "team/evil", SAMPLES / "blocked")
    uri = f"oci://{registry.host}/team/evil@{digest}"
    result = attach_cli(registry, uri, key, tmp_path, "--attest-failed")
    assert result.returncode == 1, result.stderr
    assert "verdict rejected: no attestation attached" in result.stderr
    assert listing(registry, "team/evil", digest).status_code == 404
    assert check_cli(registry, uri, pub, tmp_path).returncode == 1


def test_attach_needs_an_oci_target_and_a_key(tmp_path: Path) -> None:
    local = cli("verify", str(SAMPLES / "approved"), "--attach", "--attest", str(tmp_path / "k.pem"), tmp=tmp_path)
    assert local.returncode == 2 and "--attach needs an oci:// target" in local.stderr
    keyless = cli("verify", "oci://127.0.0.1:1/a/b@sha256:" + "0" * 64, "--attach", tmp=tmp_path)
    assert keyless.returncode == 2 and "--attach needs --attest KEY" in keyless.stderr


def test_the_token_flow_asks_for_push_scope_to_attach(
    token_registry: tuple[Registry, TokenIssuer], tmp_path: Path
) -> None:
    registry, issuer = token_registry
    key, pub = keypair(tmp_path)
    digest = push_model(registry, "team/model", SAMPLES / "approved")
    uri = f"oci://{registry.host}/team/model@{digest}"
    attached = attach_cli(registry, uri, key, tmp_path)
    assert attached.returncode == 0, attached.stderr
    assert check_cli(registry, uri, pub, tmp_path).returncode == 0
    # The registry's challenge may order the actions either way (a Go map), so compare them as sets.
    asked = [parse_qs(urlparse(r).query).get("scope", [""])[0] for r in issuer.requests]
    assert any(
        s.rpartition(":")[0] == "repository:team/model" and "push" in s.rpartition(":")[2].split(",") for s in asked
    )


# -- the referrers API (a registry with OCI 1.1 support), scripted --


def test_a_registry_with_the_referrers_api_is_not_given_a_fallback_tag() -> None:
    subject = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": []}).encode()
    subject_digest = "sha256:" + hashlib.sha256(subject).hexdigest()
    store: dict[str, bytes] = {}
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        path = request.url.path
        if request.method == "GET" and path == f"/v2/r/manifests/{subject_digest}":
            return httpx.Response(200, stream=httpx.ByteStream(subject), headers={"content-type": OCI_MANIFEST})
        if request.method == "POST":
            return httpx.Response(202, headers={"location": "/v2/r/blobs/uploads/u1?_state=x"})
        if request.method == "PUT" and "/blobs/uploads/" in path:
            return httpx.Response(201)
        if request.method == "PUT":
            store[path.rsplit("/", 1)[1]] = request.content
            return httpx.Response(201, headers={"oci-subject": subject_digest})
        if path == f"/v2/r/referrers/{subject_digest}":
            manifests = [
                {"mediaType": OCI_MANIFEST, "digest": d, "size": len(b), "artifactType": SIGSTORE_BUNDLE_TYPE}
                for d, b in store.items()
            ]
            manifests.append(
                {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "1" * 64, "size": 9, "artifactType": "x"}
            )
            body = json.dumps({"schemaVersion": 2, "manifests": manifests}).encode()
            return httpx.Response(200, stream=httpx.ByteStream(body))
        return httpx.Response(404)

    with RegistryClient("https://r.example", transport=httpx.MockTransport(answer)) as client:
        attached = attach(client, "r", subject_digest, SIGSTORE_BUNDLE_TYPE, b"{}")
        assert attached.listing == "referrers API"
        assert not any(fallback_tag(subject_digest) in s for s in seen)
        assert [d.digest for d in referrers(client, "r", subject_digest, SIGSTORE_BUNDLE_TYPE)] == [
            attached.referrer.digest
        ]


def test_a_fallback_tag_holding_something_else_is_left_alone() -> None:
    from weightguard.sources.oci_push import Descriptor

    descriptor = Descriptor(OCI_MANIFEST, "sha256:" + "2" * 64, 10, SIGSTORE_BUNDLE_TYPE)
    with pytest.raises(FetchError, match="something other than a referrers index"):
        merge_index(json.dumps({"schemaVersion": 2, "layers": []}).encode(), descriptor, "sha256-x")
    merged = json.loads(merge_index(merge_index(None, descriptor, "t"), descriptor, "t"))
    assert len(merged["manifests"]) == 1  # the same referrer is listed once
