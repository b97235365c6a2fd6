"""Promotion and sidecar write-back against a REAL MLflow tracking server on 127.0.0.1 (SQLite backend)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

mlflow = pytest.importorskip("mlflow", reason="mlflow is not installed (pip install 'weightguard[mlflow]' and mlflow)")

from weightguard.verdict.mlflow_writeback import MlflowTarget, write_promotion  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    exe = Path(sys.executable).with_name("mlflow")
    if not exe.exists():
        pytest.skip("the mlflow server command is not installed")
    root = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    proc = subprocess.Popen(
        [
            str(exe),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{root}/mlflow.db",
            "--default-artifact-root",
            str(root / "artifacts"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # the server's workers are its children: stop the whole group
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as answer:  # noqa: S310 - local test server
                    if answer.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("the MLflow server did not start")
                time.sleep(0.5)
        yield uri
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:  # a loaded machine: no clean stop in time is not the test's subject
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        shutil.rmtree(root, ignore_errors=True)


def _model_version(uri: str, name: str, tmp: Path) -> str:
    client = mlflow.MlflowClient(tracking_uri=uri)
    client.create_registered_model(name)
    # A remote source URI: the registry records it without reading it (the model bytes live elsewhere).
    return str(client.create_model_version(name, source=f"s3://weightguard-test/models/{name}").version)


def test_a_promotion_sets_the_stage_alias_and_weightguard_tags(tracking_uri: str, tmp_path: Path) -> None:
    version = _model_version(tracking_uri, "tiny-bert", tmp_path)
    write_promotion(
        MlflowTarget(tracking_uri, "tiny-bert", version),
        stage="staging",
        digest="ab" * 32,
        attestation_sha256="cd" * 32,
    )
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    mv = client.get_model_version("tiny-bert", version)
    assert mv.tags["weightguard.stage"] == "staging"
    assert mv.tags["weightguard.attestation"] == "cd" * 32
    assert client.get_model_version_by_alias("tiny-bert", "staging").version == version


def test_the_sidecar_writeback_tags_a_verdict(tracking_uri: str, tmp_path: Path) -> None:
    from weightguard.policy.load import load_builtin
    from weightguard.report.build import build_report
    from weightguard.sidecar.writeback import MlflowWriteback

    version = _model_version(tracking_uri, "tiny-gpt", tmp_path)
    report = build_report(
        command="verify",
        targets=["m"],
        loaded=load_builtin("default"),
        scans=[],
        extra_findings=[],
        version="test",
        now=dt.datetime.now(dt.UTC),
    )
    MlflowWriteback(tracking_uri, "weightguard-approved").write("tiny-gpt", version, report)
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    tags = client.get_model_version("tiny-gpt", version).tags
    assert any(k.startswith("weightguard") for k in tags)
    assert client.get_model_version_by_alias("tiny-gpt", "weightguard-approved").version == version
