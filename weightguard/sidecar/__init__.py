"""The registry sidecar: weightguard as an HTTP service (extra ``[sidecar]``: FastAPI, uvicorn).

Layout: ``settings`` (configuration), ``auth`` (bearer tokens, webhook
secrets), ``targets`` (which targets may be read), ``verifier`` (the seam to
the pipeline), ``jobstore``/``jobs``/``executor`` (durable jobs on a bounded
worker pool), ``api`` (``/v1``), ``harbor`` (Harbor scanner adapter),
``fetch`` (pulling OCI artifacts), ``webhooks`` and ``writeback`` (Hugging
Face, MLflow), ``metrics`` (Prometheus), ``app`` (the factory).
The core package never imports this one.
"""

from __future__ import annotations

from weightguard.sidecar.app import create_app
from weightguard.sidecar.settings import SidecarSettings, load_settings
from weightguard.sidecar.verifier import Verifier

__all__ = ["SidecarSettings", "Verifier", "create_app", "load_settings"]
