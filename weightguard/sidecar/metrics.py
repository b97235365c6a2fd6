"""Prometheus metrics of one sidecar app: verifications by outcome, durations, queue depth.

Each app gets its own :class:`~prometheus_client.CollectorRegistry` (no
process-global state), so two apps in one process, as in tests, never mix
their counts.
Not handled here: serving them (the app's ``/metrics`` route).
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from weightguard.sidecar.jobs import Finished

DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)


class SidecarMetrics:
    """The sidecar's counters, histogram and gauges."""

    def __init__(self, depth: Callable[[], int], running: Callable[[], int]) -> None:
        """Create the metrics; ``depth`` and ``running`` are read at scrape time."""
        self.registry = CollectorRegistry(auto_describe=True)
        self.verifications = Counter(
            "weightguard_verifications",
            "Finished verification jobs by outcome (approved, rejected, incomplete, failed) and kind.",
            ["outcome", "kind"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "weightguard_verification_duration_seconds",
            "Wall-clock time of a verification job, from start to stored result.",
            ["kind"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.rejected_requests = Counter(
            "weightguard_queue_rejections",
            "Requests answered 429 because the queue was full.",
            registry=self.registry,
        )
        self.attachments = Counter(
            "weightguard_approval_attachments",
            "Approval attestations pushed to the registry as referrers (attached) or not (failed; the verdict stands).",
            ["outcome"],
            registry=self.registry,
        )
        queue = Gauge("weightguard_queue_depth", "Jobs waiting for a worker.", registry=self.registry)
        queue.set_function(lambda: float(depth()))
        busy = Gauge("weightguard_jobs_running", "Jobs being verified now.", registry=self.registry)
        busy.set_function(lambda: float(running()))

    def finished(self, event: Finished) -> None:
        """Count one finished job (the runner calls this once per job)."""
        self.verifications.labels(outcome=event.outcome, kind=event.job.kind).inc()
        self.duration.labels(kind=event.job.kind).observe(event.seconds)

    def attachment(self, outcome: str) -> None:
        """Count one approval attached to the registry, or one push that failed."""
        self.attachments.labels(outcome=outcome).inc()

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


__all__ = ["SidecarMetrics"]
