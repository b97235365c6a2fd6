"""Issue 17: the Harbor adapter pulls the scanned artifact from a real registry (Debian's docker-registry).

The registry runs with the distribution token flow, as in tests/sources/test_oci_registry.py
(whose helpers start it, issue tokens and push ModelPack artifacts). The sidecar is the real
``weightguard serve`` with ``WEIGHTGUARD_OCI_PULL_FROM_REGISTRY``; Harbor's scan request carries
the registry URL and a Basic or Bearer pull credential.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
from sidecar_support import AUTH, REPO, Sidecar, sidecar_env

from weightguard.sidecar.harbor import ERROR_TYPE, RAW_REPORT_TYPE
from weightguard.sidecar.settings import load_settings


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
            return report.status_code, report.headers["content-type"], report.json()
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
