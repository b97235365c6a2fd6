"""Issue 16: several sidecars on one database, one of them ``kill -9``ed mid-run, under idle-connection load.

Used by ``benchmarks/sidecar_load.py --replicas N`` (see its docstring). Each
replica is the sidecar test launcher (``tests/sidecar/_server.py`` with
``WG_TEST_VERIFIER=fake`` and no delay): the real pipeline under the built-in
policies, which also appends the folder it really read to a shared log once per
*completed* verification. Every request gets its own model folder (a copy of
``sample_models/approved`` or ``sample_models/blocked``), so that log counts how
often each job's verification ran. After the run the jobs table is read back:
every accepted job must be ``done`` with the expected verdict, ran once (twice
at most, and only if its first owner was killed), and no job may be missing.

Issue 17: ``--database`` picks the shared database: ``sqlite`` (a temporary file, the
default), ``postgresql`` (a temporary PostgreSQL cluster started for the run with the
test suite's launcher, ``tests/postgres_support.py``) or a ``postgresql://`` URL. With
more than one replica the run first measures one replica alone on a fresh database
(the baseline), then the N replicas, and prints jobs/s for both and their ratio.
"""

from __future__ import annotations

import os
import random
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from weightguard.verdict.database import Database

REPO = Path(__file__).resolve().parents[1]
LAUNCHER = REPO / "tests" / "sidecar" / "_server.py"
TOKEN = "bench-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
EXPECTED = {"approved": "approved", "blocked": "rejected"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Replica:
    env: dict[str, str]
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, str(LAUNCHER)], env=self.env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"replica on {self.port} did not start:\n{self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@dataclass
class IdleHolder:
    """Holds ``count`` connections that each sent half a request head, reopening those the servers cut."""

    ports: list[int]
    count: int
    opened: int = 0
    cut: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._hold, daemon=True)
        self._thread.start()

    def _open(self, sel: selectors.BaseSelector, index: int) -> None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.ports[index % len(self.ports)]), timeout=5)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            sock.setblocking(False)
            sel.register(sock, selectors.EVENT_READ, index)
            self.opened += 1
        except OSError:
            pass  # a killed replica: retried on the next sweep

    def _hold(self) -> None:
        sel = selectors.DefaultSelector()
        for index in range(self.count):
            self._open(sel, index)
        while not self._stop.is_set():
            for key, _ in sel.select(timeout=0.5):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                sel.unregister(sock)
                sock.close()
                self.cut += 1
            missing = set(range(self.count)) - {k.data for k in sel.get_map().values()}
            for index in missing:
                self._open(sel, index)
        for key in list(sel.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        sel.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)


@dataclass
class Phase:
    name: str
    latencies: list[float]
    wall: float
    jobs: dict[str, str]  # job id -> model folder
    failovers: int


def _one(replicas: list[Replica], start: int, target: str, counter: list[int]) -> tuple[str, float]:
    """Submit ``target`` (with an Idempotency-Key) and poll it done, failing over to the next replica on errors."""
    key = uuid.uuid4().hex
    began = time.perf_counter()
    index = start
    job = None
    while True:
        replica = replicas[index % len(replicas)]
        try:
            with httpx.Client(base_url=replica.url, timeout=30) as client:
                while job is None:
                    response = client.post(
                        "/v1/verifications", json={"target": target}, headers={**HEADERS, "Idempotency-Key": key}
                    )
                    if response.status_code in (429, 503):
                        time.sleep(float(response.headers.get("retry-after", "1")))
                        continue
                    if response.status_code != 202:
                        raise SystemExit(f"submit answered {response.status_code}: {response.text}")
                    job = str(response.json()["id"])
                while True:
                    status = client.get(f"/v1/verifications/{job}", headers=HEADERS)
                    if status.status_code == 200 and status.json()["status"] in ("done", "failed"):
                        return job, time.perf_counter() - began
                    time.sleep(0.02)
        except httpx.TransportError:
            counter[0] += 1
            index += 1  # that replica is down: the same key on another one finds (or makes) the same job
            time.sleep(0.1)


