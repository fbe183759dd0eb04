"""Stage 3 of 3: the final job queue, ready for production.

Builds on: ``jobqueue.improved``.
Adds, one fix per remaining problem:

- No starvation: token fairness (``fairness_tokens``, default 10).  A waiting
  lower-priority job runs after at most that many HIGH jobs; see
  ``fairness.py`` for the rule and its bound.
- Status by id: ``status(job_id)`` over the whole life of a job (queued,
  processing, retrying, completed, failed).  An id that is still live cannot
  be enqueued twice.  Finished statuses are remembered up to
  ``status_history``, oldest forgotten first.
- Persistence: with ``persist_path`` every step of a job is written to a
  JSON-lines log (``log.py``), behind the small ``Storage`` seam
  (``storage.py``).  A restart replays the log: queued jobs, jobs in flight at
  a crash, and jobs waiting to retry (with their attempts and remaining
  backoff) all run again.  Delivery is at least once.
- Metrics per priority and worker utilization (``metrics.py``).
- Configurable workers, retries, backoff cap and jitter, history, fsync policy.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, fields, replace
from types import TracebackType

from jobqueue import vocabulary
from jobqueue.final.config import FSYNC_POLICIES, Config
from jobqueue.final.fairness import FairPicker
from jobqueue.final.handlers import Handlers
from jobqueue.final.metrics import Counters, Metrics, PriorityMetrics
from jobqueue.final.storage import MemoryStorage, Storage
from jobqueue.vocabulary import (
    DuplicateJobError,
    Handler,
    Job,
    JobQueueError,
    PersistenceError,
    Priority,
    QueueClosed,
    QueueFull,
    Status,
    check_timeout,
)

__all__ = [
    "FSYNC_POLICIES",
    "Config",
    "DuplicateJobError",
    "Job",
    "JobQueue",
    "JobQueueError",
    "Metrics",
    "PersistenceError",
    "Priority",
    "PriorityMetrics",
    "QueueClosed",
    "QueueFull",
    "Status",
]

logger = logging.getLogger(__name__)

# -- public types: Job, Priority and Status come from jobqueue.vocabulary;
#    Config (the settings only final has) from config.py;
#    Metrics and PriorityMetrics from metrics.py.


# -- errors: the shared hierarchy in jobqueue.vocabulary.


@dataclass(slots=True)  # not frozen: one is built per job, and a frozen __init__ costs 0.4 µs
class _Entry:
    """A job as it waits in the queue, with the handler that will run it."""

    job: Job
    handler: Handler


class JobQueue:
    """A fixed pool of worker threads draining three bounded priority queues, fairly."""

    def __new__(cls, config: vocabulary.Config | None = None) -> JobQueue:
        # Config(postgres_url=...) gets the queue that processes share (final/postgres/).
        if cls is JobQueue and getattr(config, "postgres_url", None) is not None:
            from jobqueue.final.postgres import PostgresJobQueue

            return super().__new__(PostgresJobQueue)
        return super().__new__(cls)

    def __init__(self, config: vocabulary.Config | None = None) -> None:
        self._config = config = _final_config(config)
        self._queues: tuple[deque[_Entry], ...] = tuple(deque() for _ in Priority)
        self._reserved = [0] * len(Priority)  # slots held by enqueues writing to storage
        self._retries: list[tuple[float, int, _Entry]] = []  # heap of (due, tie, entry)
        self._retrying = [0] * len(Priority)
        self._tie = itertools.count()  # keeps heap order FIFO for equal due times
        self._picker = FairPicker(config.fairness_tokens)
        self._live: dict[str, Status] = {}  # every unfinished job, by id
        self._finished: OrderedDict[str, Status] = OrderedDict()  # bounded history
        self._handlers = Handlers(config)
        self._mutex = threading.Lock()
        # Waiters: workers.  Notified by enqueue(), by a failed job's retry
        # (a new earliest due time), and by close().
        self._not_empty = threading.Condition(self._mutex)
        # Waiters: producers blocked on a full queue, one Condition per
        # priority.  Notified by a worker taking a job of that priority, by an
        # enqueue giving back its reserved slot, and by close().
        self._not_full = tuple(threading.Condition(self._mutex) for _ in Priority)
        # Waiters: join().  Notified when the last unfinished job ends.
        self._all_done = threading.Condition(self._mutex)
        # Who waits on not_empty and not_full, so that the common case, nobody,
        # skips notify(): a Python call that costs half a microsecond even then.
        self._idle_workers = 0
        self._blocked_producers = [0] * len(Priority)
        self._unfinished = 0  # accepted (or being accepted), not yet finished or dropped
        self._counters = Counters(time.monotonic())
        self._closed = False
        self._storage: Storage = _open_storage(config)
        try:
            self._recover()
        except BaseException:
            self._storage.close()
            raise
        self._workers = [
            threading.Thread(target=_worker, args=(self,), name=f"jobqueue-final-{i}")
            for i in range(config.num_workers)
        ]
        for worker in self._workers:
            worker.start()

    def __enter__(self) -> JobQueue:
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
        self.enqueue_with_handler(job, None, timeout)

    def enqueue_with_handler(
        self, job: Job, handler: Handler | None, timeout: float | None = None
    ) -> None:
        """Add ``job``, to be run by ``handler``.

        With ``persist_path``, ``handler`` must be ``Config.handler`` or one
        of ``Config.handlers``: after a restart the job finds its handler by
        name, and a function that has no name cannot be found.
        """
        job, run = self._handlers.resolve(job, handler)
        entry = _Entry(job, run)
        check_timeout(timeout)
        priority = job.priority
        waiting = self._queues[priority]
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._mutex:
            while (
                not self._closed
                and len(waiting) + self._reserved[priority] >= self._config.queue_size
            ):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise QueueFull(
                        f"cannot enqueue job {job.id!r}: the {priority.name} queue "
                        f"is full ({self._config.queue_size} jobs) after {timeout}s"
                    )
                self._blocked_producers[priority] += 1
                try:
                    self._not_full[priority].wait(remaining)
                finally:
                    self._blocked_producers[priority] -= 1
            if self._closed:
                raise QueueClosed(f"cannot enqueue job {job.id!r}: the queue is closed")
            if job.id in self._live:
                raise DuplicateJobError(
                    f"cannot enqueue job {job.id!r}: it is still {self._live[job.id].value}"
                )
            # Reserve the slot and the id, then write outside the mutex: the
            # write gives up the GIL, and workers must not block on this mutex
            # meanwhile; with fsync="always", producers also share an fsync.
            self._reserved[priority] += 1
            self._live[job.id] = Status.QUEUED
            self._unfinished += 1
        try:
            self._storage.enqueued(job)  # the acknowledgement
        except BaseException as exc:
            with self._mutex:
                self._reserved[priority] -= 1
                del self._live[job.id]
                self._not_full[priority].notify()
                self._finish()
                closed = self._closed
            if closed and isinstance(exc, PersistenceError):  # close() shut the log under us
                raise QueueClosed(f"cannot enqueue job {job.id!r}: the queue is closed") from exc
            raise
        with self._mutex:
            self._reserved[priority] -= 1
            if self._closed:
                # close() ran while the log was written: the job is in the log
                # (it runs after a restart), but this queue starts nothing new.
                self._not_full[priority].notify()
                self._finish()
                return
            waiting.append(entry)
            self._finished.pop(job.id, None)  # now live: its old finished status is history
            if self._idle_workers:
                self._not_empty.notify()

    def status(self, job_id: str) -> Status | None:
        """The job's current status, or None for an id this queue never saw (or forgot)."""
        with self._mutex:
            return self._live.get(job_id) or self._finished.get(job_id)

    def metrics(self) -> Metrics:
        """A consistent snapshot: totals, per-priority counters, worker utilization."""
        with self._mutex:
            return self._counters.snapshot(
                queued=[len(waiting) for waiting in self._queues],
                retrying=list(self._retrying),
                workers=self._config.num_workers,
                now=time.monotonic(),
            )

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every accepted job has finished; False if ``timeout`` expired first.

        Retries count: a job waiting out its backoff is not finished.
        """
        check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._all_done:
            while self._unfinished:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._all_done.wait(remaining)
            return True

    def close(self) -> None:
        """Stop intake, start no new job, wait for the jobs in flight, close the log.

        Waits up to ``shutdown_timeout`` seconds for running handlers.  Jobs
        still queued or waiting to retry stay in the log and run after a
        restart; without ``persist_path`` they are dropped, with a warning:
        call ``join()`` first to drain them.  Idempotent.
        """
        with self._mutex:
            if not self._closed:
                self._closed = True
                dropped = sum(len(waiting) for waiting in self._queues) + len(self._retries)
                for waiting in self._queues:
                    waiting.clear()
                self._retries.clear()
                self._retrying = [0] * len(Priority)
                if dropped:
                    if self._config.persist_path is None:
                        logger.warning("close() dropped %d queued jobs; call join() first", dropped)
                    self._finish(dropped)
                self._not_empty.notify_all()
                for not_full in self._not_full:
                    not_full.notify_all()  # blocked producers raise QueueClosed
        deadline = time.monotonic() + self._config.shutdown_timeout
        for worker in self._workers:
            if worker is not threading.current_thread():  # close() from a handler
                worker.join(max(0.0, deadline - time.monotonic()))
        running = sum(worker.is_alive() for worker in self._workers)
        if running:
            logger.warning(
                "close(): %d jobs still running after shutdown_timeout=%ss",
                running,
                self._config.shutdown_timeout,
            )
        self._storage.close()

    # -- set-up -------------------------------------------------------------------

    def _recover(self) -> None:
        """Rebuild the queue from storage.  Runs before any worker starts."""
        now_wall, now = time.time(), time.monotonic()
        unrunnable: list[str] = []
        for stored in self._storage.recover():
            job = stored.job
            if stored.status.finished:
                self._remember_finished(job.id, stored.status)
                continue
            try:
                entry = _Entry(job, self._handlers.for_job(job))
            except ValueError as exc:
                unrunnable.append(str(exc))
                continue
            self._live[job.id] = stored.status
            self._unfinished += 1
            if stored.status is Status.RETRYING and stored.retry_at is not None:
                due = now + max(0.0, stored.retry_at - now_wall)
                heapq.heappush(self._retries, (due, next(self._tie), entry))
                self._retrying[job.priority] += 1
            else:  # QUEUED, or PROCESSING when the process died: run it again
                self._live[job.id] = Status.QUEUED
                self._queues[job.priority].append(entry)  # past the bound: already accepted
        if unrunnable:
            raise PersistenceError(
                f"{self._config.persist_path}: {len(unrunnable)} recovered jobs cannot run, "
                f"so the queue will not start (they stay in the log): {unrunnable[0]}"
            )
        if self._live:
            logger.info(
                "recovered %d unfinished jobs from %s", len(self._live), self._config.persist_path
            )

    # -- used by the workers ----------------------------------------------------

    def _next_job(self) -> tuple[_Entry, float] | None:
        """Block until a job is ready and take it, with its start time.

        None tells the worker to exit.
        """
        with self._mutex:
            return self._take()

    def _take(self) -> tuple[_Entry, float] | None:
        """The body of ``_next_job``, for a caller that holds the mutex already."""
        while True:
            # Exit if the queue is closed: a graceful close() waits for the
            # jobs in flight, but starts no new one.
            if self._closed:
                return None
            now = time.monotonic()
            while self._retries and self._retries[0][0] <= now:
                _, _, due = heapq.heappop(self._retries)
                self._retrying[due.job.priority] -= 1
                # Past the bound on purpose: this job was accepted already.
                self._queues[due.job.priority].append(due)
                self._live[due.job.id] = Status.QUEUED
            # Fix: fair priority.  The picker bounds how long LOW can wait.
            priority = self._picker.choose([len(waiting) for waiting in self._queues])
            if priority is not None:
                entry = self._queues[priority].popleft()
                self._live[entry.job.id] = Status.PROCESSING
                self._counters.run_started(priority, now)
                if self._blocked_producers[priority]:
                    self._not_full[priority].notify()
                return entry, now
            # Nothing ready: sleep until a notify, or until the next retry is due.
            self._idle_workers += 1
            try:
                self._not_empty.wait(self._retries[0][0] - now if self._retries else None)
            finally:
                self._idle_workers -= 1

    def _record_start(self, entry: _Entry) -> None:
        try:
            self._storage.started(entry.job.id, entry.job.attempts + 1)
        except PersistenceError as exc:  # a lost start record only means a re-run after a crash
            logger.warning("job %r: could not record its start: %s", entry.job.id, exc)

    def _job_done(
        self, entry: _Entry, started: float, error: Exception | None
    ) -> tuple[_Entry, float] | None:
        """Record the outcome of one run (success, a retry, or failure for good),
        then take the worker's next job in the same critical section: one
        mutex round per job, not two.  Returns what ``_next_job`` would.

        Storage first, memory second: the job's id stays live until its last
        record is written, so a re-enqueue of the same id cannot be logged
        before this job's end (which would hide it on replay).
        """
        job = entry.job
        priority = job.priority
        attempts = job.attempts + 1  # runs used, this one included
        retry = error is not None and attempts <= self._config.max_retries
        delay = self._retry_delay(attempts) if retry else 0.0
        try:
            if error is None:
                self._storage.completed(job.id)
            elif retry:
                self._storage.retrying(job.id, attempts, time.time() + delay, repr(error))
            else:
                self._storage.failed(job.id, attempts, repr(error))
        except PersistenceError as exc:  # it runs again after a restart: at least once
            logger.warning("job %r: could not record its outcome: %s", job.id, exc)
        if error is not None and retry:
            logger.info("job %r failed (%r); retry %d in %.3gs", job.id, error, attempts, delay)
        elif error is not None:
            logger.error("job %r failed for good after %d attempts: %r", job.id, attempts, error)
        now = time.monotonic()
        scheduled = False  # a retry is: the job is not finished
        with self._mutex:
            self._counters.run_ended(priority, started, now)
            if error is None:
                self._counters.completed[priority] += 1
                self._remember_finished(job.id, Status.COMPLETED)
            elif retry and not self._closed:
                # Only a retry needs the new count in the Job: replace() re-runs
                # Job's validation, too dear for the common path.
                again = _Entry(replace(job, attempts=attempts), entry.handler)
                heapq.heappush(self._retries, (now + delay, next(self._tie), again))
                self._retrying[priority] += 1
                self._counters.retried[priority] += 1
                self._live[job.id] = Status.RETRYING
                scheduled = True
                if self._idle_workers:  # a sleeping worker may need a shorter timeout
                    self._not_empty.notify()
            elif retry:  # closed: the log remembers the retry; memory drops it
                self._live.pop(job.id, None)
            else:
                self._counters.failed[priority] += 1
                self._remember_finished(job.id, Status.FAILED)
            if not scheduled:
                self._finish()
            return self._take()  # may wait: log nothing after it

    def _retry_delay(self, retry: int) -> float:
        delay = self._config.retry_delay(retry)
        jitter = self._config.retry_jitter
        # Jitter spreads retries that failed together, so they don't return together.
        return delay * random.uniform(1 - jitter, 1 + jitter) if jitter else delay

    def _remember_finished(self, job_id: str, status: Status) -> None:
        """Move a job to the bounded history.  Caller holds the mutex."""
        self._live.pop(job_id, None)
        self._finished[job_id] = status
        self._finished.move_to_end(job_id)
        while len(self._finished) > self._config.status_history:
            self._finished.popitem(last=False)

    def _finish(self, count: int = 1) -> None:
        """Mark ``count`` jobs finished.  Caller holds the mutex."""
        self._unfinished -= count
        if self._unfinished == 0:
            self._all_done.notify_all()


def _final_config(config: vocabulary.Config | None) -> Config:
    if config is None:
        return Config()
    if isinstance(config, Config):
        return config
    if isinstance(config, vocabulary.Config):  # a shared Config: take its fields as they are
        base_fields = {f.name: getattr(config, f.name) for f in fields(vocabulary.Config)}
        return Config(**base_fields)
    raise TypeError(f"config must be a Config, got {type(config).__name__}")


def _open_storage(config: Config) -> Storage:
    if config.persist_path is None:
        return MemoryStorage()
    from jobqueue.final.log import JobLog

    return JobLog(config.persist_path, fsync=config.fsync, history=config.status_history)


def _worker(jq: JobQueue) -> None:
    """Take the next job, fairly, and run it, until close() (``taken`` is None)."""
    taken = jq._next_job()
    while taken is not None:
        entry, started = taken
        jq._record_start(entry)
        try:
            entry.handler(entry.job.payload)
        except Exception as exc:
            # A failing handler never kills a worker.
            taken = jq._job_done(entry, started, exc)
        else:
            taken = jq._job_done(entry, started, None)
