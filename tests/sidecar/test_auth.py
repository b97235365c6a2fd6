"""Bearer tokens and webhook secrets: constant-time comparisons, and MLflow's exact signature format."""

from __future__ import annotations

import base64
import hashlib
import hmac

from weightguard.sidecar.auth import BearerAuth, mlflow_signature, mlflow_signature_matches, secret_matches


def test_mlflow_signature_is_v1_base64_hmac_sha256_over_id_timestamp_body() -> None:
    # Independent re-statement of mlflow/webhooks/delivery.py::_generate_hmac_signature.
    body = '{"entity": "model_version", "action": "created"}'
    expected = base64.b64encode(
        hmac.new(b"s3cret", f"d-1.1700000000.{body}".encode(), hashlib.sha256).digest()
    ).decode()
    assert mlflow_signature("s3cret", "d-1", "1700000000", body.encode()) == f"v1,{expected}"


def test_mlflow_signature_check_rejects_any_change() -> None:
    good = mlflow_signature("k", "id", "1", b"{}")
    assert mlflow_signature_matches("k", "id", "1", b"{}", good)
    assert mlflow_signature_matches("k", "id", "1", b"{}", f"v1,AAAA {good}")  # rotated secrets: any listed value
    assert not mlflow_signature_matches("k", "id", "1", b"{ }", good)
    assert not mlflow_signature_matches("k", "id", "2", b"{}", good)
    assert not mlflow_signature_matches("other", "id", "1", b"{}", good)


def test_secrets_and_tokens_compare_exactly() -> None:
    assert secret_matches("abc", "abc") and not secret_matches("abd", "abc") and not secret_matches(None, "abc")
    auth = BearerAuth((b"one", b"two"))
    assert auth.accepts(b"two") and not auth.accepts(b"tw") and not auth.accepts(b"")
