"""Metrics for ``final``: counters per priority and worker utilization.

The live counters (:class:`Counters`) belong to the queue and change only
under its mutex; that is how they stay exact without atomics.  Users only ever
get a :class:`Metrics`, a frozen snapshot taken under the same mutex, so its
numbers agree with each other (for example ``queued + retrying + processing``
is the number of unfinished jobs at one instant).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from jobqueue.final.waits import WaitTimes
from jobqueue.vocabulary import Priority

if TYPE_CHECKING:
    from jobqueue.final.queue import JobQueue
    from jobqueue.final.speed import Entry

__all__ = ["Counters", "Metrics", "PriorityMetrics", "queue_snapshot"]


@dataclass(frozen=True, slots=True)
class PriorityMetrics:
    """The counters of one priority."""

    queued: int  # waiting for a worker
    retrying: int  # failed, waiting out a backoff
    processing: int  # a handler is running
    completed: int  # handler returned (total since start)
    failed: int  # retries exhausted, dead-lettered (total since start)
    retried: int  # retries scheduled (total since start)
    oldest_wait: float = 0.0  # seconds the oldest queued job has waited; 0.0 when none waits
    wait_p50: float = 0.0  # median queue wait of the recent jobs started (waits.py)
    wait_p99: float = 0.0  # 99th percentile of the same


@dataclass(frozen=True, slots=True)
class Metrics:
    """A consistent snapshot of the queue.  The totals sum ``by_priority``."""

    queued: int
    retrying: int
    processing: int
    completed: int
    failed: int
    retried: int
    by_priority: Mapping[Priority, PriorityMetrics]  # read-only
    workers: int  # size of the pool
    busy_workers: int  # workers running a handler now (= processing)
    utilization: float  # share of worker time spent in handlers since start, 0..1
    uptime: float  # seconds since the queue started
    paused: frozenset[Priority] = frozenset()  # priorities that start no new job (pause.py)

    def __str__(self) -> str:
        """What ``print(jq.metrics())`` shows: totals, workers, one line per priority."""
        rows = [
            f"jobs: {_counts(self)}",
            f"workers: {self.busy_workers} of {self.workers} busy; "
            f"{self.utilization:.0%} utilization over {self.uptime:.1f} s"
            + (
                f"; paused: {', '.join(p.name for p in sorted(self.paused))}" if self.paused else ""
            ),
        ]
        for priority, m in self.by_priority.items():
            rows.append(
                f"  {priority.name:<6}  {_counts(m)}; oldest wait {m.oldest_wait:.3f} s, "
                f"recent waits p50 {m.wait_p50:.3f} s, p99 {m.wait_p99:.3f} s"
            )
        return "\n".join(rows)


def _counts(m: Metrics | PriorityMetrics) -> str:
    return (
        f"{m.queued:,} queued, {m.retrying:,} retrying, {m.processing:,} processing; "
        f"{m.completed:,} completed, {m.failed:,} failed, {m.retried:,} retried"
    )


class Counters:
    """The live counters.  Not thread-safe: the queue's mutex guards every call."""

    __slots__ = (
        "_busy_seconds",
        "_started_at",
        "_starts_sum",
        "completed",
        "failed",
        "processing",
        "retried",
        "waits",
    )

    def __init__(self, now: float) -> None:
        self._started_at = now
        self.waits = WaitTimes()  # the recent waits, for wait_p50 and wait_p99
        self.processing = [0] * len(Priority)
        self.completed = [0] * len(Priority)
        self.failed = [0] * len(Priority)
        self.retried = [0] * len(Priority)
        # Utilization without a per-worker record: the busy time of finished
        # runs, plus for running ones `processing * now - sum of their starts`.
        self._busy_seconds = 0.0
        self._starts_sum = 0.0

    def job_started(self, entry: Entry, now: float) -> None:
        """A worker took ``entry`` at ``now``: its wait ends and its run begins."""
        entry.started = now
        priority = entry.job.priority
        self.waits.recent[priority].append(now - entry.queued)
        # run_started's two lines, inlined: calling it costs ~450 instructions per job.
        self.processing[priority] += 1
        self._starts_sum += now - self._started_at

    def run_started(self, priority: Priority, now: float) -> None:
        self.processing[priority] += 1
        self._starts_sum += now - self._started_at  # relative: keeps the float sum precise

    def run_ended(self, priority: Priority, started: float, now: float) -> None:
        self.processing[priority] -= 1
        self._starts_sum -= started - self._started_at
        self._busy_seconds += now - started

    def snapshot(
        self,
        queued: list[int],
        retrying: list[int],
        workers: int,
        now: float,
        *,
        oldest: list[float],
        paused: frozenset[Priority],
    ) -> Metrics:
        """``oldest[p]``: the monotonic time the head of priority ``p`` was queued
        (ignored when none is queued)."""
        by_priority = {}
        for p in Priority:
            p50, p99 = self.waits.percentiles(p)
            by_priority[p] = PriorityMetrics(
                queued=queued[p],
                retrying=retrying[p],
                processing=self.processing[p],
                completed=self.completed[p],
                failed=self.failed[p],
                retried=self.retried[p],
                oldest_wait=max(0.0, now - oldest[p]) if queued[p] else 0.0,
                wait_p50=p50,
                wait_p99=p99,
            )
        busy_now = sum(self.processing)
        uptime = now - self._started_at
        busy = self._busy_seconds + busy_now * uptime - self._starts_sum
        capacity = workers * uptime
        return Metrics(
            queued=sum(queued),
            retrying=sum(retrying),
            processing=busy_now,
            completed=sum(self.completed),
            failed=sum(self.failed),
            retried=sum(self.retried),
            by_priority=MappingProxyType(by_priority),
            workers=workers,
            busy_workers=busy_now,
            utilization=min(1.0, max(0.0, busy / capacity)) if capacity > 0 else 0.0,
            uptime=uptime,
            paused=paused,
        )


def queue_snapshot(jq: JobQueue) -> Metrics:
    """``jq.metrics()``: what the in-memory queue ``jq`` holds, and its counters.
    Caller holds its mutex."""
    return jq._counters.snapshot(
        queued=[len(waiting) for waiting in jq._queues],
        retrying=list(jq._retrying),
        workers=jq._config.num_workers,
        now=time.monotonic(),
        oldest=[waiting[0].queued if waiting else 0.0 for waiting in jq._queues],
        paused=jq._pauses.frozen(),
    )
