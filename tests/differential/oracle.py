"""Issue 15: the differential oracle. Does loading a file the normal way reach only allowlisted globals?

:class:`Oracle` owns one sandboxed worker process (:mod:`tests.differential._worker`) that runs the
real loaders (``pickle.load``, ``torch.load(weights_only=False)`` incl. legacy/tar, ``joblib.load``,
``np.load(allow_pickle=True)``, and the members of zip/tar/gzip/bz2/xz wrappers as the standard
library extracts them) on many files over a pipe, so 100,000 files cost one process start. Each
loader run is bounded in time (``timeout`` seconds; the worker is killed and restarted, and the
file's remaining loaders continue in the new one) and in memory (``RLIMIT_AS``).

The verdict :attr:`OracleResult.contradicts` is what an approval must never meet: a global off
weightguard's allowlist was reached, an audit event fired, a marker or scratch file was created.
A ``find_class`` call whose module name is not a dotted Python identifier (``" tiny model"``,
``"64"``: what joblib's pure-Python unpickler makes of a mangled text file) does not count as
reaching a global: its first step, ``__import__``, can only fail for such a name, unless a file of
exactly that name was planted on ``sys.path`` (which already is code execution). Every other
name, importable or not here, counts.
A crash or timeout of a loader alone is not a contradiction (it is reported in ``runs``).

Import from tests (``from tests.differential.oracle import Oracle``) or, from a benchmark, after
putting the repository root on ``sys.path``. Not handled here: scanning (the caller does that).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from weightguard.analysis.allowlist import ALLOWLIST

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("_worker.py")
LOADERS = ("pickle", "torch", "joblib", "numpy", "archive")
_START_TIMEOUT = 120.0


def _importable_name(module: str) -> bool:
    """True when ``__import__(module)`` could find a module by the normal rules (a dotted identifier)."""
    return all(part.isidentifier() for part in module.split("."))


@dataclass(frozen=True, slots=True)
class LoaderRun:
    """One real loader on one file: what it reached and how it ended."""

    loader: str
    outcome: str
    globals: tuple[tuple[str, str], ...]
    events: tuple[str, ...]
    seconds: float


@dataclass(frozen=True, slots=True)
class OracleResult:
    """Everything the real loaders did with one file."""

    path: str
    runs: tuple[LoaderRun, ...]
    marker: bool
    created: tuple[str, ...] = ()
    maxrss_kb: int = 0

    @property
    def reached(self) -> frozenset[tuple[str, str]]:
        """Every global any loader asked for."""
        return frozenset(g for run in self.runs for g in run.globals)

    @property
    def denied(self) -> frozenset[tuple[str, str]]:
        """Reached globals that are not on weightguard's allowlist."""
        return frozenset(
            g
            for g in self.reached
            if g not in ALLOWLIST and not g[0].startswith("<missing>") and _importable_name(g[0])
        )

    @property
    def events(self) -> tuple[str, ...]:
        """Audit events that fired (process, network, ctypes, code, import, writes)."""
        return tuple(f"{run.loader}: {event}" for run in self.runs for event in run.events)

    @property
    def contradicts(self) -> bool:
        """True when an approval of this file would be wrong."""
        return bool(self.denied or self.events or self.marker or self.created)

    @property
    def incomplete(self) -> tuple[str, ...]:
        """Loaders that crashed the worker or ran out of time."""
        return tuple(run.loader for run in self.runs if run.outcome.startswith(("timeout", "crashed")))

    def describe(self) -> str:
        """A one-paragraph account for assertion messages and fuzz reports."""
        lines = [f"{self.path}: contradicts={self.contradicts} marker={self.marker} created={list(self.created)}"]
        lines += [f"  denied {m}.{n}" for m, n in sorted(self.denied)]
        lines += [f"  event {e}" for e in self.events]
        lines += [f"  {run.loader}: {run.outcome} ({run.seconds:.2f}s)" for run in self.runs]
        return "\n".join(lines)

    def to_json(self) -> dict[str, object]:
        """A JSON-ready record (saved next to each contradiction)."""
        return {
            "path": self.path, "contradicts": self.contradicts, "marker": self.marker,
            "created": list(self.created), "denied": sorted(self.denied), "events": list(self.events),
            "runs": [{"loader": r.loader, "outcome": r.outcome, "globals": r.globals, "events": r.events,
                      "seconds": r.seconds} for r in self.runs],
        }  # fmt: skip


@dataclass(slots=True)
class OracleStats:
    """Counters over an oracle's life."""

    files: int = 0
    starts: int = 0
    restarts: int = 0
    timeouts: int = 0
    crashes: int = 0
    max_rss_kb: int = 0
    slow_files: list[str] = field(default_factory=list)


