"""The Harbor Pluggable Scanner Adapter API v1.2, end to end against OCI image layouts built on disk.

Request and response bodies follow goharbor/pluggable-scanner-spec
api/spec/scanner-adapter-openapi-v1.2.yaml (ScanRequest, ScanResponse,
ScannerAdapterMetadata, HarborVulnerabilityReport, ErrorResponse).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import httpx
import pytest
from sidecar_support import AUTH, REPO, Sidecar, build_oci_layout, model_layer, tar_layer

from weightguard.sidecar.harbor import ERROR_TYPE, RAW_REPORT_TYPE, SCAN_RESPONSE_TYPE, VULN_REPORT_TYPE

SCAN_REQUEST_TYPE = "application/vnd.scanner.adapter.scan.request+json; version=1.1"
SEVERITIES = {"Unknown", "Negligible", "Low", "Medium", "High", "Critical"}


def scan_request(repository: str, digest: str) -> dict[str, object]:
    # The example body of the spec's ScanRequest, with our repository and digest.
    return {
        "registry": {"url": "https://core.harbor.domain", "authorization": "Basic BASE64_ENCODED_CREDENTIALS"},
        "artifact": {
            "repository": repository,
            "digest": digest,
            "tag": "3.14-xenial",
            "mime_type": "application/vnd.docker.distribution.manifest.v2+json",
            "namespace_id": 3,  # sent by Harbor's client though not in the spec: must be tolerated
        },
        "enabled_capabilities": [{"type": "vulnerability", "produces_mime_types": [VULN_REPORT_TYPE]}],
    }


def poll_report(client: httpx.Client, scan_id: str, accept: str = VULN_REPORT_TYPE) -> httpx.Response:
    saw_302 = False
    for _ in range(300):
        response = client.get(f"/api/v1/scan/{scan_id}/report", headers={**AUTH, "Accept": accept})
        if response.status_code != 302:
            response.extensions["saw_302"] = saw_302
            return response
        saw_302 = True
        assert response.headers["refresh-after"].isdigit() and response.headers["retry-after"].isdigit()
        time.sleep(0.05)
    raise AssertionError("the report never became ready")


def submit(client: httpx.Client, repository: str, digest: str) -> str:
    response = client.post(
        "/api/v1/scan",
        content=json.dumps(scan_request(repository, digest)),
        headers={**AUTH, "Content-Type": SCAN_REQUEST_TYPE},
    )
    assert response.status_code == 202, response.text
    assert response.headers["content-type"] == SCAN_RESPONSE_TYPE
    return str(response.json()["id"])


def test_metadata_matches_the_spec_shape(real_server: Sidecar) -> None:
    with real_server.client() as client:
        response = client.get("/api/v1/metadata", headers=AUTH)
    body = response.json()
    assert response.headers["content-type"] == "application/vnd.scanner.adapter.metadata+json; version=1.1"
    assert set(body) == {"scanner", "capabilities", "properties"}
    assert set(body["scanner"]) == {"name", "vendor", "version"}
    (capability,) = body["capabilities"]
    assert capability["type"] == "vulnerability"
    assert "application/vnd.oci.image.manifest.v1+json" in capability["consumes_mime_types"]
    assert VULN_REPORT_TYPE in capability["produces_mime_types"]
    assert all(isinstance(v, str) for v in body["properties"].values())


def test_image_with_a_malicious_pickle_is_reported_as_a_high_vulnerability(
    real_server: Sidecar, oci_root: Path
) -> None:
    blocked = REPO / "sample_models" / "blocked"
    digest = build_oci_layout(oci_root, "models/blocked", [tar_layer([("bin/sh", b"#!")]), model_layer(blocked)])
    with real_server.client() as client:
        scan_id = submit(client, "models/blocked", digest)
        response = poll_report(client, scan_id)
        raw = poll_report(client, scan_id, RAW_REPORT_TYPE)
    assert response.status_code == 200 and response.headers["content-type"] == VULN_REPORT_TYPE
    report = response.json()
    assert set(report) == {"generated_at", "artifact", "scanner", "severity", "vulnerabilities"}
    assert report["artifact"]["repository"] == "models/blocked" and report["artifact"]["digest"] == digest
    assert report["severity"] in ("High", "Critical")
    pickle_items = [v for v in report["vulnerabilities"] if v["id"].startswith("WG-PKL")]
    assert pickle_items, report
    item = pickle_items[0]
    expected_sha = hashlib.sha256((blocked / "pytorch_model.bin").read_bytes()).hexdigest()
    assert item["package"].startswith("models/pytorch_model.bin") and item["version"] == expected_sha
    assert item["severity"] in SEVERITIES and item["vendor_attributes"]["verdict"] == "rejected"
    assert raw.headers["content-type"] == RAW_REPORT_TYPE and raw.json()["verdict"] == "rejected"
    assert "weightguard-oci-" not in raw.text  # temporary paths are replaced by the artifact reference


def test_clean_model_image_reports_no_blocking_vulnerability(real_server: Sidecar, oci_root: Path) -> None:
    digest = build_oci_layout(oci_root, "models/approved", [model_layer(REPO / "sample_models" / "approved")])
    with real_server.client() as client:
        report = poll_report(client, submit(client, "models/approved", digest)).json()
    assert all(v["vendor_attributes"]["blocking"] is False for v in report["vulnerabilities"])
    assert report["severity"] not in ("High", "Critical")


def test_scan_of_a_missing_artifact_fails_with_a_422_error_body(real_server: Sidecar, oci_root: Path) -> None:
    # issue 17: an artifact that cannot be pulled is the request's fault, never the adapter's 500.
    with real_server.client() as client:
        response = poll_report(client, submit(client, "models/absent", "sha256:" + "0" * 64))
    assert response.status_code == 422 and response.headers["content-type"] == ERROR_TYPE
    assert response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("content", "status"),
    [
        (b"{not json", 400),
        (json.dumps({"registry": {}}).encode(), 422),
        (json.dumps(scan_request("models/x", "sha256:short")).encode(), 422),
        (
            json.dumps(
                {**scan_request("models/x", "sha256:" + "0" * 64), "enabled_capabilities": [{"type": "sbom"}]}
            ).encode(),
            501,
        ),
    ],
)
def test_bad_scan_requests_get_the_spec_error_codes(real_server: Sidecar, content: bytes, status: int) -> None:
    with real_server.client() as client:
        response = client.post("/api/v1/scan", content=content, headers={**AUTH, "Content-Type": SCAN_REQUEST_TYPE})
    assert response.status_code == status
    assert response.headers["content-type"] == ERROR_TYPE and response.json()["error"]["message"]


def test_unknown_scan_id_is_404_and_unsupported_report_types_501(real_server: Sidecar, oci_root: Path) -> None:
    digest = build_oci_layout(oci_root, "models/again", [model_layer(REPO / "sample_models" / "approved")])
    with real_server.client() as client:
        assert client.get("/api/v1/scan/nope/report", headers=AUTH).status_code == 404
        scan_id = submit(client, "models/again", digest)
        sbom = client.get(
            f"/api/v1/scan/{scan_id}/report",
            headers={**AUTH, "Accept": "application/vnd.security.sbom.report+json; version=1.0"},
        )
    assert sbom.status_code == 501
