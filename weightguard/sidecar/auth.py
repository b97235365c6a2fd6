"""Authentication of sidecar requests: bearer tokens and the webhook sources' own secrets.

Every comparison of a secret uses :func:`hmac.compare_digest` on bytes, so
the time taken does not reveal how much of a guess was right. Bearer tokens
guard the API (``/v1``, the Harbor adapter, ``/metrics``); the webhook
receivers authenticate with their source's secret instead, because neither
the Hugging Face Hub nor MLflow can send a bearer token.
Not handled here: which routes need which check (the app wires that).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from fastapi import HTTPException, Request

BEARER = "bearer "


@dataclass(frozen=True, slots=True)
class BearerAuth:
    """Accepts requests carrying ``Authorization: Bearer <one of tokens>``."""

    tokens: tuple[bytes, ...]
    disabled: bool = False

    def __call__(self, request: Request) -> None:
        """FastAPI dependency: return if the request is authorised, else raise 401."""
        if self.disabled:
            return
        header = request.headers.get("authorization", "")
        if not header.lower().startswith(BEARER):
            raise HTTPException(status_code=401, detail="missing bearer token", headers={"WWW-Authenticate": "Bearer"})
        if not self.accepts(header[len(BEARER) :].strip().encode()):
            raise HTTPException(
                status_code=401,
                detail="invalid bearer token",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )

    def accepts(self, offered: bytes) -> bool:
        """Whether ``offered`` equals one configured token (every token is compared, in constant time each)."""
        matched = False
        for token in self.tokens:
            matched |= hmac.compare_digest(offered, token)
        return matched


def secret_matches(offered: str | None, secret: str) -> bool:
    """Constant-time equality of a shared secret sent verbatim (Hugging Face ``X-Webhook-Secret``)."""
    if offered is None:
        return False
    return hmac.compare_digest(offered.encode(), secret.encode())


def mlflow_signature(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """The ``X-MLflow-Signature`` value MLflow sends: ``v1,`` + base64(HMAC-SHA256 over ``id.ts.body``).

    Mirrors ``mlflow/webhooks/delivery.py`` (``_generate_hmac_signature``), where the
    signed content is ``f"{delivery_id}.{timestamp}.{payload}"`` with the exact JSON text sent.
    """
    signed = delivery_id.encode() + b"." + timestamp.encode() + b"." + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def mlflow_signature_matches(secret: str, delivery_id: str, timestamp: str, body: bytes, offered: str) -> bool:
    """Whether ``offered`` is the right signature (one of possibly several space-separated ``v1,`` values)."""
    expected = mlflow_signature(secret, delivery_id, timestamp, body).encode()
    matched = False
    for candidate in offered.split():
        matched |= hmac.compare_digest(candidate.encode(), expected)
    return matched


__all__ = ["BearerAuth", "mlflow_signature", "mlflow_signature_matches", "secret_matches"]
