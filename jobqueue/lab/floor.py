"""The least a queue with ``final``'s core costs per job, and what each feature adds.

``jobqueue.final`` pays, per job, for more than a queue: fairness, status by
id, per-priority metrics and wait ages.  To say what stands between it and a
speed goal, ``lab/hotpath.py`` counts the instructions per job of
:class:`FloorQueue`, with none, some or all of those features switched on,
beside ``final`` itself and ``ThreadPoolExecutor``.

``jobqueue bench`` times both floors in its realistic section, and the
in-memory goal's row of its goals table cites them.  Run as
``python -m jobqueue.lab.floor [JOBS [REPEAT]]``, this module alone times the
realistic profile's workload (``measure.py``: four workers, one producer,
mixed priorities, a handler that counts under a shared lock) through the
pool, the floor, the floor with every feature, and ``final`` in memory, in
turn, and prints microseconds per job and the ratio to the pool of the same
repetition: how far even the floor is from a speed goal, under contention.

The floor is a queue with nothing to spare: one mutex, three bounded
deques, strict priority, a worker that holds the mutex except while a handler
runs, and ``join()``.  It has no retries, no log, no futures and no error
handling beyond logging.  It is *not* a stage and nobody should run jobs on
it.  Each feature is ``final``'s own code (``fairness.py``, ``status.py``,
``metrics.py``, ``waits.py``) called as ``final/queue.py`` calls it, so a
feature's cost here is its cost there, give or take the calls around it.
"""

from __future__ import annotations

import logging
import statistics
import sys
import threading
import time
from collections import deque
from collections.abc import Collection
from types import TracebackType

from jobqueue.final.fairness import FairPicker
from jobqueue.final.metrics import Counters
from jobqueue.final.speed import new_mutex
from jobqueue.final.status import StatusBook
from jobqueue.lab import measure
from jobqueue.vocabulary import Handler, Job, Priority, QueueClosed, Status

__all__ = ["FEATURES", "FLOORS", "FloorQueue", "compare", "throughput"]

logger = logging.getLogger(__name__)

FEATURES = ("fairness", "status", "metrics")  # metrics: the counters and the wait ages

#: The two floors ``jobqueue bench`` times beside final: none of its features, and all three.
FLOORS: dict[str, tuple[str, ...]] = {"floor": (), "floor+features": FEATURES}

_PRIORITIES = tuple(Priority)


