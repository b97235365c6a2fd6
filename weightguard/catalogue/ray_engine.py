"""The Ray engine: the same work units as Ray tasks on an existing cluster (extra ``[cluster]``).

``RayEngine(address)`` connects with ``ray.init(address=...)`` (unless the
process is already connected) and submits one task per unit. File units ask
for one CPU; a model unit asks for one GPU as well only when the policy runs
the probe suite, so CPU nodes hash and analyse while GPU nodes probe. A task
whose worker dies (a crash, a lost node) is re-run by Ray, at most
``max_retries`` times; only the lost tasks run again. An exception raised
inside a unit is not retried (it would fail the same way), and units never
raise anyway (:func:`~weightguard.catalogue.units.execute_unit`).
Not handled here: starting or sizing the cluster, shipping model files to
it (nodes must see the catalogue's paths, e.g. on a shared file system).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from weightguard.catalogue.interface import CatalogueError, Execute, UnitResult, WorkUnit
from weightguard.catalogue.units import execute_unit
from weightguard.errors import MissingExtraError
from weightguard.policy.load import LoadedPolicy

# Enough tasks in flight to fill a large cluster, few enough that their arguments
# (a model unit carries its files' scans) never crowd the object store.
MAX_IN_FLIGHT = 1024


def _execute_task(execute: Execute, unit: WorkUnit, loaded: LoadedPolicy) -> UnitResult:
    return execute(unit, loaded)


def task_options(unit: WorkUnit, *, max_retries: int, gpus_per_probe_unit: float = 1.0) -> dict[str, Any]:
    """The Ray resources and retry policy of ``unit``'s task (GPUs only for probe units)."""
    return {
        "num_cpus": 1,
        "num_gpus": gpus_per_probe_unit if unit.gpus else 0,
        "max_retries": max_retries,
        "retry_exceptions": False,
    }


class RayEngine:
    """Runs units as Ray tasks."""

    name = "ray"
    # Nodes need not see this machine's temporary folders (where oci:// targets are pulled):
    # such targets are refused model by model rather than judged from files a node cannot read.
    shares_local_files = False

    def __init__(
        self,
        address: str | None = None,
        *,
        max_retries: int = 2,
        execute: Execute = execute_unit,
        gpus_per_probe_unit: float = 1.0,
        init_options: Mapping[str, Any] | None = None,
    ) -> None:
        """Connect to the cluster at ``address`` (``auto``, ``ray://host:10001``; None: Ray's default).

        Raises:
            MissingExtraError: ray is not installed (extra ``[cluster]``).
            CatalogueError: the cluster cannot be reached.
        """
        try:
            import ray  # noqa: PLC0415 - optional extra, imported only for --engine ray
        except ImportError as exc:
            raise MissingExtraError("cluster", "--engine ray") from exc
        self._ray = ray
        self.max_retries = max(0, max_retries)
        self._execute = execute
        self._gpus = gpus_per_probe_unit
        self._owns_connection = not ray.is_initialized()
        if self._owns_connection:
            try:
                ray.init(address=address, **dict(init_options or {"include_dashboard": False}))
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise CatalogueError(
                    f"cannot connect to the Ray cluster at {address or 'the default address'}: {exc}",
                    hint="start one with `ray start --head` or pass --ray-address",
                ) from exc
        self._remote = ray.remote(_execute_task)

    def start(self, loaded: LoadedPolicy) -> None:
        """Nothing to do: the cluster's workers are already running."""

    def run(self, units: Sequence[WorkUnit], loaded: LoadedPolicy) -> Iterator[UnitResult]:
        """Submit ``units`` and yield their results as they complete."""
        ray = self._ray
        policy_ref = ray.put(loaded)  # sent to the object store once, not once per task
        queue = list(reversed(units))
        in_flight: dict[Any, WorkUnit] = {}
        while queue or in_flight:
            while queue and len(in_flight) < MAX_IN_FLIGHT:
                unit = queue.pop()
                options = task_options(unit, max_retries=self.max_retries, gpus_per_probe_unit=self._gpus)
                in_flight[self._remote.options(**options).remote(self._execute, unit, policy_ref)] = unit
            ready, rest = ray.wait(list(in_flight), num_returns=1)
            if rest:  # take every other finished task too, without waiting
                ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
            for ref in ready:
                unit = in_flight.pop(ref)
                try:
                    yield ray.get(ref)
                except ray.exceptions.RayError as exc:
                    # Retries exhausted (the worker kept dying) or the task could not be scheduled.
                    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    yield UnitResult(
                        unit.key, unit.kind, None, f"{type(exc).__name__}: {reason}", 0.0, self.max_retries + 1
                    )

    def close(self) -> None:
        """Disconnect if this engine connected; a connection made by the caller is left to it."""
        if self._owns_connection and self._ray.is_initialized():
            self._ray.shutdown()
