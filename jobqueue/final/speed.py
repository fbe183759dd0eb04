"""The speed shortcuts ``final`` keeps, fenced here so that ``queue.py`` reads as lessons.

Each pays for itself.  Figures: no-op jobs, 4 workers, 2 shared cores (load
average 4.5), median of 9 alternating in-memory runs of 50,000 jobs; take one
out and final's throughput drops by:

1. :class:`Entry` not frozen:           15%  (its ``__init__``: 0.2 µs, frozen 0.5 µs)
2. ``_job_done()`` takes the next job:  28%  (two mutex rounds per job instead of one)

2 lives in ``queue.py``, as the one line ``return self._take()`` at the end
of ``JobQueue._job_done``: a worker that ends a job and takes the next in one
critical section does not hand the contended mutex (and the GIL) to another
thread in between.  That is why ``_job_done`` returns a job, and the worker
loop passes it on.  Under the realistic profile (below), with the Mutex,
it is still worth 17% of final's lead on the pool: 10 alternating runs of
``python -m jobqueue.lab.floor 30000 3`` gave 1.65x the pool (median; 14.5
µs per job) with it, 1.37x (15.8 µs) without.

3. :class:`Mutex`, the queue's one lock, polls instead of sleeping.  Under
   the realistic profile (4 workers, one producer, mixed priorities, a
   handler that counts under a shared lock; ``python -m jobqueue.lab.floor``)
   final without it runs 19.8-20.9 µs per job, 1.25-1.36x the thread pool;
   with it 15.2-17.6 µs, 1.50-1.70x.  Its class docstring says why.

A fourth is gone: a ``Condition`` that skipped ``notify()`` while nobody
waited (7% on ``threading.Lock``).  ``threading.Condition`` asks its lock
whether it is held before it notifies; a lock that answers in C
(``Mutex._is_owned``) leaves the skip 1% of the instructions per job
(``lab/hotpath.py``: 73,329 with it, 74,113 without) and no time the
10 runs above could see (14.1 µs median without it).
"""

from __future__ import annotations

import threading
import time
from _thread import LockType
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import cast

from jobqueue.vocabulary import Handler, Job

__all__ = ["Entry", "Mutex", "new_mutex"]


@dataclass(slots=True)  # not frozen (1): stamped as it is queued, taken and run
class Entry:
    """A job as it waits in the queue, with the handler that will run it."""

    job: Job
    handler: Handler
    started: float = 0.0  # time.monotonic() when a worker took it, for utilization
    future: Future[object] | None = None  # submit()'s (futures.py); None for enqueue()
    queued: float = 0.0  # time.monotonic() since when it waits for a worker (waits.py)
    result: object = None  # what the handler returned, for the future


#: Threads that may poll one Mutex at once; more queue in the kernel.
_MAX_POLLING = 8


class Mutex:
    """A lock that is not handed to a thread that cannot run, if it can help it (3).

    The race it prevents is a *lock convoy* between the mutex and the GIL.
    CPython switches the GIL every 5 ms, wherever the running thread is; now
    and then that is inside a critical section.  The next thread blocks on
    ``threading.Lock``, in the kernel.  When the holder releases, the kernel
    wakes the blocked thread *and gives it the lock*, but it has no GIL; the
    releaser has the GIL, runs its handler and asks for the lock again: it
    blocks and gives up the GIL; the new owner takes it, and so on.  From
    then on every job costs a sleep and a wake-up: 0.8 to 1.7 voluntary
    context switches per job, where a few in a hundred would do.

    So ``acquire`` does not sleep on a taken lock: it retries, and between
    tries gives up the GIL (``time.sleep``: first for no time, then 20 µs
    doubling to at most 1 ms), so that the holder, most likely a thread
    waiting for the GIL to finish its critical section, can finish and
    release.  The lock then goes to a thread that can run, and the cycle
    above never starts: 0.01 to 0.04 switches per job.  Sleeping on the lock
    after one yield left the convoy in place (0.6 switches per job); after two
    tries, 0.1.  Polling has a cost when thousands of threads want the lock at
    once (``close()`` waking 2,000 idle workers took 6.4 s to stop, every one
    fighting for the GIL to poll, against 0.4 s on ``threading.Lock``), so at
    most ``_MAX_POLLING`` threads poll and the rest sleep on the lock as they
    would on any other: 0.4-0.9 s.  A holder that blocks inside its critical
    section (none of ``queue.py``'s does) costs a poller a try per
    millisecond, not a busy loop.

    Figures, three alternating repetitions of the realistic workload, µs per
    job and ratio to ThreadPoolExecutor of the same repetition: a queue with no
    features (``lab/floor.py``) on ``threading.Lock``: 18.3, 18.6, 9.9 µs
    (1.53x, 1.66x, 3.04x; 1.71, 1.63, 0.82 switches per job); on this
    ``Mutex``: 7.1, 6.9, 6.9 µs (3.96x, 4.50x, 4.37x; 0.01 switches per job).
    ``final`` itself: (3) above, and docs/benchmarks.md, "In memory: short
    critical sections".
    """

    __slots__ = ("_is_owned", "_polling", "_try", "locked", "release")

    def __init__(self) -> None:
        lock = threading.Lock()
        self._try = lock.acquire
        self.release = lock.release
        self.locked = lock.locked
        # threading.Condition asks this before notify() and wait(); without it,
        # it would try acquire(False), a call of ours (Lock has no _is_owned either).
        self._is_owned = lock.locked
        self._polling: deque[None] = deque()  # one item per thread polling (deque: atomic)

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if self._try(False):
            return True
        if not blocking:
            return False
        if len(self._polling) >= _MAX_POLLING:  # a herd: queue in the kernel, as for any lock
            return self._try(True, timeout)
        self._polling.append(None)
        try:
            deadline = None if timeout < 0 else time.monotonic() + timeout
            pause = 0.0
            while not self._try(False):
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                time.sleep(pause)  # gives up the GIL: the holder may be waiting for it
                pause = min(pause * 2 or 20e-6, 1e-3)
            return True
        finally:
            self._polling.pop()

    __enter__ = acquire  # `with mutex:` costs one call of ours, not two

    def __exit__(self, *exc: object) -> None:
        self.release()


def new_mutex() -> LockType:
    """A :class:`Mutex`, typed as the lock it stands in for (``threading.Condition``'s
    type hints accept no other)."""
    return cast(LockType, Mutex())
