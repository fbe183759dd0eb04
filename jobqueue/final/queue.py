"""Stage 3 of 3: the final job queue, ready for production.

Builds on: ``jobqueue.improved``.
Adds, one fix per improved problem:

- No starvation: token fairness; a waiting LOW job runs after at most
  ``fairness_tokens`` HIGH jobs (``fairness.py``).
- Status by id, over the whole life of a job (``status.py``).
- Persistence: with ``persist_path``, a log (``log/``, behind the ``Storage``
  seam of ``storage.py``; what the queue writes when: ``records.py``) that a
  restart runs again (``recovery.py``): queued jobs, jobs in flight at a
  crash, retries with their attempts and remaining backoff.  Delivery is at
  least once (docs/durability.md).
- Metrics per priority and worker utilization (``metrics.py``).

For users and operators, each in its own module (``queue.py`` only calls
into them): futures (``futures.py``), cancel (``cancellation.py``), delayed
jobs (``schedule.py``), dead letters (``dead.py``), wait age (``waits.py``),
pause and resume (``pause.py``), structured log fields (``logfields.py``);
outside the queue, a Prometheus collector (``prometheus.py``) and graceful
stop on a signal (``signals.py``).

Go would give each priority a channel and ``select`` over them.  Python has
no ``select`` over queues: a worker blocked in ``high.get()`` cannot also wake
for ``low``.  So the three queues are plain deques under ONE mutex, and
workers wait on one Condition, ``not_empty``, that means "some deque has a
job".  One lock also keeps the counters exact without atomics: every counter
changes under the same mutex as the state it counts.

Four speed shortcuts keep it fast; ``speed.py`` fences them, each with the
figure that pays for it, so that a diff against ``improved`` shows the fixes.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import replace
from types import TracebackType
from typing import Self

from jobqueue import vocabulary
from jobqueue.final import cancellation, dead, futures, pause, records, recovery, schedule
from jobqueue.final.config import FSYNC_POLICIES, Config, final_config
from jobqueue.final.context import enter_worker
from jobqueue.final.dead import DeadJob, DeadLetters
from jobqueue.final.fairness import FairPicker
from jobqueue.final.handlers import Handlers
from jobqueue.final.logfields import job_fields, log_failed_run
from jobqueue.final.metrics import Counters, Metrics, PriorityMetrics
from jobqueue.final.speed import Condition as _Condition
from jobqueue.final.speed import Entry as _Entry
from jobqueue.final.speed import new_mutex
from jobqueue.final.status import StatusBook
from jobqueue.final.storage import Storage, open_storage
from jobqueue.final.waits import WaitTimes
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
    refuse_inside_handler,
    wait_seconds,
)

__all__ = ["FSYNC_POLICIES", "Config", "DeadJob", "JobQueue", "Metrics", "PriorityMetrics"]
__all__ += vocabulary.__all__

logger = logging.getLogger(__name__)

# -- public types: Job, Priority and Status come from jobqueue.vocabulary,
#    Config from config.py, Metrics and PriorityMetrics from metrics.py.


# -- errors: the shared hierarchy in jobqueue.vocabulary.


class JobQueue:
    """A fixed pool of worker threads draining three bounded priority queues, fairly."""

    def __new__(cls, config: vocabulary.Config | None = None) -> JobQueue:
        # Config(postgres_url=...) gets the queue that processes share (final/postgres/).
        if cls is JobQueue and getattr(config, "postgres_url", None) is not None:
            from jobqueue.final.postgres import PostgresJobQueue

            return super().__new__(PostgresJobQueue)
        return super().__new__(cls)

    def __init__(self, config: vocabulary.Config | None = None) -> None:
        self._config = config = final_config(config)
        # Fix: one bounded deque per priority, indexed by Priority (HIGH = 0).
        self._queues: tuple[deque[_Entry], ...] = tuple(deque() for _ in Priority)
        self._reserved = [0] * len(Priority)  # slots held by enqueues writing to storage
        # Jobs waiting out a backoff, or for their run_at: a heap of (due, tie-breaker, entry).
        self._retries: list[tuple[float, int, _Entry]] = []
        self._retrying = [0] * len(Priority)
        self._tie = itertools.count()  # keeps heap order FIFO for equal due times
        self._picker = FairPicker(config.fairness_tokens)  # Fix: fair priority
        self._statuses = StatusBook(config.status_history)  # Fix: status by id
        self._handlers = Handlers(config)
        self._dead = DeadLetters(config.status_history)  # operators: dead()/requeue()
        self._pauses = pause.Pauses()  # operators: pause()/resume()
        self._waits = WaitTimes()  # operators: wait percentiles in metrics()
        self._mutex = new_mutex()  # polls rather than sleeps: speed.py
        # Waiters: workers.  Notified by enqueue(), by a failed job's retry
        # (a new earliest due time), and by close().
        self._not_empty = _Condition(self._mutex)
        # Waiters: producers blocked on a full queue, one Condition per priority
        # so freeing a LOW slot does not wake HIGH producers.  Notified by a
        # worker taking a job of that priority, and by close().
        self._not_full = tuple(_Condition(self._mutex) for _ in Priority)
        # Waiters: enqueue_many() batches waiting for room for all their jobs.
        # Notified (all) by a worker taking a job while one waits, and by close().
        self._room = threading.Condition(self._mutex)
        self._batches_waiting = 0
        # Waiters: join().  Notified when the last unfinished job ends.
        self._all_done = threading.Condition(self._mutex)
        self._unfinished = 0  # accepted (or being written), neither finished nor dropped
        self._counters = Counters(time.monotonic())
        self._closed = False
        self._log_closer: threading.Thread | None = None  # see close()
        self._in_handler = threading.local()  # .job: the job a worker thread is running
        self._storage: Storage = open_storage(config)  # Fix: persistence
        self._durable = config.persist_path is not None
        recovery.restore(self)  # before any worker starts
        self._workers = [
            threading.Thread(target=_worker, args=(self,), name=f"jobqueue-final-{i}")
            for i in range(config.num_workers)
        ]
        for worker in self._workers:
            worker.start()

    def __enter__(self) -> Self:  # Self: PostgresJobQueue inherits it as it is
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
        ``timeout`` seconds pass first, ``QueueClosed`` after ``close()``,
        ``DuplicateJobError`` if a job with this id is still live, and
        ``PersistenceError`` if the log cannot record it.  When it returns,
        the job is accepted: with ``persist_path``, it is in the log.
        """
        self._accept(_Entry(*self._handlers.resolve(job, None)), timeout)

    def enqueue_with_handler(
        self, job: Job, handler: Handler | None, timeout: float | None = None
    ) -> None:
        """Add ``job``, to be run by ``handler`` (or the job's own, if None).

        With ``persist_path``, ``handler`` must be ``Config.handler`` or one
        of ``Config.handlers``: after a restart the job finds it by name.
        """
        self._accept(_Entry(*self._handlers.resolve(job, handler)), timeout)

    def _accept(self, entry: _Entry, timeout: float | None, requeue: bool = False) -> None:
        """The body of ``enqueue``, ``submit`` and ``requeue``."""
        job = entry.job
        check_timeout(timeout)
        waiting = self._queues[job.priority]
        not_full = self._not_full[job.priority]
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._mutex:
            # Fix: backpressure.  Wait for room, on a deadline, re-checking the
            # predicate after every wake-up: another producer may have won the slot.
            while (
                not self._closed
                and len(waiting) + self._reserved[job.priority] >= self._config.queue_size
            ):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise QueueFull(
                        f"cannot enqueue job {job.id!r}: the {job.priority.name} queue "
                        f"is full ({self._config.queue_size} jobs) after {timeout}s"
                    )
                not_full.wait(wait_seconds(remaining))
            if self._closed:
                raise QueueClosed(f"cannot enqueue job {job.id!r}: the queue is closed")
            self._statuses.take(job.id)  # Fix: status by id.  DuplicateJobError if live
            self._unfinished += 1
            if not self._durable:
                self._admit(entry)
                return
            self._reserved[job.priority] += 1  # Fix: persistence (records.py)
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
        """Add every job of ``jobs``, each run by the handler it names: all or none.

        Waits for room for the whole batch; raises ``ValueError`` if one
        priority's share exceeds ``queue_size``, ``DuplicateJobError`` if an
        id is in the batch twice or still live, and as ``enqueue`` otherwise.
        With ``persist_path``, the batch costs one write (one fsync under "always").
        """
        entries = [_Entry(*self._handlers.resolve(job, None)) for job in jobs]
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
        batch = [entry.job for entry in entries]
        records.write_ahead(self, entries, self._storage.enqueued_many, batch)

    def submit(self, job: Job, timeout: float | None = None) -> futures.JobFuture:
        """``enqueue(job)``, and a Future of its outcome, local to this process (``futures.py``)."""
        return futures.submit(self, job, timeout, cancellation.cancel)

    def cancel(self, job_id: str) -> bool:
        """True if a queued, scheduled or retrying job will now never run, even after a
        restart; False if it is running, finished or unknown (``cancellation.py``)."""
        return cancellation.cancel(self, job_id, None)

    def status(self, job_id: str) -> Status | None:
        """Fix: status by id.  None for an id this queue never saw (or forgot)."""
        with self._mutex:
            return self._statuses.get(job_id)

    def metrics(self) -> Metrics:
        """A consistent snapshot: totals, per-priority counters, worker utilization."""
        with self._mutex:
            return self._counters.snapshot(
                queued=[len(waiting) for waiting in self._queues],
                retrying=list(self._retrying),
                workers=self._config.num_workers,
                now=time.monotonic(),
                oldest=[waiting[0].queued if waiting else 0.0 for waiting in self._queues],
                waits=self._waits,
                paused=self._pauses.frozen(),
            )

    def dead(self, limit: int = 100) -> list[DeadJob]:
        """Up to ``limit`` jobs that failed for good, newest first (``dead.py``)."""
        with self._mutex:
            return self._dead.newest(limit)

    def requeue(self, job_id: str, timeout: float | None = None) -> bool:
        """Queue a dead job again, QUEUED with its attempts reset; False if ``job_id``
        is not a dead job (or is live again).  Blocks for room like ``enqueue``."""
        return dead.requeue(self, job_id, timeout)

    def pause(self, priority: Priority | None = None) -> None:
        """Start no new job of ``priority`` (of any, if None); enqueues go on (``pause.py``)."""
        pause.pause(self, priority, True)

    def resume(self, priority: Priority | None = None) -> None:
        """Undo ``pause``: ``priority``'s jobs (every one's, if None) start again."""
        pause.pause(self, priority, False)

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every accepted job has finished; False if ``timeout`` expired first.

        Retries and delayed jobs count: a job waiting out its backoff, or for
        its ``run_at``, is not finished.  From inside a handler it raises
        ``RuntimeError``: it would wait for its own job forever.
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
            if me in self._workers:
                # A handler closes its own queue: closing the log now would lose
                # its job's outcome, and the job would run again after a clean
                # restart.  Its worker closes the log once that is written.
                self._log_closer = me
        for job_id, future in orphans:
            futures.abandoned(future, job_id, self._durable)
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
        if self._log_closer is None:
            self._storage.close()

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
            waiting: Sequence[object] = self._queues
            if self._pauses.any:  # fairness among what is not paused
                waiting = self._pauses.mask(waiting)
            priority = self._picker.choose(waiting)
            if priority is not None:
                entry = self._queues[priority].popleft()
                entry.started = now
                self._waits.recent[priority].append(now - entry.queued)
                self._statuses.set(entry.job.id, Status.PROCESSING)
                self._counters.run_started(priority, now)
                self._not_full[priority].notify()
                if self._batches_waiting:
                    self._room.notify_all()
                return entry
            # Nothing ready: sleep until a notify, or until the next retry is due.
            # (wait_seconds: a job may be scheduled for the year 9999.)
            self._not_empty.wait(wait_seconds(self._retries[0][0] - now) if self._retries else None)

    def _job_done(
        self, entry: _Entry, error: BaseException | None, result: object = None
    ) -> _Entry | None:
        """Record the outcome of one run: success, a retry, or failure for good.

        Returns the worker's next job, as ``_next_job`` would: shortcut 3 of
        ``speed.py``.  ``result`` is the handler's return value, for ``submit()``.
        """
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
        if error is not None:
            log_failed_run(
                logger, job, attempts, error, delay=retry_in, duration=now - entry.started
            )
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
        # Unlocked: a future's callbacks may call this queue.
        futures.settle(
            entry.future, job.id, error, result, dropped_retry=retry, durable=self._durable
        )
        return self._next_job()

    def _finish(self, count: int = 1) -> None:
        """Mark ``count`` jobs finished.  Caller holds the mutex."""
        self._unfinished -= count
        if self._unfinished == 0:
            self._all_done.notify_all()


def _worker(jq: JobQueue) -> None:
    """Take the next job, fairly, and run it, until close()."""
    slot = enter_worker(jq)  # current_job(): context.py
    entry = jq._next_job()
    while entry is not None:
        job = jq._in_handler.job = slot.job = entry.job
        if jq._storage.records_starts:  # neither the log nor memory records a start
            records.record_start(jq._storage, job)
        try:
            result = entry.handler(job.payload)
        except BaseException as exc:
            # A failing handler never kills a worker, whatever it raised.
            slot.job = None
            log_base_exception(logger, job, exc, job_fields(job, job.attempts + 1))
            entry = jq._job_done(entry, exc)
        else:
            slot.job = None
            entry = jq._job_done(entry, None, result)
    if jq._log_closer is threading.current_thread():
        jq._storage.close()  # this handler called close(): its outcome is written now