class Oracle:
    """A pool of one worker process that runs the real loaders on files, restarted after a crash or hang.

    Args:
        markers: Paths a payload would create (e.g. the corpus marker); any of them existing after a
            file is loaded is a contradiction. The worker's scratch ``PWNED_MARKER`` is always checked.
        timeout: Seconds one loader may spend on one file.
        memory_mb: Address space the worker may add after start-up (``RLIMIT_AS``).
        loaders: The loaders to run, a subset of :data:`LOADERS`.
    """

    def __init__(
        self,
        markers: Iterable[Path] = (),
        *,
        timeout: float = 10.0,
        memory_mb: int = 2048,
        loaders: Sequence[str] = LOADERS,
    ) -> None:
        self.markers = [str(Path(m).resolve()) for m in markers]
        self.timeout = timeout
        self.memory_mb = memory_mb
        self.skip_always = [name for name in LOADERS if name not in loaders]
        self.stats = OracleStats()
        self._scratch = Path(tempfile.mkdtemp(prefix="wg-oracle-"))
        self._proc: subprocess.Popen[bytes] | None = None
        self._buffer = b""
        self._next_id = 0

    # -- process management --------------------------------------------------------------------
    def _start(self) -> subprocess.Popen[bytes]:
        tmp = self._scratch / "tmp"
        tmp.mkdir(exist_ok=True)
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        env.update(TMPDIR=str(tmp), TEMP=str(tmp), TMP=str(tmp))
        env.pop("PYTHONSTARTUP", None)
        config = json.dumps({"markers": self.markers, "memory_mb": self.memory_mb})
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), config],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=self._scratch,
            env=env,
            start_new_session=True,
        )
        self._proc, self._buffer = proc, b""
        self.stats.starts += 1
        if self._read_line(time.monotonic() + _START_TIMEOUT) is None:
            self._kill()
            raise RuntimeError("the oracle worker did not start")
        return proc

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()
        proc.kill()
        proc.wait()

    def close(self) -> None:
        """Stop the worker and remove its scratch directory."""
        self._kill()
        shutil.rmtree(self._scratch, ignore_errors=True)

    def __enter__(self) -> Oracle:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def _read_line(self, deadline: float) -> dict[str, object] | None:
        """The next JSON line from the worker, or None on EOF or when ``deadline`` passes."""
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        fd = proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        reply: dict[str, object] = json.loads(line)
        return reply

    # -- checking ------------------------------------------------------------------------------
    def check(self, path: Path | str, loaders: Sequence[str] | None = None) -> OracleResult:
        """Run every loader (or only ``loaders``) on ``path`` and return what they reached."""
        path = str(Path(path).resolve())
        skip_always = self.skip_always if loaders is None else [n for n in LOADERS if n not in loaders]
        runs: list[LoaderRun] = []
        done: dict[str, object] = {}
        self.stats.files += 1
        started = time.monotonic()
        while not done:
            skip = [*skip_always, *(r.loader for r in runs)]
            if len(skip) >= len(LOADERS):
                break
            proc = self._proc or self._start()
            self._next_id += 1
            request = {"id": self._next_id, "path": path, "skip": skip}
            assert proc.stdin is not None
            try:
                proc.stdin.write((json.dumps(request) + "\n").encode())
                proc.stdin.flush()
            except BrokenPipeError:
                self._kill()
                continue
            done = self._collect(runs, skip)
        if time.monotonic() - started > self.timeout:
            self.stats.slow_files.append(path)
        rss = int(done.get("maxrss_kb", 0)) if done else 0  # type: ignore[call-overload]
        self.stats.max_rss_kb = max(self.stats.max_rss_kb, rss)
        created = tuple(done.get("created", ())) if done else ()  # type: ignore[arg-type]
        marker = bool(done.get("marker")) or any(os.path.lexists(m) for m in self._all_markers())
        return OracleResult(path, tuple(runs), marker, created, rss)

    def _all_markers(self) -> list[str]:
        return [*self.markers, str(self._scratch / "PWNED_MARKER")]

    def _collect(self, runs: list[LoaderRun], skip: list[str]) -> dict[str, object]:
        """Read the worker's replies for one request; on a hang or crash record it and restart."""
        pending = [name for name in LOADERS if name not in skip]
        while pending:
            reply = self._read_line(time.monotonic() + self.timeout)
            if reply is None:
                proc = self._proc
                alive = proc is not None and proc.poll() is None
                self._kill()
                if alive:
                    self.stats.timeouts += 1
                    outcome = f"timeout after {self.timeout:.0f}s"
                else:
                    self.stats.crashes += 1
                    outcome = f"crashed (exit {proc.returncode if proc else '?'})"
                self.stats.restarts += 1
                runs.append(LoaderRun(pending[0], outcome, (), (), self.timeout))
                return {}
            runs.append(
                LoaderRun(
                    str(reply["loader"]),
                    str(reply["outcome"]),
                    tuple((str(m), str(n)) for m, n in reply["globals"]),  # type: ignore[attr-defined]
                    tuple(str(e) for e in reply["events"]),  # type: ignore[attr-defined]
                    float(reply["seconds"]),  # type: ignore[arg-type]
                )
            )
            pending.remove(str(reply["loader"]))
        final = self._read_line(time.monotonic() + self.timeout)
        if final is None:
            self._kill()
            return {"marker": False}
        return final