def _phase(name: str, replicas: list[Replica], folders: list[Path], clients: int, kill: Replica | None) -> Phase:
    counter = [0]
    done = [0]
    lock = threading.Lock()

    def run(i: int) -> tuple[str, float]:
        result = _one(replicas, i, str(folders[i]), counter)
        with lock:
            done[0] += 1
        return result

    killer = None
    if kill is not None:

        def fault() -> None:
            while done[0] < len(folders) // 3:
                time.sleep(0.05)
            kill.kill()  # mid-run: its running and queued jobs are left in the database
            time.sleep(2.0)
            kill.start()

        killer = threading.Thread(target=fault, daemon=True)
        killer.start()
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(run, range(len(folders))))
    wall = time.perf_counter() - started
    if killer is not None:
        killer.join(60)
    return Phase(
        name, sorted(r[1] for r in results), wall, {r[0]: str(folders[i]) for i, r in enumerate(results)}, counter[0]
    )


def _audit(url: str, phase: Phase, verified_log: Path) -> list[str]:
    """Problems with the phase's jobs, read back from the jobs table and the verification log."""
    problems: list[str] = []
    runs: dict[str, int] = {}
    for line in verified_log.read_text().splitlines():
        runs[line] = runs.get(line, 0) + 1
    conn = Database(url)
    try:
        for job_id, folder in phase.jobs.items():
            row = conn.execute("SELECT status, attempts, report FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                problems.append(f"{job_id}: lost (no row)")
                continue
            status, attempts, report = row
            expected = EXPECTED[Path(folder).name.split("-")[0]]
            if status != "done" or report is None:
                problems.append(f"{job_id}: {status}")
                continue
            verdict = httpx.Response(200, content=report).json()["verdict"]
            if verdict != expected:
                problems.append(f"{job_id}: verdict {verdict}, expected {expected}")
            ran = runs.get(os.path.realpath(folder), 0)
            if ran < 1 or ran > attempts or attempts > 2:
                problems.append(f"{job_id}: verified {ran} time(s) in {attempts} attempt(s)")
        marks = ",".join("?" * len(phase.jobs))
        count = conn.execute(f"SELECT COUNT(*) FROM jobs WHERE id IN ({marks})", list(phase.jobs)).fetchone()[0]  # noqa: S608
    finally:
        conn.close()
    mine = {os.path.realpath(f) for f in phase.jobs.values()}
    stray = {r for r in runs if f"-{phase.name}-" in Path(r).name} - mine
    if stray:
        problems.append(f"{len(stray)} folder(s) verified that no accepted job named")
    phase_jobs = len(phase.jobs)
    if phase_jobs != len(set(phase.jobs.values())):
        problems.append("two requests were answered with one job")
    return problems + ([] if count >= phase_jobs else [f"jobs table holds {count} < {phase_jobs} jobs"])


def _report(phase: Phase, url: str) -> float:
    lat = phase.latencies
    p99 = lat[max(0, int(0.99 * len(lat)) - 1)]
    conn = Database(url)
    ids = list(phase.jobs)
    retried = sum(
        conn.execute(
            f"SELECT COUNT(*) FROM jobs WHERE attempts > 1 AND id IN ({','.join('?' * len(ids))})", ids
        ).fetchone()  # noqa: S608
    )
    owners = conn.execute(
        f"SELECT owner, COUNT(*) FROM jobs WHERE id IN ({','.join('?' * len(ids))}) GROUP BY owner ORDER BY owner",  # noqa: S608
        ids,
    ).fetchall()
    conn.close()
    print(
        f"{phase.name}: {len(lat)} jobs in {phase.wall:.1f} s = {len(lat) / phase.wall:.1f} jobs/s;"
        f" latency p50 {statistics.median(lat) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms;"
        f" client fail-overs {phase.failovers}; jobs taken over (attempts > 1) {retried}"
    )
    print(
        "  jobs finished per sidecar process (owner pid): "
        + ", ".join(f"{str(o).split(':')[1]}={n}" for o, n in owners)
    )
    return len(lat) / phase.wall


@contextmanager
def shared_database(spec: str, tmp: Path) -> Iterator[Callable[[str], str]]:
    """Yield a function that gives a fresh database URL per name, for ``--database`` SPEC."""
    if spec == "sqlite":
        yield lambda name: f"sqlite:///{tmp / f'{name}.db'}"
        return
    if spec.startswith(("postgresql://", "postgres://")):
        yield lambda _name: spec  # one database: the audits select this run's jobs by id
        return
    if spec != "postgresql":
        raise SystemExit(f"--database: sqlite, postgresql or a postgresql:// URL, not {spec!r}")
    sys.path.insert(0, str(REPO / "tests"))
    from postgres_support import missing_reason, start_server  # noqa: PLC0415 - the test suite's launcher

    reason = missing_reason()
    if reason is not None:
        raise SystemExit(f"cannot start a temporary PostgreSQL: {reason}")
    server = start_server()
    try:
        yield lambda _name: server.create_database()
    finally:
        server.stop()


def run_replicas(args: object, tmp: Path) -> int:
    """With N > 1 replicas, a one-replica baseline first; then the N-replica phases; return the exit status."""
    replicas_n: int = args.replicas  # type: ignore[attr-defined]
    fleets = [(1, [("single", False)])] if replicas_n > 1 else []
    fleets.append((replicas_n, [("healthy", False)] + ([("faulted", True)] if args.kill_one else [])))  # type: ignore[attr-defined]
    status = 0
    rates: dict[int, float] = {}
    with shared_database(args.database, tmp) as fresh:  # type: ignore[attr-defined]
        for count, phases in fleets:
            url = fresh(f"fleet-{count}")
            fleet_status, rate = _run_fleet(args, tmp, count, phases, url)
            status = status or fleet_status
            rates[count] = rate
    if len(rates) > 1:
        print(
            f"jobs/s: 1 replica {rates[1]:.1f}, {replicas_n} replicas {rates[replicas_n]:.1f};"
            f" ratio {replicas_n} / 1 = {rates[replicas_n] / rates[1]:.2f}x"
        )
    return status


def _run_fleet(args: object, tmp: Path, replicas_n: int, phases: list[tuple[str, bool]], url: str) -> tuple[int, float]:
    """Run ``phases`` on ``replicas_n`` sidecars sharing ``url``; return the exit status and the first phase's jobs/s."""
    requests: int = args.requests  # type: ignore[attr-defined]
    root = tmp / "models"
    rng = random.Random(16 + replicas_n)
    folders: dict[str, list[Path]] = {}
    for name, _ in phases:
        folders[name] = []
        for i in range(requests):
            kind = "approved" if rng.random() < 0.5 else "blocked"
            folder = root / f"{kind}-{name}-{i}"
            shutil.copytree(REPO / "sample_models" / kind, folder)
            folders[name].append(folder)
    verified_log = tmp / f"verified-{replicas_n}.log"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("WEIGHTGUARD_", "WG_TEST_"))}
    base.update(
        {
            "WEIGHTGUARD_API_TOKEN": TOKEN,
            "WEIGHTGUARD_MODEL_ROOTS": str(root),
            "WEIGHTGUARD_DATABASE": url,
            "WEIGHTGUARD_WORKERS": str(args.workers),  # type: ignore[attr-defined]
            "WEIGHTGUARD_QUEUE_SIZE": str(requests + 10),
            "WEIGHTGUARD_JOB_LEASE_S": "6",
            "WG_TEST_VERIFIER": "fake",
            "WG_TEST_LOG": str(verified_log),
            "WG_TEST_DELAY": str(args.job_delay),  # type: ignore[attr-defined]
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
            "PYTHONUNBUFFERED": "1",
        }
    )
    replicas = []
    for _ in range(replicas_n):
        port = free_port()
        replicas.append(Replica({**base, "WEIGHTGUARD_PORT": str(port)}, port, tmp / f"replica-{port}.log"))
    status = 0
    rate = 0.0
    holder = IdleHolder([r.port for r in replicas], args.idle)  # type: ignore[attr-defined]
    try:
        for replica in replicas:
            replica.start()
        holder.start()
        print(
            f"{replicas_n} sidecar(s) on one {url.partition(':')[0]} database, {requests} requests per phase from"
            f" {args.clients} clients, {args.workers} workers each, {args.idle} idle half-sent connections"  # type: ignore[attr-defined]
        )
        for name, faulted in phases:
            phase = _phase(name, replicas, folders[name], args.clients, replicas[-1] if faulted else None)  # type: ignore[attr-defined]
            phase_rate = _report(phase, url)
            rate = rate or phase_rate
            problems = _audit(url, phase, verified_log)
            for problem in problems[:20]:
                print(f"  PROBLEM {problem}")
            print(f"  audit: {len(phase.jobs)} jobs, {len(problems)} problem(s)")
            status = status or (1 if problems else 0)
        print(f"idle connections: {holder.opened} opened, {holder.cut} cut by the servers (header deadline)")
        crashed = [r.port for r in replicas if r.proc is not None and r.proc.poll() is not None]
        if crashed:
            print(f"  PROBLEM replicas exited: {crashed}")
            status = 1
    finally:
        holder.stop()
        for replica in replicas:
            replica.stop()
    return status, rate


__all__ = ["run_replicas"]
