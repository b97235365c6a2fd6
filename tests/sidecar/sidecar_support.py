"""Fixtures for the sidecar tests: real servers in subprocesses, and OCI image layouts built on disk.

Every server is a real uvicorn process on 127.0.0.1 and a free port, started
through ``_server.py`` (see its docstring for the test-only environment
variables) and spoken to over HTTP with httpx.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
SERVER = Path(__file__).with_name("_server.py")
TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Sidecar:
    """One sidecar process."""

    env: dict[str, str]
    args: list[str]
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    _out: io.BufferedWriter | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Sidecar:
        self._out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, str(SERVER), *self.args],
            env=self.env,
            cwd=REPO,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"sidecar exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"sidecar did not become ready:\n{self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks run."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self._out is not None:
            self._out.close()

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30.0, **kwargs)  # type: ignore[arg-type]


def sidecar_env(tmp: Path, roots: list[Path], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WEIGHTGUARD_", "WG_TEST_"))}
    env.update(
        {
            "WEIGHTGUARD_API_TOKEN": TOKEN,
            "WEIGHTGUARD_MODEL_ROOTS": os.pathsep.join(str(r) for r in roots),
            "WEIGHTGUARD_DATABASE": f"sqlite:///{tmp / 'sidecar.db'}",
            "PYTHONUNBUFFERED": "1",
            # This checkout's package first: an installed weightguard must not be the one tested.
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
        }
    )
    env.update(extra)
    return env


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Sidecar]]:
    """Start sidecars (stopped at the end of the test)."""
    started: list[Sidecar] = []

    def _spawn(env: dict[str, str], args: list[str] | None = None, port: int | None = None) -> Sidecar:
        port = port or free_port()
        env = {**env, "WEIGHTGUARD_PORT": str(port)}
        sidecar = Sidecar(env, args or [], port, tmp_path / f"sidecar-{port}.log")
        started.append(sidecar)
        return sidecar.start()

    yield _spawn
    for sidecar in started:
        sidecar.stop()


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model root holding copies of the shipped approved and blocked sample models."""
    root = tmp_path_factory.mktemp("models")
    for name in ("approved", "blocked"):
        shutil.copytree(REPO / "sample_models" / name, root / name)
    return root


@pytest.fixture(scope="session")
def oci_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("oci")


@pytest.fixture(scope="session")
def real_server(tmp_path_factory: pytest.TempPathFactory, models: Path, oci_root: Path) -> Iterator[Sidecar]:
    """The real `weightguard serve` (real pipeline), shared by the tests of a session."""
    tmp = tmp_path_factory.mktemp("real-server")
    port = free_port()
    env = sidecar_env(tmp, [models], WEIGHTGUARD_OCI_LAYOUT_ROOT=str(oci_root), WEIGHTGUARD_QUEUE_SIZE="512")
    args = ["--port", str(port), "--model-root", str(models), "--workers", "2"]
    sidecar = Sidecar(env, args, port, tmp / "server.log").start()
    yield sidecar
    sidecar.stop()


def wait_done(client: httpx.Client, job_id: str, timeout: float = 30.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get(f"/v1/verifications/{job_id}", headers=AUTH)
        assert response.status_code == 200, response.text
        body = response.json()
        if body["status"] in ("done", "failed"):
            return body  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


# --- OCI image layouts -------------------------------------------------------------------------


def _blob(layout: Path, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    path = layout / "blobs" / "sha256" / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def tar_layer(members: list[tarfile.TarInfo | tuple[str, bytes]], *, gzipped: bool = True) -> bytes:
    """A layer from (name, bytes) files and raw TarInfo entries (links, whiteouts, hostile names)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                archive.addfile(member)
                continue
            name, data = member
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o755, 0
            archive.addfile(info, io.BytesIO(data))
    raw = buffer.getvalue()
    return gzip.compress(raw, mtime=0) if gzipped else raw


def build_oci_layout(
    root: Path, repository: str, layers: list[bytes | tuple[str, bytes]], *, media_type: str | None = None
) -> str:
    """Write an OCI image layout for ``repository`` under ``root``; return the manifest digest.

    A layer is its bytes (of ``media_type``, default tar+gzip) or a (media type, bytes) pair.
    """
    layout = root / repository
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    config = _blob(layout, json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}}).encode())
    kind = media_type or "application/vnd.oci.image.layer.v1.tar+gzip"
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
        "layers": [
            {"mediaType": layer[0], **_blob(layout, layer[1])}
            if isinstance(layer, tuple)
            else {"mediaType": kind, **_blob(layout, layer)}
            for layer in layers
        ],
    }
    descriptor = _blob(layout, json.dumps(manifest).encode())
    index_path = layout / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {"schemaVersion": 2, "manifests": []}
    index["manifests"].append({"mediaType": "application/vnd.oci.image.manifest.v1+json", **descriptor})
    index_path.write_text(json.dumps(index))
    return str(descriptor["digest"])


def model_layer(model: Path, prefix: str = "models/") -> bytes:
    """A gzip layer holding every file of ``model`` under ``prefix``."""
    return tar_layer([(prefix + p.name, p.read_bytes()) for p in sorted(model.iterdir()) if p.is_file()])
