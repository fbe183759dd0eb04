"""Wait age for ``final``: how long jobs wait for a worker, the first number an operator watches.

Two figures per priority, both in ``metrics()``:

- ``oldest_wait``: seconds the job at the head of the priority's queue has
  waited (0.0 when none waits).  Queues are FIFO, so the head is the oldest;
  no scan.  A job that waited out a backoff waits again from when it was due.
- ``wait_p50``/``wait_p99``: percentiles of the last ``WINDOW`` waits, from
  enqueue (or due time) to the start of the run.  A bounded window, so
  memory stays flat and the figure follows the present, as Sidekiq's latency.

The hot path pays one ``deque.append`` per job taken (a ring buffer: the
deque drops its oldest wait itself); the sorting happens only in
``metrics()``.  Not thread-safe on its own: the queue's mutex guards it.
"""

from __future__ import annotations

import math
import time
from collections import deque

from jobqueue.vocabulary import Job, Priority

__all__ = ["WINDOW", "WaitTimes", "queued_since"]

WINDOW = 1024  # recent waits kept per priority


class WaitTimes:
    """The recent waits of each priority.  ``recent[p].append(seconds)`` records one."""

    __slots__ = ("recent",)

    def __init__(self) -> None:
        self.recent: tuple[deque[float], ...] = tuple(deque(maxlen=WINDOW) for _ in Priority)

    def percentiles(self, priority: Priority) -> tuple[float, float]:
        """(p50, p99) of the recent waits of ``priority``; (0.0, 0.0) before any."""
        waits = sorted(self.recent[priority])
        if not waits:
            return 0.0, 0.0
        n = len(waits)  # nearest rank: the smallest wait at or above the share asked
        return waits[math.ceil(0.50 * n) - 1], waits[math.ceil(0.99 * n) - 1]


def queued_since(job: Job, now: float) -> float:
    """The monotonic time a recovered job has been queued since: its age by the log
    (``time.time() - job.created``), never in the future."""
    return now - max(0.0, time.time() - job.created)