class FloorQueue:
    """Worker threads draining three bounded deques, with ``features`` of ``final``."""

    def __init__(
        self,
        handler: Handler,
        *,
        num_workers: int = 1,
        queue_size: int = 1000,
        features: Collection[str] = (),
    ) -> None:
        unknown = set(features) - set(FEATURES)
        if unknown:
            raise ValueError(f"features must be among {FEATURES}, got {sorted(unknown)}")
        self._handler = handler
        self._size = queue_size
        self._queues: tuple[deque[tuple[Job, float]], ...] = tuple(deque() for _ in Priority)
        self._picker = FairPicker(10) if "fairness" in features else None
        self._statuses = StatusBook(10_000) if "status" in features else None
        self._counters = Counters(time.monotonic()) if "metrics" in features else None
        self._mutex = new_mutex()  # final's lock, which breaks convoys (final/speed.py)
        self._not_empty = threading.Condition(self._mutex)  # notified by enqueue() and close()
        self._not_full = threading.Condition(self._mutex)  # notified by a worker taking a job
        self._all_done = threading.Condition(self._mutex)  # by the last job's end
        self._unfinished = 0
        self._closed = False
        self._workers = [
            threading.Thread(target=self._work, name=f"jobqueue-floor-{i}")
            for i in range(num_workers)
        ]
        for worker in self._workers:
            worker.start()

    def __enter__(self) -> FloorQueue:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def enqueue(self, job: Job) -> None:
        """Add ``job``; blocks while its priority's deque is full."""
        waiting = self._queues[job.priority]
        with self._mutex:
            while not self._closed and len(waiting) >= self._size:
                self._not_full.wait()
            if self._closed:
                raise QueueClosed(f"cannot enqueue job {job.id!r}: the queue is closed")
            if self._statuses is not None:
                self._statuses.take(job.id)
                self._statuses.accepted(job.id)
            self._unfinished += 1
            waiting.append((job, time.monotonic()))
            self._not_empty.notify()

    def join(self) -> None:
        """Wait until every enqueued job has run."""
        with self._all_done:
            while self._unfinished:
                self._all_done.wait()

    def close(self) -> None:
        """Start no new job; wait for the workers."""
        with self._mutex:
            self._closed = True
            self._not_empty.notify_all()
            self._not_full.notify_all()
        for worker in self._workers:
            worker.join()

    def _work(self) -> None:
        with self._mutex:
            while True:
                taken = self._take()
                if taken is None:
                    return
                job, started = taken
                self._mutex.release()
                try:
                    self._handler(job.payload)
                except BaseException:
                    logger.exception("job %r failed", job.id)
                finally:
                    self._mutex.acquire()
                self._done(job, started)

    def _take(self) -> tuple[Job, float] | None:
        """The next job and when it started, or None once closed.  Caller holds the mutex."""
        while not self._closed:
            if self._picker is not None:
                priority = self._picker.choose(self._queues)
            else:  # strict priority, as in improved
                priority = None
                for p in _PRIORITIES:
                    if self._queues[p]:
                        priority = p
                        break
            if priority is None:
                self._not_empty.wait()
                continue
            job, queued = self._queues[priority].popleft()
            now = time.monotonic()
            if self._counters is not None:
                self._counters.waits.recent[priority].append(now - queued)
                self._counters.run_started(priority, now)
            if self._statuses is not None:
                self._statuses.set(job.id, Status.PROCESSING)
            self._not_full.notify()
            return job, now
        return None

    def _done(self, job: Job, started: float) -> None:
        """Count a finished job.  Caller holds the mutex."""
        if self._counters is not None:
            self._counters.run_ended(job.priority, started, time.monotonic())
            self._counters.completed[job.priority] += 1
        if self._statuses is not None:
            self._statuses.finish(job.id, Status.COMPLETED)
        self._unfinished -= 1
        if not self._unfinished:
            self._all_done.notify_all()


def compare(jobs: int = 50_000, repeat: int = 3) -> dict[str, list[float]]:
    """Microseconds per job of the realistic workload, by queue, one list entry per repetition."""
    timed: dict[str, list[float]] = {}
    for _ in range(repeat):
        for name in ("threadpool", *FLOORS, "final"):
            if name in FLOORS:
                run = throughput(jobs, FLOORS[name])
            else:
                run = measure.throughput(name, jobs, handler=measure.counting(), mixed=True)
            timed.setdefault(name, []).append(run.seconds / jobs * 1e6)
    return timed


def throughput(jobs: int, features: Collection[str] = ()) -> measure.ThroughputResult:
    """The realistic workload through a FloorQueue with ``features``, timed as
    ``measure.throughput`` times its targets: first enqueue to the return of join()."""
    name = "+".join(("floor", *features))
    items = [Job(id=f"j{i}", payload=b"x" * 16, priority=_PRIORITIES[i % 3]) for i in range(jobs)]
    with FloorQueue(measure.counting(), num_workers=measure.WORKERS, features=features) as queue:
        put = queue.enqueue
        start = time.perf_counter()
        for item in items:
            put(item)
        queue.join()
        seconds = time.perf_counter() - start
    return measure.ThroughputResult(name, jobs, measure.WORKERS, 1, seconds)


def main(argv: list[str]) -> None:
    jobs = int(argv[0]) if argv else 50_000
    repeat = int(argv[1]) if len(argv) > 1 else 3
    timed = compare(jobs, repeat)
    pool = timed["threadpool"]
    print(f"realistic workload, {jobs:,} jobs, {measure.WORKERS} workers, {repeat} repetitions")
    print("µs per job: median (min-max); x the pool: median (min-max) of the repetitions")
    for name, us in timed.items():
        ratios = [p / u for p, u in zip(pool, us, strict=True)]
        print(
            f"  {name:<15} {statistics.median(us):6.1f} ({min(us):.1f}-{max(us):.1f})"
            f"   {statistics.median(ratios):5.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
