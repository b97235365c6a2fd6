"""The real sidecar app in a subprocess on 127.0.0.1, for the dashboard tests (see ``_server.py``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPORT_TESTS = str(HERE.parent / "report")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_sidecar(models: Path, database: str, token: str) -> Iterator[str]:
    """Start ``_server.py`` (the real app) on 127.0.0.1 and a free port; yield its base URL."""
    import httpx  # noqa: PLC0415 - the tests that call this skip without httpx

    env = {
        **os.environ,
        "WG_TEST_TOKEN": token,
        # This checkout's package first: an installed weightguard must not be the one tested.
        "PYTHONPATH": os.pathsep.join([str(HERE.parents[1]), REPORT_TESTS, os.environ.get("PYTHONPATH", "")]),
    }
    port = _free_port()
    proc = subprocess.Popen(  # noqa: S603 - our own test server
        [sys.executable, str(HERE / "_server.py"), str(models), database, str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("sidecar did not start:\n" + (proc.stdout.read().decode() if proc.stdout else ""))
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
