"""A real PostgreSQL server for the tests: a throw-away cluster on 127.0.0.1, one per test session.

``initdb`` makes a cluster in a temporary directory and ``pg_ctl`` starts it on a free port,
its unix socket in that directory too. PostgreSQL refuses to run as root, so when the tests run
as root the cluster belongs to an unprivileged account (``postgres`` where Debian's package made
one, else ``nobody``) and its commands run through ``runuser`` (or ``su``). Each test gets a
database of its own (``CREATE DATABASE``), so tests never see each other's rows.

The tests skip only when the server binaries or the psycopg driver cannot be found (run
``ci/install-services.sh`` as root on Debian, which installs ``postgresql``); any other failure
to start the server is an error, not a skip.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SUPERUSER = "weightguard"
SKIP_HINT = "run ci/install-services.sh as root on Debian"


def find_bindir() -> Path | None:
    """The directory holding initdb/pg_ctl/postgres: Debian's newest version, else one on PATH."""
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    for bindir in reversed(versions):
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return bindir
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def missing_reason() -> str | None:
    """Why a real PostgreSQL cannot be started here, or None."""
    if find_bindir() is None:
        return f"PostgreSQL server binaries (initdb, pg_ctl) are not installed; {SKIP_HINT}"
    try:
        import psycopg  # noqa: F401, PLC0415
    except ImportError:
        return "the psycopg driver is not installed (pip install 'weightguard[postgres]')"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _service_account() -> pwd.struct_passwd | None:
    """The unprivileged account to run the server as when we are root (None: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root, and neither a 'postgres' nor a 'nobody' account exists to run PostgreSQL")


@dataclass
class PostgresServer:
    """A running throw-away cluster."""

    bindir: Path
    root: Path
    port: int
    account: pwd.struct_passwd | None

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str, timeout: float = 120) -> None:
        command = [str(self.bindir / argv[0]), *argv[1:]]
        if self.account is not None:
            if shutil.which("runuser"):
                command = ["runuser", "-u", self.account.pw_name, "--", *command]
            else:
                command = ["su", "-s", "/bin/sh", self.account.pw_name, "-c", " ".join(map(_quote, command))]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=self.root, check=False)  # noqa: S603
        if result.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")

    def start(self) -> None:
        if self.account is not None:
            os.chown(self.root, self.account.pw_uid, self.account.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-sync")
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
            # A throw-away cluster: durability buys nothing here and costs the 2-core CI a lot.
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options, "-w", "start")

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=60)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def create_database(self) -> str:
        """A new, empty database; return its URL."""
        import psycopg  # noqa: PLC0415

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}".encode())  # a generated name, never user input
        return self.url(name)


def _quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\\''") + "'"


def start_server() -> PostgresServer:
    """Start a throw-away cluster (the caller stops it).

    Raises:
        RuntimeError: the server could not be started.
    """
    bindir = find_bindir()
    assert bindir is not None
    # Not pytest's tmp_path: its parents are private to root, and the server runs as another account.
    root = Path(tempfile.mkdtemp(prefix="wg-pg-"))
    server = PostgresServer(bindir, root, _free_port(), _service_account())
    try:
        server.start()
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL for the session; skips only when it is not installed."""
    reason = missing_reason()
    if reason is not None:
        pytest.skip(reason)
    server = start_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of a new, empty database on the session's PostgreSQL."""
    return postgres_server.create_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new, empty database of each kind: a SQLite file, and a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'wg.db'}"
    return str(request.getfixturevalue("postgres_url"))
