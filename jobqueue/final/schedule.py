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

import time

__all__ = ["seconds_left"]


def seconds_left(run_at: float | None, now: float | None = None) -> float:
    """How long a job with this ``run_at`` must still wait; 0.0 if it may run now.

    ``now`` is ``time.time()``, read here unless given.
    """
    if run_at is None:
        return 0.0
    return max(0.0, run_at - (time.time() if now is None else now))
