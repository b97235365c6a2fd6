"""Issue 17: the Harbor adapter pulls the scanned artifact from a real registry (Debian's docker-registry).

The registry runs with the distribution token flow, as in tests/sources/test_oci_registry.py
(whose helpers start it, issue tokens and push ModelPack artifacts). The sidecar is the real
``weightguard serve`` with ``WEIGHTGUARD_OCI_PULL_FROM_REGISTRY``; Harbor's scan request carries
the registry URL and a Basic or Bearer pull credential. With ``WEIGHTGUARD_ATTACH_APPROVALS`` an
approval goes back to the registry as a referrer that ``weightguard attestation verify oci://…``
accepts; the real CLI checks it.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sidecar_support import AUTH, REPO, Sidecar, sidecar_env

from weightguard.errors import UsageError
from weightguard.sidecar.app import create_app
from weightguard.sidecar.harbor import ERROR_TYPE, RAW_REPORT_TYPE
from weightguard.sidecar.settings import load_settings
from weightguard.signing.interface import TrustMaterialError


def _registry_helpers() -> ModuleType:
    spec = importlib.util.spec_from_file_location("oci_registry_helpers", REPO / "tests/sources/test_oci_registry.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


oci = _registry_helpers()
pytestmark = pytest.mark.skipif(
    not oci.REGISTRY_BIN.exists(), reason="docker-registry is not installed (run ci/install-services.sh)"
)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[tuple[object, object]]:
    issuer = oci.TokenIssuer(tmp_path)
    server, port = issuer.serve()
    auth = (
        f"auth:\n  token:\n    realm: http://127.0.0.1:{port}/token\n    service: weightguard-test-registry\n"
        f"    issuer: weightguard-test-issuer\n    rootcertbundle: {issuer.bundle}\n"
    )
    try:
        for started in oci.start_registry(tmp_path, auth):
            started.push_auth = "Bearer " + issuer.token("repository:team/model:pull,push")
            yield started, issuer
    finally:
        server.shutdown()


def _scan(client: object, url: str, digest: str, authorization: str) -> tuple[int, str, dict[str, object]]:
    return _scan_with_id(client, url, digest, authorization)[1:]


def _scan_with_id(client: object, url: str, digest: str, authorization: str) -> tuple[str, int, str, dict[str, object]]:
    body = {
        "registry": {"url": url, "authorization": authorization},
        "artifact": {"repository": "team/model", "digest": digest, "mime_type": oci.OCI_MANIFEST},
    }
    answer = client.post("/api/v1/scan", content=json.dumps(body), headers=AUTH)  # type: ignore[attr-defined]
    assert answer.status_code == 202, answer.text
    scan_id = answer.json()["id"]
    for _ in range(600):
        report = client.get(f"/api/v1/scan/{scan_id}/report", headers={**AUTH, "Accept": RAW_REPORT_TYPE})  # type: ignore[attr-defined]
        if report.status_code != 302:
            return scan_id, report.status_code, report.headers["content-type"], report.json()
        time.sleep(0.05)
    raise AssertionError("the scan never finished")


def test_issue_17_harbor_scans_pull_from_a_real_registry_with_basic_or_bearer_and_a_wrong_token_is_a_422(
    tmp_path: Path, spawn: Callable[..., Sidecar], registry: tuple[object, object]
) -> None:
    reg, issuer = registry
    approved = oci.push_model(reg, "team/model", REPO / "sample_models" / "approved")
    blocked = oci.push_model(reg, "team/model", REPO / "sample_models" / "blocked")
    env = sidecar_env(
        tmp_path,
        [tmp_path],
        WEIGHTGUARD_OCI_PULL_FROM_REGISTRY="true",
        WEIGHTGUARD_OCI_INSECURE_REGISTRIES=reg.host,  # type: ignore[attr-defined]
    )
    sidecar = spawn(env)
    url = reg.url  # type: ignore[attr-defined]
    bearer = "Bearer " + issuer.token("repository:team/model:pull")  # type: ignore[attr-defined]
    with sidecar.client() as client:
        status, kind, report = _scan(client, url, approved, bearer)
        assert (status, kind, report["verdict"]) == (200, RAW_REPORT_TYPE, "approved")
        status, kind, report = _scan(client, url, blocked, oci.basic(oci.USER, oci.PASSWORD))
        assert (status, kind, report["verdict"]) == (200, RAW_REPORT_TYPE, "rejected")
        status, kind, error = _scan(client, url, approved, "Bearer not-a-token")
        assert (status, kind) == (422, ERROR_TYPE)
        assert "refused" in str(error["error"]["message"])  # type: ignore[index]


def _keypair(folder: Path) -> tuple[Path, Path]:
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


def _attestation_verify(uri: str, pub: Path, auth: Path, host: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    command = ["attestation", "verify", uri, "--public-key", str(pub), "--registry-auth-file", str(auth)]
    return subprocess.run(
        [sys.executable, "-m", "weightguard", *command, "--insecure-registry", host],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={"TMPDIR": str(tmp), "PATH": "/usr/bin:/bin", "HOME": str(tmp), "PYTHONPATH": str(REPO)},
    )


def test_issue_17_a_harbor_approval_is_attached_to_the_registry_and_a_blocked_model_gets_none(
    tmp_path: Path, spawn: Callable[..., Sidecar], registry: tuple[object, object]
) -> None:
    reg, issuer = registry
    host, url = reg.host, reg.url  # type: ignore[attr-defined]
    approved = oci.push_model(reg, "team/model", REPO / "sample_models" / "approved")
    blocked = oci.push_model(reg, "team/model", REPO / "sample_models" / "blocked")
    key, pub = _keypair(tmp_path)
    auth = oci.auth_file(tmp_path, host)  # may push; Harbor's scan credential below may only pull
    pull_only = "Bearer " + issuer.token("repository:team/model:pull")  # type: ignore[attr-defined]
    env = sidecar_env(
        tmp_path,
        [tmp_path],
        WEIGHTGUARD_OCI_PULL_FROM_REGISTRY="true",
        WEIGHTGUARD_OCI_INSECURE_REGISTRIES=host,
        WEIGHTGUARD_ATTACH_APPROVALS="true",
        WEIGHTGUARD_ATTESTATION_KEY=str(key),
        WEIGHTGUARD_REGISTRY_AUTH_FILE=str(auth),
    )
    with spawn(env).client() as client:
        status, _, report = _scan(client, url, approved, pull_only)
        assert (status, report["verdict"]) == (200, "approved")
        attestation = report["attestation"]
        assert isinstance(attestation, dict) and attestation["path"].startswith(f"oci://{host}/team/model@sha256:")
        status, _, report = _scan(client, url, blocked, pull_only)
        assert (status, report["verdict"], report["attestation"]) == (200, "rejected", None)
        metrics = client.get("/metrics", headers=AUTH).text
        assert 'weightguard_approval_attachments_total{outcome="attached"} 1.0' in metrics

    checked = _attestation_verify(f"oci://{host}/team/model@{approved}", pub, auth, host, tmp_path)
    assert checked.returncode == 0, checked.stderr
    answer = json.loads(checked.stdout)
    assert (answer["valid"], answer["result"], answer["manifest_digest"]) == (True, "PASSED", approved)
    # Nothing was pushed for the blocked model: no referrer listing, and nothing to verify.
    listing = httpx.get(
        f"{url}/v2/team/model/manifests/{blocked.replace(':', '-', 1)}",
        headers={"Authorization": reg.push_auth, "Accept": "application/vnd.oci.image.index.v1+json"},  # type: ignore[attr-defined]
    )
    assert listing.status_code == 404
    refused = _attestation_verify(f"oci://{host}/team/model@{blocked}", pub, auth, host, tmp_path)
    assert refused.returncode == 1 and "no approval attestation is attached" in refused.stderr


def test_issue_17_a_refused_push_is_recorded_and_the_approval_stands(
    tmp_path: Path, spawn: Callable[..., Sidecar], registry: tuple[object, object]
) -> None:
    reg, issuer = registry
    host, url = reg.host, reg.url  # type: ignore[attr-defined]
    approved = oci.push_model(reg, "team/model", REPO / "sample_models" / "approved")
    key, _ = _keypair(tmp_path)
    env = sidecar_env(  # no auth file: the scan's own pull-only credential is tried, and refused
        tmp_path,
        [tmp_path],
        WEIGHTGUARD_OCI_PULL_FROM_REGISTRY="true",
        WEIGHTGUARD_OCI_INSECURE_REGISTRIES=host,
        WEIGHTGUARD_ATTACH_APPROVALS="true",
        WEIGHTGUARD_ATTESTATION_KEY=str(key),
    )
    sidecar = spawn(env)
    with sidecar.client() as client:
        pull_only = "Bearer " + issuer.token("repository:team/model:pull")  # type: ignore[attr-defined]
        scan_id, status, _, report = _scan_with_id(client, url, approved, pull_only)
        assert (status, report["verdict"], report["attestation"]) == (200, "approved", None)
        job = client.get(f"/v1/verifications/{scan_id}", headers=AUTH).json()
        assert (job["status"], job["verdict"]) == ("done", "approved")
        assert "approval attestation was not attached to team/model@" in job["error"]["message"]
        metrics = client.get("/metrics", headers=AUTH).text
        assert 'weightguard_approval_attachments_total{outcome="failed"} 1.0' in metrics
    assert "approval attestation was not attached" in sidecar.log.read_text()
    listing = httpx.get(
        f"{url}/v2/team/model/manifests/{approved.replace(':', '-', 1)}",
        headers={"Authorization": reg.push_auth, "Accept": "application/vnd.oci.image.index.v1+json"},  # type: ignore[attr-defined]
    )
    assert listing.status_code == 404


def test_issue_17_attaching_approvals_is_refused_at_start_without_a_registry_or_a_key(tmp_path: Path) -> None:

    base = {"api_token": "t" * 20, "database": f"sqlite:///{tmp_path / 'db.sqlite'}", "attach_approvals": True}
    with pytest.raises(UsageError, match="needs oci_pull_from_registry"):
        create_app(load_settings(None, **base))
    with pytest.raises(UsageError, match="needs an attestation key"):
        create_app(load_settings(None, **base, oci_pull_from_registry=True))
    with pytest.raises(TrustMaterialError, match="cannot read the attestation key"):  # refused before any scan
        create_app(load_settings(None, **base, oci_pull_from_registry=True, attestation_key=tmp_path / "gone.pem"))
    with pytest.raises(UsageError, match="oci_model_subdir"):
        create_app(
            load_settings(None, **base, oci_pull_from_registry=True, attestation_key=tmp_path, oci_model_subdir="m")
        )


def test_issue_17_registry_settings_are_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WEIGHTGUARD_OCI_PULL_FROM_REGISTRY", "1")
    monkeypatch.setenv("WEIGHTGUARD_OCI_INSECURE_REGISTRIES", "127.0.0.1:5000, registry.local:80")
    monkeypatch.setenv("WEIGHTGUARD_OCI_CA_BUNDLE", str(tmp_path / "ca.pem"))
    settings = load_settings(None)
    assert settings.oci_pull_from_registry
    assert settings.oci_insecure_registries == ["127.0.0.1:5000", "registry.local:80"]
    assert settings.oci_ca_bundle == tmp_path / "ca.pem"
