"""Issue 16: idle and half-sent connections cannot starve real requests, and cannot flood the log."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from sidecar_support import Sidecar, sidecar_env

from weightguard.sidecar.server import RepeatFilter


def half_sent(port: int, count: int) -> list[socket.socket]:
    """``count`` connections that each send half a request head and then nothing."""
    opened = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        opened.append(sock)
    return opened


def test_issue_16_real_requests_are_served_while_300_half_sent_connections_exceed_the_descriptor_limit(
    tmp_path: Path, spawn: Callable[..., Sidecar]
) -> None:
    # 256 descriptors, as a small container has: 300 idle connections would take them all.
    sidecar = spawn(sidecar_env(tmp_path, [tmp_path], WG_TEST_NOFILE="256"))
    idle = half_sent(sidecar.port, 300)
    try:
        started = time.monotonic()
        answers = [httpx.get(f"{sidecar.url}/healthz", timeout=5).status_code for _ in range(4)]
        took = time.monotonic() - started
    finally:
        for sock in idle:
            sock.close()
    assert answers == [200] * 4 and took < 5
    time.sleep(0.5)
    assert sidecar.log.stat().st_size < 20_000, sidecar.log.read_text()[-2000:]  # no log flood


def test_issue_16_a_request_head_dripped_a_byte_at_a_time_is_cut_off_at_the_deadline(
    tmp_path: Path, spawn: Callable[..., Sidecar]
) -> None:
    sidecar = spawn(sidecar_env(tmp_path, [tmp_path], WEIGHTGUARD_HEADER_TIMEOUT_S="1"))
    with socket.create_connection(("127.0.0.1", sidecar.port), timeout=5) as sock:
        started = time.monotonic()
        answer = b""
        for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 100:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(0.1)  # each byte would reset an idle timer; the deadline is not reset
            sock.settimeout(0.01)
            try:
                answer = sock.recv(100)
            except TimeoutError:
                continue
            break
        took = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408") or answer == b""
    assert took < 3


def test_issue_16_a_body_slower_than_its_deadline_gets_408(tmp_path: Path, spawn: Callable[..., Sidecar]) -> None:
    sidecar = spawn(sidecar_env(tmp_path, [tmp_path], WEIGHTGUARD_BODY_TIMEOUT_S="1"))
    with socket.create_connection(("127.0.0.1", sidecar.port), timeout=5) as sock:
        sock.sendall(b"POST /v1/verifications HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{")
        answer = sock.recv(100)
    assert answer.startswith(b"HTTP/1.1 408"), answer


def test_repeated_log_records_are_written_once_per_interval_with_a_count() -> None:
    now = [0.0]
    repeat = RepeatFilter(every_s=10, clock=lambda: now[0])

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, msg, None, None)

    written = [repeat.filter(record("socket.accept() out of system resource")) for _ in range(1000)]
    assert written.count(True) == 1
    assert repeat.filter(record("another message"))
    now[0] = 11.0
    later = record("socket.accept() out of system resource")
    assert repeat.filter(later) and "999 similar" in str(later.msg)
