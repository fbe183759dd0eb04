"""Stage 3 of 3: the final job queue.

Builds on: ``jobqueue.improved``.
Adds, one fix per improved problem:

- Fair priority: a waiting LOW job runs after at most ``fairness_tokens``
  HIGH jobs (``fairness.py``).
- Status by id: ``status()`` follows a job from enqueue to its end (``status.py``).
- Persistence: with ``persist_path``, queued jobs and retry state are in a log
  (``records.py``) that a restart runs again (``recovery.py``), at least once.

Go would give each priority a channel and ``select`` over them.  Python has
no ``select`` over queues: a worker blocked in ``high.get()`` cannot also wake
for ``low``.  So the three queues are plain deques under ONE mutex, and
workers wait on one Condition, ``not_empty``, that means "some deque has a
job".  One lock also keeps the counters exact without atomics: every counter
changes under the same mutex as the state it counts.

Beside the fixes, fenced so that a diff shows them: the calls beyond
``improved``'s API (``extras.py``) and three speed shortcuts (``speed.py``).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import replace
from types import TracebackType
from typing import Self

from jobqueue import vocabulary
from jobqueue.final import context, extras, futures, records, recovery, schedule, speed
from jobqueue.final.config import Config, final_config
from jobqueue.final.fairness import FairPicker
from jobqueue.final.logfields import run_fields
from jobqueue.final.metrics import Counters, Metrics, queue_snapshot
from jobqueue.final.speed import Entry as _Entry
from jobqueue.final.status import StatusBook
from jobqueue.final.storage import open_storage
from jobqueue.vocabulary import *  # noqa: F403  (re-exported: see __all__)
from jobqueue.vocabulary import (
    Handler,
    Job,
    PermanentFailure,
    Priority,
    QueueClosed,
    QueueFull,
    Status,
    batch_shares,
    check_timeout,
    log_base_exception,
    log_failed_run,
    refuse_inside_handler,
    wait_seconds,
)

__all__ = ["Config", "JobQueue", "Metrics"]
__all__ += vocabulary.__all__

logger = logging.getLogger(__name__)

# -- public types: Job, Priority, Status from jobqueue.vocabulary; Config, Metrics: final's.


# -- errors: the shared hierarchy in jobqueue.vocabulary.


class JobQueue(extras.Extras):
    """A fixed pool of worker threads draining three bounded priority queues."""

    def __init__(self, config: vocabulary.Config | None = None) -> None:
        self._config = config = final_config(config)
        # Fix: one bounded deque per priority, indexed by Priority (HIGH = 0).
        self._queues: tuple[deque[_Entry], ...] = tuple(deque() for _ in Priority)
        # Jobs waiting out a backoff, or for their run_at: a heap of (due, tie-breaker, entry).
        self._retries: list[tuple[float, int, _Entry]] = []
        self._tie = itertools.count()  # keeps heap order FIFO for equal due times
        self._mutex = speed.new_mutex()  # polls rather than sleeps: speed.py
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
        self._counters = Counters(time.monotonic())  # per priority, with waits: metrics.py
        self._picker = FairPicker(config.fairness_tokens)  # Fix: fair priority
        self._statuses = StatusBook(config.status_history)  # Fix: status by id
        self._closed = False
        self._in_handler = threading.local()  # .job: the job a worker thread is running
        self._storage = open_storage(config)  # Fix: persistence
        self._durable = config.persist_path is not None
        self._reserved = [0] * len(Priority)  # slots held by enqueues writing to the log
        self._log_closer: threading.Thread | None = None  # records.close_log()
        self._open_extras(config)  # handlers, dead letters, pauses, retrying: extras.py
        recovery.restore(self)  # before any worker starts
        self._workers = [
            threading.Thread(target=_worker, args=(self,), name=f"jobqueue-final-{i}")
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
        """Add ``job``, to be run by the handler it names, or ``Config.handler``.

        Blocks while the job's priority queue is full; raises ``QueueFull`` if
        ``timeout`` seconds pass first, ``QueueClosed`` after ``close()``.
        Fix: status by id, so ``DuplicateJobError`` if this id is still live.
        Fix: persistence.  With ``persist_path``, the job is in the log when this
        returns; ``PersistenceError`` if the log cannot record it, ``ValueError``
        if its handler is not one of ``Config.handlers``: a restart finds it by name.
        """
        self._accept(self._entry(job, None), timeout)

    def enqueue_with_handler(
        self, job: Job, handler: Handler | None, timeout: float | None = None
    ) -> None:
        """Add ``job``, to be run by ``handler`` (if None, as ``enqueue`` says)."""
        self._accept(self._entry(job, handler), timeout)

    def _entry(self, job: Job, handler: Handler | None) -> _Entry:
        """``job`` and the handler that will run it, both checked."""
        return _Entry(*self._handlers.resolve(job, handler))  # handlers.py: by name, too

    def _accept(self, entry: _Entry, timeout: float | None, requeue: bool = False) -> None:
        """The body of ``enqueue`` and ``enqueue_with_handler`` (and ``submit``, ``requeue``)."""
        job = entry.job
        check_timeout(timeout)
        waiting = self._queues[job.priority]
        not_full = self._not_full[job.priority]
        size = self._config.queue_size
        reserved = self._reserved  # slots held by enqueues writing to the log
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._mutex:
            # Fix: backpressure.  Wait for room, on a deadline, re-checking the
            # predicate after every wake-up: another producer may have won the slot.
            while not self._closed and len(waiting) + reserved[job.priority] >= size:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise QueueFull(
                        f"cannot enqueue job {job.id!r}: the {job.priority.name} queue "
                        f"is full ({size} jobs) after {timeout}s"
                    )
                not_full.wait(wait_seconds(remaining))
            if self._closed:
                raise QueueClosed(f"cannot enqueue job {job.id!r}: the queue is closed")
            self._statuses.take(job.id)  # Fix: status by id.  DuplicateJobError if live
            self._unfinished += 1
            if not self._durable:
                self._admit(entry)
                return
            reserved[job.priority] += 1  # Fix: persistence (records.py)
        record = self._storage.requeued if requeue else self._storage.enqueued
        records.write_ahead(self, [entry], record, job)

    def _admit(self, entry: _Entry) -> None:
        """Queue an accepted job, or schedule it (``schedule.py``).  Caller holds the mutex."""
        self._statuses.accepted(entry.job.id)
        self._dead.pop(entry.job.id, None)  # a dead id enqueued again is live, not dead
        entry.queued = time.monotonic()
        if entry.job.run_at is None or not schedule.schedule(self, entry):
            self._queues[entry.job.priority].append(entry)
            self._not_empty.notify()

    def enqueue_many(self, jobs: Iterable[Job], timeout: float | None = None) -> None:
        """Add every job of ``jobs``, all or none, each run as ``enqueue`` would run it.

        Waits for room for the whole batch; raises ``ValueError`` if one
        priority's share exceeds ``queue_size``, and as ``enqueue`` otherwise.
        Fix: status by id, so a duplicate id raises ``DuplicateJobError``.
        """
        entries = [self._entry(job, None) for job in jobs]
        check_timeout(timeout)
        shares = batch_shares([e.job for e in entries], self._config.queue_size, unique_ids=True)
        queues, size = self._queues, self._config.queue_size
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._mutex:
            # Room for all of it at once, or two half-placed batches could wait for each other.
            while not self._closed and any(
                n and len(queues[p]) + self._reserved[p] + n > size for p, n in enumerate(shares)
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
            self._statuses.take_all([entry.job.id for entry in entries])  # all or none
            self._unfinished += len(entries)
            if not self._durable:
                for entry in entries:
                    self._admit(entry)
                return
            for p, n in enumerate(shares):
                self._reserved[p] += n
        # Fix: persistence.  One write for the batch (one fsync under "always").
        records.write_ahead(self, entries, self._storage.enqueued_many, [e.job for e in entries])

    def status(self, job_id: str) -> Status | None:
        """Fix: status by id.  None for an id this queue never saw (or forgot)."""
        with self._mutex:
            return self._statuses.get(job_id)

    def metrics(self) -> Metrics:
        """A consistent snapshot: totals, per-priority counters, worker utilization."""
        with self._mutex:
            return queue_snapshot(self)

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every accepted job has finished; False if ``timeout`` expired first.

        Retries count: a job waiting out its backoff is not finished.  From
        inside a handler it raises ``RuntimeError``: it would wait for its
        own job forever.  A delayed job counts until it ran: ``Job.run_at``.
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
        Fix: jobs still queued or waiting to retry stay in the log and run
        after a restart; only without ``persist_path`` are they dropped, with a
        warning (call ``join()`` first to drain them).  Idempotent.
        """
        me = threading.current_thread()
        orphans = []
        with self._mutex:
            if not self._closed:
                self._closed = True
                dropped = sum(len(waiting) for waiting in self._queues) + len(self._retries)
                orphans = futures.of(self._queues, self._retries)  # resolved below
                for waiting in self._queues:
                    waiting.clear()
                self._retries.clear()
                self._retrying = [0] * len(Priority)
                if dropped:
                    if not self._durable:
                        logger.warning("close() dropped %d queued jobs; call join() first", dropped)
                    self._finish(dropped)
                self._not_empty.notify_all()
                for not_full in self._not_full:
                    not_full.notify_all()  # blocked producers raise QueueClosed
                self._room.notify_all()
        futures.abandon_all(orphans, self._durable)
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
        records.close_log(self)  # Fix: persistence.  Its worker does, if a handler called close()

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
                schedule.due(self, due, now)
                # Past the bound on purpose: this job was accepted already.
                self._queues[due.job.priority].append(due)
            # Fix: fair priority.  The picker bounds how long LOW can wait.
            priority = self._picker.choose(self._queues)  # paused priorities look empty
            if priority is not None:
                entry = self._queues[priority].popleft()
                self._statuses.set(entry.job.id, Status.PROCESSING)  # Fix: status by id
                self._counters.job_started(entry, now)
                self._not_full[priority].notify()
                if self._batches_waiting:
                    self._room.notify_all()
                return entry
            # Nothing ready: sleep until a notify, or until the next retry is due.
            # (wait_seconds: a job may be scheduled for the year 9999.)
            self._not_empty.wait(wait_seconds(self._retries[0][0] - now) if self._retries else None)

    def _job_done(self, entry: _Entry, error: BaseException | None) -> _Entry | None:
        """Record the outcome of one run, and take the worker's next job (``speed.py``, 2)."""
        job = entry.job
        attempts = job.attempts + 1  # runs used, this one included
        retry = (
            error is not None
            and attempts <= self._config.max_retries
            and not isinstance(error, PermanentFailure)  # the handler said: never again
        )
        delay = self._config.backoff(attempts) if retry else 0.0
        retry_in = delay if retry else None  # None: failed for good
        dead = None  # Fix: persistence.  The log first, memory second (records.py).
        if self._durable or error is not None:
            dead = records.record_outcome(self._storage, job, attempts, error, retry_in)
        now = time.monotonic()
        # Log before taking the mutex: a slow log handler must not hold up every worker.
        if error is not None:
            log_failed_run(logger, job, attempts, error, retry_in, extra=run_fields(entry, now))
        with self._mutex:
            self._counters.run_ended(job.priority, entry.started, now)
            if error is None:
                self._counters.completed[job.priority] += 1
                self._statuses.finish(job.id, Status.COMPLETED)
            elif retry and not self._closed:
                again = _Entry(replace(job, attempts=attempts), entry.handler, future=entry.future)
                heapq.heappush(self._retries, (now + delay, next(self._tie), again))
                self._retrying[job.priority] += 1
                self._counters.retried[job.priority] += 1
                self._statuses.set(job.id, Status.RETRYING)
                self._not_empty.notify()  # a sleeping worker may need a shorter timeout
                return self._take()  # not finished: it runs again
            elif retry:  # closed: the log remembers the retry; memory drops it
                self._statuses.drop(job.id)
            else:
                self._counters.failed[job.priority] += 1
                self._statuses.finish(job.id, Status.FAILED)
                if dead is not None:
                    self._dead.add(dead)
            self._finish()
            if entry.future is None:
                return self._take()
        futures.settle(entry, error, dropped=retry, durable=self._durable)  # unlocked
        return self._next_job()

    def _finish(self, count: int = 1) -> None:
        """Mark ``count`` jobs finished.  Caller holds the mutex."""
        self._unfinished -= count
        if self._unfinished == 0:
            self._all_done.notify_all()


def _worker(jq: JobQueue) -> None:
    """Take the next job, fairly, and run it, until close()."""
    slot = context.enter_worker(jq)  # current_job()
    entry = jq._next_job()
    while entry is not None:
        job = jq._in_handler.job = slot.job = entry.job
        if jq._storage.records_starts:  # neither the log nor memory records a start
            records.record_start(jq._storage, job)
        try:
            entry.result = entry.handler(job.payload)
        except BaseException as exc:
            # A failing handler never kills a worker, whatever it raised.
            slot.job = None
            log_base_exception(logger, job, exc, run_fields(entry))
            entry = jq._job_done(entry, exc)
        else:
            slot.job = None
            entry = jq._job_done(entry, None)
    if jq._log_closer is threading.current_thread():
        jq._storage.close()  # this handler called close(): its outcome is written now
