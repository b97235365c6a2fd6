"""SidecarSettings: flags over WEIGHTGUARD_* over a YAML file; bearer tokens are required unless unsafe_no_auth."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from weightguard.errors import UsageError
from weightguard.sidecar.settings import load_settings


def test_environment_lists_and_maps_are_parsed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WEIGHTGUARD_MODEL_ROOTS", f"{tmp_path}/a:{tmp_path}/b")
    monkeypatch.setenv("WEIGHTGUARD_POLICIES", '{"strict": "builtin:strict"}')
    monkeypatch.setenv("WEIGHTGUARD_WORKERS", "3")
    settings = load_settings(None)
    assert settings.model_roots == [tmp_path / "a", tmp_path / "b"]
    assert settings.policies == {"strict": "builtin:strict"} and settings.workers == 3


def test_flags_beat_environment_which_beats_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "sidecar.yaml"
    config.write_text("port: 9000\nworkers: 5\nqueue_size: 7\n")
    monkeypatch.setenv("WEIGHTGUARD_WORKERS", "4")
    settings = load_settings(config, port=9100)
    assert (settings.port, settings.workers, settings.queue_size) == (9100, 4, 7)


def test_invalid_values_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="workers"):
        load_settings(None, workers=0)
    with pytest.raises(UsageError, match="does not exist"):
        load_settings(tmp_path / "missing.yaml")


def test_a_token_is_required_unless_auth_is_disabled_by_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("WEIGHTGUARD_API_TOKEN", raising=False)
    with pytest.raises(UsageError, match="bearer token"):
        load_settings(None).tokens()
    tokens = tmp_path / "tokens"
    tokens.write_text("first\n\nsecond\n")
    assert load_settings(None, api_token="env", api_token_file=tokens).tokens() == (b"env", b"first", b"second")
    with caplog.at_level(logging.WARNING):
        assert load_settings(None, unsafe_no_auth=True).tokens() == ()
    assert "unsafe_no_auth" in caplog.text


def test_a_policy_may_be_a_list_of_layers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from weightguard.sidecar.verifier import load_policies

    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("spec:\n  severity:\n    fail_on: low\n")
    monkeypatch.setenv("WEIGHTGUARD_POLICY", "builtin:strict")  # one path stays a plain string
    assert load_settings(None).policy == "builtin:strict"
    monkeypatch.setenv("WEIGHTGUARD_POLICY", f'["builtin:strict", "{overlay}"]')
    monkeypatch.setenv("WEIGHTGUARD_POLICIES", f'{{"lenient": ["builtin:default", "{overlay}"]}}')
    monkeypatch.setenv("WEIGHTGUARD_UNSAFE_NO_AUTH", "true")
    policies = load_policies(load_settings(None))
    assert [layer.origin for layer in policies["default"].layers] == ["builtin:strict", str(overlay)]
    assert policies["default"].policy.spec.severity.fail_on.value == "low"
    assert policies["default"].policy.spec.pickle.mode == "refuse"
    assert policies["lenient"].policy.spec.pickle.mode == "analyze"
