"""Stage 2 of 3: the improved job queue.

Builds on: ``jobqueue.naive``.
Adds, one fix per naive problem:

- Backpressure: a bounded queue per priority (``queue_size`` each).
  ``enqueue`` blocks while its queue is full, and raises ``QueueFull`` when
  its ``timeout`` runs out.
- Priorities: a worker always takes HIGH before MEDIUM before LOW.
- Retry with exponential backoff: retry ``k`` waits
  ``min(retry_max_delay, retry_base_delay * 2**(k-1))``.  A job waiting out
  its backoff sits in a timer heap, not in a sleeping worker.
- Graceful shutdown: ``close()`` waits up to ``shutdown_timeout`` for the
  jobs in flight.
- Exact metrics: ``metrics()`` returns a consistent snapshot.

Go would give each priority a channel and ``select`` over them.  Python has
no ``select`` over queues: a worker blocked in ``high.get()`` cannot also wake
for ``low``.  So the three queues are plain deques under ONE mutex, and
workers wait on one Condition, ``not_empty``, that means "some deque has a
job".  One lock also keeps the counters exact without atomics: every counter
changes under the same mutex as the state it counts.

Still wrong, fixed by ``jobqueue.final``:

- Strict priority starves LOW: under a steady flood of HIGH jobs a LOW job
  never runs.
- No status by id: ``status()`` raises ``NotImplementedError``.
- Nothing survives a restart: queued jobs and retry state live in memory.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Self

from jobqueue import vocabulary
from jobqueue.vocabulary import *  # noqa: F403  (re-exported: see __all__)
from jobqueue.vocabulary import (
    Config,
    Handler,
    Job,
    NoJobHandles,
    PermanentFailure,
    Priority,
    QueueClosed,
    QueueFull,
    Status,
    batch_shares,
    check_timeout,
    log_base_exception,
    log_failed_run,
    not_in_stage,
    refuse_inside_handler,
    require_config,
    resolve_handler,
    wait_seconds,
)

__all__ = ["Config", "JobQueue", "Metrics"]
__all__ += vocabulary.__all__

logger = logging.getLogger(__name__)

# -- public types: Job, Priority, Status and Config come from jobqueue.vocabulary.


@dataclass(frozen=True, slots=True)
class Metrics:
    """A snapshot of the counters, all read under one lock, so they agree."""

    queued: int  # waiting in a priority queue
    retrying: int  # failed, waiting out a backoff
    processing: int  # a handler is running
    completed: int  # handler returned (total since start)
    failed: int  # retries exhausted (total since start)
    retried: int  # retries scheduled (total since start)


# -- errors: the shared hierarchy in jobqueue.vocabulary.


@dataclass(frozen=True, slots=True)
class _Entry:
    """A job as it waits in the queue, with the handler that will run it."""

    job: Job
    handler: Handler


class JobQueue(NoJobHandles):  # submit() and cancel(): not before jobqueue.final
    """A fixed pool of worker threads draining three bounded priority queues."""

    def __init__(self, config: Config | None = None) -> None:
        self._config = config = require_config(config)
        # Fix: one bounded deque per priority, indexed by Priority (HIGH = 0).
        self._queues: tuple[deque[_Entry], ...] = tuple(deque() for _ in Priority)
        # Jobs waiting out a backoff: a heap of (due, tie-breaker, entry).
        self._retries: list[tuple[float, int, _Entry]] = []
        self._tie = itertools.count()  # keeps heap order FIFO for equal due times
        self._mutex = threading.Lock()
        # Waiters: workers.  Notified by enqueue(), by a failed job's retry
        # (a new earliest due time), and by close().
        self._not_empty = threading.Condition(self._mutex)
        # Waiters: producers blocked on a full queue, one Condition per priority
        # so freeing a LOW slot does not wake HIGH producers.  Notified by a
        # worker taking a job of that priority, and by close().
        self._not_full = tuple(threading.Condition(self._mutex) for _ in Priority)
        # Waiters: enqueue_many() batches waiting for room for all their jobs.
        # Notified (all) by a worker taking a job while one waits, and by close().
        self._room = threading.Condition(self._mutex)
        self._batches_waiting = 0
        # Waiters: join().  Notified when the last unfinished job ends.
        self._all_done = threading.Condition(self._mutex)
        self._unfinished = 0  # accepted, neither finished nor dropped
        self._processing = 0
        self._completed = self._failed = self._retried = 0
        self._closed = False
        self._in_handler = threading.local()  # .job: the job a worker thread is running
        self._workers = [
            threading.Thread(target=_worker, args=(self,), name=f"jobqueue-improved-{i}")
            for i in range(config.num_workers)
        ]
        for worker in self._workers:
            worker.start()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def enqueue(self, job: Job, timeout: float | None = None) -> None:
        """Add ``job``, to be run by ``Config.handler``.

        Blocks while the job's priority queue is full; raises ``QueueFull`` if
        ``timeout`` seconds pass first, ``QueueClosed`` after ``close()``.
        """
        self._accept(self._entry(job, None), timeout)

    def enqueue_with_handler(
        self, job: Job, handler: Handler | None, timeout: float | None = None
    ) -> None:
        """Add ``job``, to be run by ``handler`` (or ``Config.handler`` if None)."""
        self._accept(self._entry(job, handler), timeout)

    def _entry(self, job: Job, handler: Handler | None) -> _Entry:
        """``job`` and the handler that will run it, both checked."""
        entry = _Entry(job, resolve_handler(job, handler, self._config.handler))
        if job.run_at is not None:
            not_in_stage(__name__, "delayed jobs (Job.run_at)", "jobqueue.final")
        return entry

    def _accept(self, entry: _Entry, timeout: float | None) -> None:
        """The body of ``enqueue`` and ``enqueue_with_handler``."""
        job = entry.job
        check_timeout(timeout)
        waiting = self._queues[job.priority]
        not_full = self._not_full[job.priority]
        size = self._config.queue_size
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._mutex:
            # Fix: backpressure.  Wait for room, on a deadline, re-checking the
            # predicate after every wake-up: another producer may have won the slot.
            while not self._closed and len(waiting) >= size:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise QueueFull(
                        f"cannot enqueue job {job.id!r}: the {job.priority.name} queue "
                        f"is full ({size} jobs) after {timeout}s"
                    )
                not_full.wait(wait_seconds(remaining))
            if self._closed:
                raise QueueClosed(f"cannot enqueue job {job.id!r}: the queue is closed")
            self._unfinished += 1
            self._admit(entry)

    def _admit(self, entry: _Entry) -> None:
        """Queue an accepted job.  Caller holds the mutex."""
        self._queues[entry.job.priority].append(entry)
        self._not_empty.notify()

    def enqueue_many(self, jobs: Iterable[Job], timeout: float | None = None) -> None:
        """Add every job of ``jobs``, all or none, each run as ``enqueue`` would run it.

        Waits for room for the whole batch; raises ``ValueError`` if one
        priority's share exceeds ``queue_size``, and as ``enqueue`` otherwise.
        Problem: no status by id, so duplicate ids are not detected.
        """
        entries = [self._entry(job, None) for job in jobs]
        check_timeout(timeout)
        shares = batch_shares([e.job for e in entries], self._config.queue_size, unique_ids=False)
        queues, size = self._queues, self._config.queue_size
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._mutex:
            # Room for all of it at once, or two half-placed batches could wait for each other.
            while not self._closed and any(
                n and len(queues[p]) + n > size for p, n in enumerate(shares)
            ):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise QueueFull(
                        f"cannot enqueue a batch of {len(entries)} jobs: no room for all of it "
                        f"(queue_size={size} per priority) after {timeout}s"
                    )
                self._batches_waiting += 1
                try:
                    self._room.wait(wait_seconds(remaining))
                finally:
                    self._batches_waiting -= 1
            if self._closed:
                raise QueueClosed(f"cannot enqueue {len(entries)} jobs: the queue is closed")
            self._unfinished += len(entries)
            for entry in entries:
                self._admit(entry)

    def status(self, job_id: str) -> Status | None:
        """Problem: no status by id.  This stage keeps no record of jobs by id."""
        not_in_stage(__name__, "status()", "jobqueue.final")

    def metrics(self) -> Metrics:
        """A consistent snapshot of the counters."""
        with self._mutex:
            return Metrics(
                queued=sum(len(waiting) for waiting in self._queues),
                retrying=len(self._retries),
                processing=self._processing,
                completed=self._completed,
                failed=self._failed,
                retried=self._retried,
            )

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every accepted job has finished; False if ``timeout`` expired first.

        Retries count: a job waiting out its backoff is not finished.  From
        inside a handler it raises ``RuntimeError``: it would wait for its
        own job forever.
        """
        check_timeout(timeout)
        refuse_inside_handler(self._in_handler, "join()")
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._all_done:
            while self._unfinished:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._all_done.wait(wait_seconds(remaining))
            return True

    def close(self) -> None:
        """Stop intake, start no new job, and wait for the jobs in flight.

        Fix: waits up to ``shutdown_timeout`` seconds for running handlers.
        Problem: jobs still queued or waiting to retry are dropped, with a
        warning (call ``join()`` first to drain them), and a crash loses them
        all: nothing survives a restart.  Idempotent.
        """
        me = threading.current_thread()
        with self._mutex:
            if not self._closed:
                self._closed = True
                dropped = sum(len(waiting) for waiting in self._queues) + len(self._retries)
                for waiting in self._queues:
                    waiting.clear()
                self._retries.clear()
                if dropped:
                    logger.warning("close() dropped %d queued jobs; call join() first", dropped)
                    self._finish(dropped)
                self._not_empty.notify_all()
                for not_full in self._not_full:
                    not_full.notify_all()  # blocked producers raise QueueClosed
                self._room.notify_all()
        deadline = time.monotonic() + self._config.shutdown_timeout
        for worker in self._workers:
            if worker is not me:  # close() from a handler
                worker.join(wait_seconds(max(0.0, deadline - time.monotonic())))
        running = sum(worker.is_alive() for worker in self._workers if worker is not me)
        if running:
            logger.warning(
                "close(): %d jobs still running after shutdown_timeout=%ss",
                running,
                self._config.shutdown_timeout,
            )

    # -- used by the workers ----------------------------------------------------

    def _next_job(self) -> _Entry | None:
        """Block until a job is ready and take it; None tells the worker to exit."""
        with self._mutex:
            return self._take()

    def _take(self) -> _Entry | None:
        """The body of ``_next_job``, for a caller that holds the mutex already."""
        while True:
            # Exit if the queue is closed: a graceful close() waits for the
            # jobs in flight, but starts no new one.
            if self._closed:
                return None
            now = time.monotonic()
            while self._retries and self._retries[0][0] <= now:
                _, _, due = heapq.heappop(self._retries)
                # Past the bound on purpose: this job was accepted already.
                self._queues[due.job.priority].append(due)
            # Fix: strict priority, HIGH first.
            # Problem: under a flood of HIGH jobs, a LOW job waits forever.
            priority = next((p for p, waiting in enumerate(self._queues) if waiting), None)
            if priority is not None:
                entry = self._queues[priority].popleft()
                self._processing += 1
                self._not_full[priority].notify()
                if self._batches_waiting:
                    self._room.notify_all()
                return entry
            # Nothing ready: sleep until a notify, or until the next retry is due.
            self._not_empty.wait(self._retries[0][0] - now if self._retries else None)

    def _job_done(self, entry: _Entry, error: BaseException | None) -> None:
        """Record the outcome of one run: success, a retry, or failure for good."""
        job = entry.job
        attempts = job.attempts + 1  # runs used, this one included
        retry = (
            error is not None
            and attempts <= self._config.max_retries
            and not isinstance(error, PermanentFailure)  # the handler said: never again
        )
        delay = self._config.retry_delay(attempts) if retry else 0.0
        retry_in = delay if retry else None  # None: failed for good
        now = time.monotonic()
        # Log before taking the mutex: a slow log handler must not hold up every worker.
        if error is not None:
            log_failed_run(logger, job, attempts, error, retry_in)
        with self._mutex:
            self._processing -= 1
            if error is None:
                self._completed += 1
            elif retry and not self._closed:
                again = _Entry(replace(job, attempts=attempts), entry.handler)
                heapq.heappush(self._retries, (now + delay, next(self._tie), again))
                self._retried += 1
                self._not_empty.notify()  # a sleeping worker may need a shorter timeout
                return  # not finished: it runs again
            elif retry:  # closed: close() starts nothing new, a retry neither
                logger.warning("job %r failed during close(); dropped, not retried", job.id)
            else:
                self._failed += 1
            self._finish()

    def _finish(self, count: int = 1) -> None:
        """Mark ``count`` jobs finished.  Caller holds the mutex."""
        self._unfinished -= count
        if self._unfinished == 0:
            self._all_done.notify_all()


def _worker(jq: JobQueue) -> None:
    """Take the most urgent ready job and run it, until close()."""
    entry = jq._next_job()
    while entry is not None:
        job = jq._in_handler.job = entry.job
        try:
            entry.handler(job.payload)
        except BaseException as exc:
            # A failing handler never kills a worker, whatever it raised.
            log_base_exception(logger, job, exc)
            jq._job_done(entry, exc)
        else:
            jq._job_done(entry, None)
        entry = jq._next_job()
