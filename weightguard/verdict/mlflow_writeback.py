"""Write a promotion back to an MLflow Model Registry (optional extra ``[mlflow]``).

After ``weightguard promote``, the registered model version gets the tags
``weightguard.verdict``, ``weightguard.attestation`` and ``weightguard.stage``,
and the stage name as its alias, so MLflow users and deployment tooling see
where the model stands. The MLflow client's exceptions enter weightguard here.
"""

from __future__ import annotations

from dataclasses import dataclass

from weightguard.errors import MissingExtraError, VerdictError


@dataclass(frozen=True, slots=True)
class MlflowTarget:
    """Which registered model version mirrors the promoted digest."""

    tracking_uri: str
    name: str
    version: str


def write_promotion(target: MlflowTarget, *, stage: str, digest: str, attestation_sha256: str) -> None:
    """Set the tags and the stage alias on the model version.

    Raises:
        MissingExtraError: mlflow is not installed.
        VerdictError: the registry refused a write.
    """
    try:
        from mlflow import MlflowClient  # noqa: PLC0415 - optional extra
    except ImportError as exc:
        raise MissingExtraError("mlflow", "MLflow write-back") from exc
    client = MlflowClient(tracking_uri=target.tracking_uri)
    tags = {
        "weightguard.verdict": "approved",
        "weightguard.attestation": attestation_sha256,
        "weightguard.stage": stage,
        "weightguard.digest": digest,
    }
    try:
        for key, value in tags.items():
            client.set_model_version_tag(target.name, target.version, key, value)
        client.set_registered_model_alias(target.name, stage, target.version)
    except Exception as exc:  # noqa: BLE001 - the MLflow client's errors enter weightguard here
        raise VerdictError(f"MLflow write-back to {target.name} v{target.version} failed: {exc}") from exc
