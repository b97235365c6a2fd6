"""Approvals back to the registry from the sidecar, as OCI referrers of the model manifest (issue 17).

A Harbor scan that approves a model pulled from a registry pushes a signed
approval attestation as a referrer of the model manifest. This is ``verify --attest KEY --attach`` for the Harbor adapter
(``WEIGHTGUARD_ATTACH_APPROVALS=true`` with ``WEIGHTGUARD_ATTESTATION_KEY``).
The attestation is signed here, after the verdict, from the report alone, and
names ``oci://HOST/REPO@<model manifest digest>`` so that its statement has the
manifest as a subject, as ``weightguard attestation verify oci://…`` requires.
Only approvals are signed and pushed.

Push credentials: Harbor's scan credential is usually a robot token that may
only pull, so a Docker-style ``config.json`` (``WEIGHTGUARD_REGISTRY_AUTH_FILE``)
is used when set; without one the scan's own credential is tried.

A failed push never changes the verdict, which was decided before: the job
stays done with its report, the failure is written to the job's ``error``
(``GET /v1/jobs/{id}``), logged as a warning and counted in
``weightguard_approval_attachments_total{outcome="failed"}``. A successful
push sets the report's ``attestation`` to the referrer
(``oci://HOST/REPO@<referrer digest>``) with the bundle's sha256.
Not handled here: the registry protocol (:mod:`weightguard.sources.oci_push`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from weightguard.errors import WeightguardError
from weightguard.report.model import AttestationRef, Report
from weightguard.signing.keys import PrivateKey
from weightguard.sources.oci_auth import load_credentials
from weightguard.sources.oci_push import attach
from weightguard.sources.oci_registry import RegistryClient
from weightguard.sources.oci_unpack import ArtifactRef
from weightguard.verdict.approval import approval_bundle
from weightguard.verdict.oci_attestation import ATTESTATION_ANNOTATION, SIGSTORE_BUNDLE_TYPE

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Attachment:
    """What became of one approval: the report (with ``attestation`` set when pushed), or why it was not pushed."""

    report: Report
    failure: str | None = None


def registry_host(registry_url: str) -> str:
    """``host[:port]`` of a registry URL as Harbor sends it (``http://127.0.0.1:5000``, ``https://core.harbor``)."""
    return registry_url.split("://", 1)[-1].rstrip("/").lower()


def sign_approval(report: Report, resource_uri: str, model_name: str, key: PrivateKey) -> bytes:
    """The Sigstore bundle of an approval attestation for ``report``, naming ``resource_uri``.

    The statement is what ``verify --attest`` writes for the same report (policy, layers, checks).
    """
    return approval_bundle(
        report, key, model_name=model_name, resource_uri=resource_uri, time_verified=report.generated_at
    )


class ApprovalAttacher:
    """Signs and pushes approval attestations for models pulled from a registry."""

    def __init__(
        self,
        key: PrivateKey,
        *,
        auth_file: Path | None = None,
        insecure_registries: Collection[str] = (),
        ca_bundle: Path | None = None,
        on_outcome: Callable[[str], None] = lambda _outcome: None,
    ) -> None:
        """Sign with ``key``; push with ``auth_file``'s credentials, else the scan's own; report each outcome."""
        self.key = key
        self.auth_file = auth_file
        self.insecure = {h.lower() for h in insecure_registries}
        self.ca_bundle = ca_bundle
        self.on_outcome = on_outcome

    def attach(self, report: Report, ref: ArtifactRef, manifest_digest: str) -> Attachment:
        """Push an approval of ``report`` (about ``ref``, whose model manifest is ``manifest_digest``).

        Never raises for a push that fails: see the module docstring.
        """
        subject = report.subject
        if report.verdict != "approved" or subject is None or not subject.root_digest:
            return Attachment(report)  # only approvals, and only of a model with a root digest
        host = registry_host(ref.registry_url)
        try:
            bundle = sign_approval(report, f"oci://{host}/{ref.repository}@{manifest_digest}", ref.repository, self.key)
            with self._client(ref, host) as client:
                annotations = {ATTESTATION_ANNOTATION: "approval"}
                pushed = attach(client, ref.repository, manifest_digest, SIGSTORE_BUNDLE_TYPE, bundle, annotations)
        except WeightguardError as exc:
            return self._failed(report, ref, exc.message)
        except Exception as exc:  # noqa: BLE001 - a push must never turn an approval into a failed scan
            _log.exception("attaching the approval of %s/%s failed", host, ref.repository)
            return self._failed(report, ref, f"internal error: {type(exc).__name__}")
        self.on_outcome("attached")
        _log.info(
            "approval of %s/%s@%s attached as referrer %s (listed by the %s)",
            host,
            ref.repository,
            manifest_digest,
            pushed.referrer.digest,
            pushed.listing,
        )
        attestation = AttestationRef(
            path=f"oci://{host}/{ref.repository}@{pushed.referrer.digest}",
            sha256=hashlib.sha256(bundle).hexdigest(),
            verification_result="PASSED",
        )
        return Attachment(report.model_copy(update={"attestation": attestation}))

    def _client(self, ref: ArtifactRef, host: str) -> RegistryClient:
        insecure = host in self.insecure
        if self.auth_file is not None:
            credentials = load_credentials(host, self.auth_file)
            return RegistryClient(
                ref.registry_url, credentials=credentials, insecure=insecure, ca_bundle=self.ca_bundle
            )
        return RegistryClient(
            ref.registry_url, authorization=ref.authorization, insecure=insecure, ca_bundle=self.ca_bundle
        )

    def _failed(self, report: Report, ref: ArtifactRef, why: str) -> Attachment:
        self.on_outcome("failed")
        failure = f"approved, but the approval attestation was not attached to {ref.repository}@{ref.digest}: {why}"
        _log.warning("%s", failure)
        return Attachment(report, failure)


__all__ = ["ApprovalAttacher", "Attachment", "registry_host", "sign_approval"]
