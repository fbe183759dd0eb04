"""A Prometheus collector for a ``final`` queue: ``metrics()`` as a scrape.

Needs the ``prometheus`` extra (``pip install 'jobqueue[prometheus]'``, which
brings ``prometheus_client``)::

    from prometheus_client import REGISTRY, start_http_server
    from jobqueue.final.prometheus import JobQueueCollector

    REGISTRY.register(JobQueueCollector(jq))
    start_http_server(9100)

Each scrape takes one ``metrics()`` snapshot, so the figures of one scrape
agree with each other.  Names follow Prometheus's conventions: a ``jobqueue_``
prefix, base units (seconds), ``_total`` on counters, and a ``priority``
label; ``queue`` labels every series when you pass a name (several queues in
one process).  The series (``priority`` on all but the pool's):

- counters: ``jobqueue_jobs_completed_total``, ``jobqueue_jobs_failed_total``
  (dead-lettered), ``jobqueue_jobs_retried_total``;
- gauges: ``jobqueue_jobs_queued``, ``jobqueue_jobs_processing``,
  ``jobqueue_jobs_retrying``, ``jobqueue_oldest_wait_seconds``,
  ``jobqueue_wait_seconds{quantile="0.5"|"0.99"}`` (recent queue waits),
  ``jobqueue_paused`` (1 when paused); for the pool: ``jobqueue_workers``,
  ``jobqueue_busy_workers``, ``jobqueue_utilization_ratio``,
  ``jobqueue_uptime_seconds``.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from jobqueue.final.metrics import Metrics, PriorityMetrics
from jobqueue.final.queue import JobQueue
from jobqueue.vocabulary import Priority

__all__ = ["JobQueueCollector"]

_COUNTERS = (
    ("jobqueue_jobs_completed", "Jobs whose handler returned.", "completed"),
    ("jobqueue_jobs_failed", "Jobs that failed for good (dead-lettered).", "failed"),
    ("jobqueue_jobs_retried", "Retries scheduled after a failed run.", "retried"),
)
_GAUGES = (
    ("jobqueue_jobs_queued", "Jobs waiting for a worker.", "queued"),
    ("jobqueue_jobs_processing", "Jobs whose handler is running.", "processing"),
    ("jobqueue_jobs_retrying", "Failed jobs waiting out a backoff.", "retrying"),
    (
        "jobqueue_oldest_wait_seconds",
        "Seconds the oldest queued job has waited (0 when none waits).",
        "oldest_wait",
    ),
)


class JobQueueCollector(Collector):
    """Exposes one queue's ``metrics()`` to ``prometheus_client``; register it once."""

    def __init__(self, queue: JobQueue, name: str | None = None) -> None:
        if not isinstance(queue, JobQueue):
            raise TypeError(f"queue must be a jobqueue.final.JobQueue, got {type(queue).__name__}")
        self._queue = queue
        self._extra = ["queue"] if name is not None else []
        self._values = [name] if name is not None else []

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        m = self._queue.metrics()
        labels = [*self._extra, "priority"]
        for name, text, field in _COUNTERS:
            counter = CounterMetricFamily(name, text, labels=labels)
            for p, pm in m.by_priority.items():
                counter.add_metric([*self._values, p.name], _field(pm, field))
            yield counter
        for name, text, field in _GAUGES:
            gauge = GaugeMetricFamily(name, text, labels=labels)
            for p, pm in m.by_priority.items():
                gauge.add_metric([*self._values, p.name], _field(pm, field))
            yield gauge
        waits = GaugeMetricFamily(
            "jobqueue_wait_seconds",
            "Queue wait (enqueue to start) of the recent jobs started, by quantile.",
            labels=[*labels, "quantile"],
        )
        for p, pm in m.by_priority.items():
            waits.add_metric([*self._values, p.name, "0.5"], pm.wait_p50)
            waits.add_metric([*self._values, p.name, "0.99"], pm.wait_p99)
        yield waits
        paused = GaugeMetricFamily(
            "jobqueue_paused", "1 if the priority starts no new job.", labels=labels
        )
        for p in Priority:
            paused.add_metric([*self._values, p.name], 1.0 if p in m.paused else 0.0)
        yield paused
        yield from self._pool(m)

    def _pool(self, m: Metrics) -> Iterator[GaugeMetricFamily]:
        for name, text, value in (
            ("jobqueue_workers", "Worker threads in the pool.", m.workers),
            ("jobqueue_busy_workers", "Workers running a handler now.", m.busy_workers),
            (
                "jobqueue_utilization_ratio",
                "Share of worker time spent in handlers since start, 0 to 1.",
                m.utilization,
            ),
            ("jobqueue_uptime_seconds", "Seconds since the queue started.", m.uptime),
        ):
            gauge = GaugeMetricFamily(name, text, labels=self._extra)
            gauge.add_metric(self._values, float(value))
            yield gauge


def _field(pm: PriorityMetrics, field: str) -> float:
    return float(getattr(pm, field))
