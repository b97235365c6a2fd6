"""The sidecar's configuration: one typed record read from flags, ``WEIGHTGUARD_*`` variables or a file.

Every field can be set through the environment (``WEIGHTGUARD_PORT=8080``,
``WEIGHTGUARD_MODEL_ROOTS=/models:/mnt/models``, ``WEIGHTGUARD_POLICIES='{"strict": "builtin:strict"}'``)
or a YAML file (:func:`load_settings`); explicit values passed in code (the
``serve`` flags) win over the environment, which wins over the file. The
shape follows the Harbor Trivy adapter's all-in-env convention.
Not handled here: validating that the paths exist (the app does that at start).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from weightguard.errors import UsageError

_log = logging.getLogger(__name__)


class SidecarSettings(BaseSettings):
    """Everything ``weightguard serve`` can be told."""

    model_config = SettingsConfigDict(env_prefix="WEIGHTGUARD_", extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    policy: str | list[str] = Field(
        default="builtin:default", description="default policy: a YAML path or builtin:NAME, or a list of layers"
    )
    policies: dict[str, str | list[str]] = Field(
        default_factory=dict,
        description="named policies a request may choose: name -> YAML path or builtin:NAME, or a list of layers",
    )
    model_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list, description="local targets must resolve inside one of these directories"
    )
    database: str | None = Field(
        default=None,
        description="jobs, rollout record and results cache URL: sqlite:///PATH or postgresql://USER@HOST:PORT/DB"
        " (shared by replicas; default: the policy's, else the user's state directory)",
    )
    api_token: SecretStr | None = None
    api_token_file: Path | None = Field(default=None, description="file with one accepted bearer token per line")
    unsafe_no_auth: bool = Field(default=False, description="INSECURE: serve the API without bearer tokens")
    huggingface_secret: SecretStr | None = Field(default=None, description="X-Webhook-Secret of the Hub webhook")
    huggingface_policy: str = "default"
    mlflow_secret: SecretStr | None = Field(default=None, description="HMAC secret of the MLflow webhook")
    mlflow_policy: str = "default"
    mlflow_tracking_uri: str | None = Field(default=None, description="enables tag/alias write-back when set")
    mlflow_alias: str = Field(default="weightguard-approved", description="alias set on approved versions")
    mlflow_max_skew_s: Annotated[int, Field(ge=1)] = 300
    oci_layout_root: Path | None = Field(
        default=None, description="Harbor adapter: directory of OCI image layouts, one per repository"
    )
    oci_model_subdir: str = Field(default="", description="Harbor adapter: verify only this folder of the image")
    oci_pull_from_registry: bool = Field(
        default=False, description="Harbor adapter: pull from the registry named in the scan request (issue 17)"
    )
    oci_insecure_registries: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Harbor adapter: registries (host:port) that may be pulled over plain HTTP"
    )
    oci_ca_bundle: Path | None = Field(default=None, description="Harbor adapter: CA bundle for registry TLS")
    attach_approvals: bool = Field(
        default=False,
        description="Harbor adapter: push a signed approval attestation as an OCI referrer of each approved model"
        " pulled from the registry (needs oci_pull_from_registry and attestation_key)",
    )
    attestation_key: Path | None = Field(default=None, description="PEM private key signing attached approvals")
    registry_auth_file: Path | None = Field(
        default=None,
        description="Docker-style config.json with push credentials for attach_approvals (default: the scan's own)",
    )
    oci_max_bytes: Annotated[int, Field(ge=1)] = 8 * 1024**3
    oci_max_members: Annotated[int, Field(ge=1)] = 100_000
    workers: Annotated[int, Field(ge=1, le=64)] = 2
    queue_size: Annotated[int, Field(ge=1, le=100_000)] = 64
    max_request_bytes: Annotated[int, Field(ge=256)] = 1024 * 1024
    job_timeout_s: Annotated[float, Field(gt=0)] = 900.0
    job_lease_s: Annotated[float, Field(ge=3)] = Field(
        default=30.0, description="a job whose owner has not renewed it for this long is taken over by another sidecar"
    )
    retry_after_s: Annotated[int, Field(ge=1)] = 5
    log_level: str = "info"
    # Slow and idle clients (see weightguard.sidecar.server).
    header_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    body_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    keep_alive_s: Annotated[float, Field(gt=0)] = 5.0
    header_max_bytes: Annotated[int, Field(ge=1024)] = 16 * 1024
    max_connections: Annotated[int | None, Field(ge=1)] = Field(
        default=None, description="open connections at most (default: the descriptor limit less a reserve)"
    )

    @field_validator("model_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: object) -> object:
        # The environment gives one string: accept os.pathsep- or comma-separated lists.
        if isinstance(value, str):
            parts = value.replace(",", os.pathsep).split(os.pathsep)
            return [p for p in (s.strip() for s in parts) if p]
        return value

    @field_validator("oci_insecure_registries", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        # The environment gives one string: a comma-separated list of host[:port].
        if isinstance(value, str):
            return [p for p in (s.strip() for s in value.split(",")) if p]
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags, then the environment, then the YAML file (when :func:`load_settings` names one)."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if settings_cls.model_config.get("yaml_file"):
            sources.append(YamlConfigSettingsSource(settings_cls))
        return tuple(sources)

    def tokens(self) -> tuple[bytes, ...]:
        """Every accepted bearer token, as bytes for a constant-time compare.

        Raises:
            UsageError: the token file cannot be read, or no token is configured while auth is on.
        """
        found: list[bytes] = []
        if self.api_token is not None and self.api_token.get_secret_value():
            found.append(self.api_token.get_secret_value().encode())
        if self.api_token_file is not None:
            try:
                text = self.api_token_file.read_text(encoding="utf-8")
            except OSError as exc:
                raise UsageError(
                    f"cannot read the API token file {self.api_token_file}: {exc.strerror or exc}"
                ) from exc
            found.extend(line.strip().encode() for line in text.splitlines() if line.strip())
        if not found and not self.unsafe_no_auth:
            raise UsageError(
                "the sidecar needs a bearer token",
                hint="set WEIGHTGUARD_API_TOKEN or WEIGHTGUARD_API_TOKEN_FILE (or, insecurely, WEIGHTGUARD_UNSAFE_NO_AUTH=1)",
            )
        if self.unsafe_no_auth:
            _log.warning("weightguard sidecar: unsafe_no_auth is set; the API accepts unauthenticated requests")
        return tuple(found)


def load_settings(config_file: Path | None = None, **explicit: Any) -> SidecarSettings:  # noqa: ANN401 - flags
    """Build settings from ``explicit`` values (flags), the environment and an optional YAML file.

    Raises:
        UsageError: the values do not validate.
    """
    from pydantic import ValidationError  # noqa: PLC0415 - only needed on this path

    given = {k: v for k, v in explicit.items() if v is not None}
    cls: type[SidecarSettings] = SidecarSettings
    if config_file is not None:
        if not config_file.is_file():
            raise UsageError(f"sidecar config file {config_file} does not exist")
        config = SettingsConfigDict(**{**SidecarSettings.model_config, "yaml_file": config_file})
        cls = type("FileSidecarSettings", (SidecarSettings,), {"model_config": config})
    try:
        return cls(**given)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise UsageError(f"invalid sidecar settings: {problems}") from exc


__all__ = ["SidecarSettings", "load_settings"]
