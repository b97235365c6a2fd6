"""The local engine: work units in a pool of processes on this machine.

Processes are forked from this one while it runs a single thread (they start
at once, with weightguard imported), else started by a fork server that
imported weightguard once, else spawned (see :func:`_context`); lazily, when
the first uncached work is found, so a run that finds everything in the cache
starts none. The policy is sent once
per worker. Units travel in small batches to amortise the inter-process
cost of tiny files. A worker that dies (a crash, the OOM killer) breaks the
pool: the units not yet answered are run again in a fresh pool, one at a
time so that a crash is charged to the unit that caused it, up to
``max_retries`` more times each, after which the unit is answered with an
error (the runner then reports its models ``incomplete``).
Not handled here: what a unit does (:mod:`.units`), caching, ordering.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool

from weightguard.catalogue.interface import CatalogueError, Execute, UnitResult, WorkUnit
from weightguard.catalogue.units import execute_unit
from weightguard.policy.load import LoadedPolicy

# Worker-process state, set once by the pool initializer.
_WORKER: tuple[Execute, LoadedPolicy] | None = None


def _init_worker(execute: Execute, loaded: LoadedPolicy, threads: int) -> None:
    global _WORKER  # noqa: PLW0603 - per-process state is what a pool initializer is for
    _WORKER = (execute, loaded)
    # Probe units run torch: left alone, every worker would start a thread per core, and OpenMP
    # threads that outnumber the cores spin against each other (several times slower in all).
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)


def _context() -> multiprocessing.context.BaseContext:
    """How workers start: a fork of this process when that is safe, else a fork server, else spawn.

    A fork starts a worker in milliseconds with weightguard already imported (a fresh
    interpreter spends about half a second of CPU importing it, which on two cores stalls the
    hashing). Forking is safe only while this process runs a single thread: a lock held by
    another thread at the fork would stay held forever in the child. Otherwise a fork server
    imports weightguard once and forks each worker from itself.
    """
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    if "forkserver" not in methods:
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["weightguard.catalogue.units"])
    return context


def _noop() -> None:
    """Makes the pool spawn a worker."""


def _run_batch(units: Sequence[WorkUnit]) -> list[UnitResult]:
    if _WORKER is None:
        raise CatalogueError("the worker pool's initializer did not run")
    execute, loaded = _WORKER
    return [execute(unit, loaded) for unit in units]


class LocalEngine:
    """Runs units in a spawn-context process pool."""

    name = "local"
    shares_local_files = True  # workers are this machine's processes

    def __init__(self, workers: int | None = None, *, max_retries: int = 2, execute: Execute = execute_unit) -> None:
        """Configure the pool; no process starts until a unit needs one.

        Args:
            workers: Worker processes (default: one per CPU).
            max_retries: How many times a unit lost with its worker is run again.
            execute: What runs one unit (tests wrap :func:`~weightguard.catalogue.units.execute_unit`).
        """
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.max_retries = max(0, max_retries)
        self._execute = execute
        self._pool: ProcessPoolExecutor | None = None
        self._starting: threading.Thread | None = None
        self._pool_policy: str | None = None

    def _fresh_pool(self, loaded: LoadedPolicy) -> ProcessPoolExecutor:
        self._shutdown()
        self._pool = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=_context(),
            initializer=_init_worker,
            initargs=(self._execute, loaded, max(1, (os.cpu_count() or 1) // self.workers)),
        )
        self._pool_policy = loaded.sha256
        return self._pool

    def start(self, loaded: LoadedPolicy) -> None:
        """Start the worker processes now, so that they are ready when the first units come."""
        self._started()
        if self._pool is not None and self._pool_policy == loaded.sha256:
            return
        if _context().get_start_method() == "fork":
            self._warm(loaded)  # forks are quick, and must happen while this is the only thread
            return
        # Starting a worker waits for the fork server's imports: a thread waits instead of the caller.
        self._starting = threading.Thread(target=self._warm, args=(loaded,), name="wg-engine-start", daemon=True)
        self._starting.start()

    def _warm(self, loaded: LoadedPolicy) -> None:
        pool = self._fresh_pool(loaded)
        for _ in range(self.workers):
            pool.submit(_noop)

    def _started(self) -> None:
        """Wait for a background start to finish, so that only one thread ever touches the pool."""
        if self._starting is not None:
            self._starting.join()
            self._starting = None

    def _batches(self, units: Sequence[WorkUnit]) -> list[list[WorkUnit]]:
        # About four batches per worker keeps every worker busy to the end; batches stay small
        # so that a crash loses little work.
        size = max(1, min(16, len(units) // (self.workers * 4)))
        return [list(units[i : i + size]) for i in range(0, len(units), size)]

    def run(self, units: Sequence[WorkUnit], loaded: LoadedPolicy) -> Iterator[UnitResult]:
        """Run ``units``; yields one result per unit, in completion order."""
        lost = yield from self._round(list(units), loaded, self._batches(units))
        # A dead worker took every unit in flight with it, and nothing says which unit killed it:
        # the lost units run again one at a time, so a crash is charged to the unit that caused it.
        for unit in lost:
            attempts = 1
            while True:
                again = yield from self._round([unit], loaded, [[unit]], attempts + 1)
                attempts += 1
                if not again:
                    break
                if attempts > self.max_retries:
                    error = f"the worker running this unit died {attempts} time(s)"
                    yield UnitResult(unit.key, unit.kind, None, error, 0.0, attempts)
                    break

    def _round(
        self, units: list[WorkUnit], loaded: LoadedPolicy, batches: list[list[WorkUnit]], attempt: int = 1
    ) -> Generator[UnitResult, None, list[WorkUnit]]:
        """Run ``batches`` in the pool; return the units lost with a dead worker."""
        if not units:
            return []
        self._started()
        pool = self._pool if self._pool is not None and self._pool_policy == loaded.sha256 else None
        pool = pool or self._fresh_pool(loaded)
        futures: dict[Future[list[UnitResult]], list[WorkUnit]] = {pool.submit(_run_batch, b): b for b in batches}
        lost: list[WorkUnit] = []
        for future in as_completed(futures):
            try:
                results = future.result()
            except BrokenProcessPool:
                lost.extend(futures[future])
                continue
            except Exception as exc:  # noqa: BLE001 - seam: a batch that cannot reach a worker fails its units only
                reason = f"internal error: the unit could not be sent to a worker: {type(exc).__name__}: {exc}"
                for unit in futures[future]:
                    yield UnitResult(unit.key, unit.kind, None, reason, 0.0, attempt)
                continue
            for r in results:
                yield UnitResult(r.key, r.kind, r.payload, r.error, r.seconds, attempt)
        if lost:
            self.close()  # the pool is unusable once a worker died
        return lost

    def close(self) -> None:
        """Stop the workers (queued units are cancelled)."""
        self._started()
        self._shutdown()

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
            self._pool_policy = None
