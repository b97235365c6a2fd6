"""Load benchmark of the sidecar: N concurrent clients against a local `weightguard serve`.

Builds a small safetensors model (fixed seed) in a temporary model root, starts
the real server in a subprocess on 127.0.0.1, submits REQUESTS verifications
from CLIENTS threads (each polls its job to completion), and prints
throughput, p50/p99 submit-to-report latency, and the ratio to calling
``weightguard.pipeline.verify`` in-process the same number of times.

    .venv/bin/python benchmarks/sidecar_load.py --requests 200 --clients 20 --workers 2

With ``--idle N`` the run holds N connections that each sent half a request head
(issue 16's slow clients) for its whole length, and ``--nofile L`` starts the
server with a descriptor limit of L (soft and hard, as a small container has);
the run then also prints how many idle connections the server cut and how many
bytes it logged.

    .venv/bin/python benchmarks/sidecar_load.py --requests 20 --clients 4 --idle 1200 --nofile 1024

With ``--replicas N`` (issue 16) it starts N sidecars on one SQLite database and
one model root instead, spreads the clients over them (each request fails over
to the next replica with the same Idempotency-Key when its replica is down),
holds ``--idle`` half-sent connections spread over the replicas for the whole
run (reopening those the servers cut), and runs a healthy phase, then with
``--kill-one`` a faulted phase in which one replica is ``kill -9``ed a third of
the way through and restarted. Every job is then audited in the jobs table and
the replicas' log of completed verifications (see ``sidecar_replicas.py``):
right verdict, done, verified once (twice only if taken over). ``--job-delay``
makes each job sleep first, so the kill catches jobs mid-run.

    .venv/bin/python benchmarks/sidecar_load.py --replicas 3 --requests 1000 --clients 32 --kill-one --idle 1000

With ``--database postgresql`` (issue 17) the replicas share a temporary PostgreSQL
started for the run (``--database postgresql://USER@HOST:PORT/DB`` uses that one);
with more than one replica a one-replica baseline runs first, and the run prints
jobs/s for 1 and N replicas and their ratio.

    .venv/bin/python benchmarks/sidecar_load.py --replicas 3 --database postgresql --requests 1000 --clients 32 --kill-one
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from safetensors.numpy import save_file

REPO = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"


def build_model(root: Path) -> Path:
    model = root / "tiny"
    model.mkdir(parents=True)
    rng = np.random.default_rng(1234)
    save_file(
        {f"layer{i}.weight": rng.standard_normal((64, 64)).astype(np.float32) for i in range(4)},
        str(model / "model.safetensors"),
    )
    (model / "config.json").write_text('{"model_type": "tiny"}')
    return model


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def one(url: str, target: str) -> float:
    started = time.perf_counter()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=url, timeout=120) as client:
        while True:
            response = client.post("/v1/verifications", json={"target": target}, headers=headers)
            if response.status_code != 429:
                break
            time.sleep(float(response.headers.get("retry-after", "1")))
        job = response.json()["id"]
        while client.get(f"/v1/verifications/{job}", headers=headers).json()["status"] not in ("done", "failed"):
            time.sleep(0.01)
    return time.perf_counter() - started


def _closed(sock: socket.socket) -> bool:
    """Whether the server closed (or answered 408 on) a held connection."""
    sock.setblocking(False)
    try:
        return sock.recv(64) is not None
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--idle", type=int, default=0, help="half-sent connections held during the run")
    parser.add_argument("--nofile", type=int, default=0, help="the server's descriptor limit (0: inherited)")
    parser.add_argument("--replicas", type=int, default=1, help="sidecars sharing one database (issue 16)")
    parser.add_argument("--kill-one", action="store_true", help="with --replicas: kill -9 one mid-run, restart it")
    parser.add_argument("--job-delay", type=float, default=0.0, help="with --replicas: seconds each job sleeps first")
    parser.add_argument(
        "--database",
        default="sqlite",
        help="with --replicas: sqlite (a temporary file), postgresql (a temporary server) or a postgresql:// URL",
    )
    args = parser.parse_args()
    if args.replicas > 1 or args.database != "sqlite":
        from sidecar_replicas import run_replicas

        with tempfile.TemporaryDirectory() as tmp:
            raise SystemExit(run_replicas(args, Path(tmp)))

    def limit() -> None:
        if args.nofile:
            resource.setrlimit(resource.RLIMIT_NOFILE, (args.nofile, args.nofile))

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "models"
        model = build_model(root)
        port = free_port()
        env = {**os.environ, "WEIGHTGUARD_API_TOKEN": TOKEN, "WEIGHTGUARD_QUEUE_SIZE": str(args.requests + 10)}
        code = "import typer\nfrom weightguard.cli.serve import register\napp=typer.Typer()\nregister(app)\n@app.callback()\ndef r() -> None: pass\napp()"
        server = subprocess.Popen(
            [
                sys.executable,
                "-c",
                code,
                "serve",
                "--port",
                str(port),
                "--model-root",
                str(root),
                "--workers",
                str(args.workers),
                "--database",
                f"sqlite:///{tmp}/bench.db",
            ],
            env=env,
            cwd=REPO,
            stdout=(log := (Path(tmp) / "server.log").open("wb")),
            stderr=subprocess.STDOUT,
            preexec_fn=limit,  # noqa: PLW1509 - only sets a resource limit
        )
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{url}/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            one(url, str(model))  # warm-up: lazy imports in the server
            idle = []
            for _ in range(args.idle):
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                idle.append(sock)
            started = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                latencies = sorted(pool.map(lambda _i: one(url, str(model)), range(args.requests)))
            wall = time.perf_counter() - started
            cut = sum(1 for sock in idle if _closed(sock))
        finally:
            server.terminate()
            server.wait(10)
            log.close()
        logged = (Path(tmp) / "server.log").stat().st_size

        from weightguard.pipeline import verify
        from weightguard.policy.load import load_builtin

        loaded = load_builtin("default")
        verify(str(model), loaded)
        started = time.perf_counter()
        for _ in range(args.requests):
            verify(str(model), loaded)
        in_process = time.perf_counter() - started

    p99 = latencies[max(0, int(0.99 * len(latencies)) - 1)]
    print(f"sidecar: {args.requests} verifications, {args.clients} clients, {args.workers} workers")
    print(f"  wall {wall:.2f} s, throughput {args.requests / wall:.1f} verifications/s")
    print(f"  latency p50 {statistics.median(latencies) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms (submit to report)")
    print(f"in-process verify x{args.requests}: {in_process:.2f} s ({args.requests / in_process:.1f}/s)")
    print(f"ratio sidecar wall / in-process: {wall / in_process:.1f}x")
    if args.idle:
        print(f"idle half-sent connections: {args.idle}, cut by the server: {cut}; server log {logged} bytes")


if __name__ == "__main__":
    main()
