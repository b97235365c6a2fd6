"""Writing a verdict back to the model registry that asked for it (MLflow).

:class:`RegistryWriteback` is the seam; :class:`MlflowWriteback` sets the
model version's ``weightguard.*`` tags and, when approved, the configured
alias. Those writes fire MLflow webhooks back at the sidecar;
:func:`is_own_event` recognises them so they are ignored, not re-verified.
Not handled here: deciding the verdict, or promoting through rollout stages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from weightguard.errors import MissingExtraError, VerdictError
from weightguard.report.model import Report

TAG_PREFIX = "weightguard."


class RegistryWriteback(Protocol):
    """Records a verification's outcome on a registered model version."""

    def write(self, name: str, version: str, report: Report) -> None:
        """Write the outcome.

        Raises:
            VerdictError: the registry refused or could not be reached.
        """
        ...


def writeback_tags(report: Report) -> dict[str, str]:
    """The tags a verdict is recorded with."""
    tags = {
        f"{TAG_PREFIX}verdict": report.verdict,
        f"{TAG_PREFIX}policy": f"{report.policy.name}@sha256:{report.policy.sha256}",
    }
    if report.subject is not None and report.subject.root_digest:
        tags[f"{TAG_PREFIX}root_digest"] = f"sha256:{report.subject.root_digest}"
    if report.attestation is not None:
        tags[f"{TAG_PREFIX}attestation"] = f"sha256:{report.attestation.sha256}"
    return tags


def is_own_event(event: str, data: Mapping[str, object], alias: str) -> bool:
    """Whether an MLflow event was caused by weightguard's own write-back (tag or alias)."""
    if event in ("model_version_tag.set", "model_version_tag.deleted"):
        return str(data.get("key", "")).startswith(TAG_PREFIX)
    if event in ("model_version_alias.created", "model_version_alias.deleted"):
        return str(data.get("alias", "")) == alias
    return False


class MlflowWriteback:
    """Write-back through ``mlflow.MlflowClient`` (extra ``[mlflow]``)."""

    def __init__(self, tracking_uri: str, alias: str) -> None:
        """Connect lazily to the tracking server at ``tracking_uri``.

        Raises:
            MissingExtraError: mlflow is not installed.
        """
        try:
            from mlflow import MlflowClient  # noqa: PLC0415 - optional extra
        except ImportError as exc:
            raise MissingExtraError("mlflow", "MLflow write-back") from exc
        self._client = MlflowClient(tracking_uri=tracking_uri)
        self.alias = alias

    def write(self, name: str, version: str, report: Report) -> None:
        """Set the tags, and the alias if approved.

        Raises:
            VerdictError: MLflow refused a write.
        """
        try:
            for key, value in writeback_tags(report).items():
                self._client.set_model_version_tag(name, version, key, value)
            if report.verdict == "approved":
                self._client.set_registered_model_alias(name, self.alias, version)
        except Exception as exc:  # noqa: BLE001 - the MLflow client's errors enter weightguard here
            raise VerdictError(f"MLflow write-back to {name} v{version} failed: {exc}") from exc


__all__ = ["TAG_PREFIX", "MlflowWriteback", "RegistryWriteback", "is_own_event", "writeback_tags"]
