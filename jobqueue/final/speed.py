"""The three speed shortcuts ``final`` keeps, fenced here so that ``queue.py`` reads as lessons.

Each pays for itself.  Figures: no-op jobs, 4 workers, 2 shared cores (load
average 4.5), median of 9 alternating in-memory runs of 50,000 jobs; take one
out and final's throughput drops by:

1. :class:`Entry` not frozen:           15%  (its ``__init__``: 0.2 µs, frozen 0.5 µs)
2. :class:`Condition` skips notify():    7%  (``notify()`` with nobody waiting: 0.5 µs)
3. ``_job_done()`` takes the next job:  28%  (two mutex rounds per job instead of one)

3 lives in ``queue.py``, as the one line ``return self._take()`` at the end
of ``JobQueue._job_done``: a worker that ends a job and takes the next in one
critical section does not hand the contended mutex (and the GIL) to another
thread in between.  That is why ``_job_done`` returns a job, and the worker
loop passes it on.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass

from jobqueue.vocabulary import Handler, Job

__all__ = ["Condition", "Entry"]


@dataclass(slots=True)  # not frozen (1); JobQueue._take() stamps `started`
class Entry:
    """A job as it waits in the queue, with the handler that will run it."""

    job: Job
    handler: Handler
    started: float = 0.0  # time.monotonic() when a worker took it, for utilization
    future: Future[object] | None = None  # submit()'s (futures.py); None for enqueue()
    queued: float = 0.0  # time.monotonic() since when it waits for a worker (waits.py)


class Condition(threading.Condition):
    """A Condition that counts its waiters (2), and skips notify() while there are none.

    Every call holds the lock, so ``waiting`` is exact (never less than the
    threads really waiting).  ``notify()`` on a plain Condition checks who
    owns the lock even when nobody waits, which is the common case.
    """

    def __init__(self, lock: threading.Lock) -> None:
        super().__init__(lock)
        self.waiting = 0

    def wait(self, timeout: float | None = None) -> bool:
        self.waiting += 1
        try:
            return super().wait(timeout)
        finally:
            self.waiting -= 1

    def notify(self, n: int = 1) -> None:
        if self.waiting:
            super().notify(n)
