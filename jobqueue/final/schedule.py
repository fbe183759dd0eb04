"""Delayed jobs: ``Job(run_at=...)`` does not start before ``run_at``.

``run_at`` is wall-clock time (``time.time()`` seconds), because it must mean
the same after a restart: the log stores it in the job's ``enqueued``
record.  Until then the job is SCHEDULED and holds no worker: it waits in the
same timer heap as a retry's backoff, ordered by a monotonic due time, so a
wall clock set back or forward while the process runs moves nothing.  On a
restart the due time is computed again from ``run_at``.

A ``run_at`` already past runs the job as soon as its turn comes, as if it
had none.  Enqueueing a delayed job waits for room in its priority queue like
any other (backpressure applies to intake); once scheduled it holds no slot,
and when due it joins its queue past the bound, as a retry does.  A job that
ran once and waits to retry is RETRYING: its ``run_at`` is behind it.
"""

from __future__ import annotations

import heapq
import time
from typing import TYPE_CHECKING

from jobqueue.final.speed import Entry
from jobqueue.vocabulary import Status

if TYPE_CHECKING:
    from jobqueue.final.queue import JobQueue

__all__ = ["due", "schedule", "seconds_left"]


def seconds_left(run_at: float | None, now: float | None = None) -> float:
    """How long a job with this ``run_at`` must still wait; 0.0 if it may run now.

    ``now`` is ``time.time()``, read here unless given.
    """
    if run_at is None:
        return 0.0
    return max(0.0, run_at - (time.time() if now is None else now))


def schedule(jq: JobQueue, entry: Entry) -> bool:
    """Put a job whose ``run_at`` is still ahead in ``jq``'s timer heap; False if it is due.

    Caller holds the mutex.
    """
    left = seconds_left(entry.job.run_at)
    if left <= 0:
        return False
    heapq.heappush(jq._retries, (time.monotonic() + left, next(jq._tie), entry))
    jq._statuses.set(entry.job.id, Status.SCHEDULED)
    jq._not_full[entry.job.priority].notify()  # it holds no slot while it waits
    jq._not_empty.notify()  # a sleeping worker may need a shorter timeout
    return True


def due(jq: JobQueue, entry: Entry, now: float) -> None:
    """A job left the timer heap, due: a retry, or a delayed job.  Its caller queues
    it.  Caller holds the mutex."""
    if jq._statuses.get(entry.job.id) is Status.RETRYING:  # not SCHEDULED
        jq._retrying[entry.job.priority] -= 1
    jq._statuses.set(entry.job.id, Status.QUEUED)
    entry.queued = now  # its wait for a worker starts when it is due
