"""Stage 1 of 3: the naive job queue.

Builds on: nothing but ``queue.Queue`` and a few threads.
Adds: the worker-pool pattern in its smallest form.  Workers block on one
shared queue, take jobs first in, first out, and call each job's handler.

It is wrong on purpose, and each problem is a lesson:

- No backpressure: the queue is unbounded, so ``enqueue`` never blocks and a
  fast producer grows memory without limit.
- No priorities: FIFO, so an urgent job waits behind every job before it.
- No retry: a handler that raises loses its job; the error is only logged.
- Poor shutdown: ``close()`` returns at once, while workers may still be
  running jobs.
- No metrics, no status by id, no persistence: ``metrics()`` and ``status()``
  raise ``NotImplementedError``.

``jobqueue.improved`` fixes the first four; ``jobqueue.final`` the rest.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import NoReturn, Self

from jobqueue import vocabulary
from jobqueue.vocabulary import *  # noqa: F403  (re-exported: see __all__)
from jobqueue.vocabulary import (
    Config,
    Handler,
    Job,
    NoJobHandles,
    QueueClosed,
    Status,
    check_timeout,
    not_in_stage,
    refuse_inside_handler,
    require_config,
    resolve_handler,
    wait_seconds,
)

__all__ = ["Config", "JobQueue"]
__all__ += vocabulary.__all__

logger = logging.getLogger(__name__)

# -- public types: Job, Priority, Status and Config come from jobqueue.vocabulary.
# -- errors: the shared hierarchy in jobqueue.vocabulary; naive never raises QueueFull.


@dataclass(frozen=True, slots=True)
class _Entry:
    """A job as it waits in the queue, with the handler that will run it."""

    job: Job
    handler: Handler


class JobQueue(NoJobHandles):  # submit() and cancel(): not before jobqueue.final
    """A fixed pool of worker threads draining one unbounded FIFO queue."""

    def __init__(self, config: Config | None = None) -> None:
        self._config = config = require_config(config)
        # Problem: no maxsize, so put() never blocks.  Nothing slows a producer down.
        self._jobs: queue.Queue[_Entry | None] = queue.Queue()
        self._mutex = threading.Lock()
        # Waiters: join().  Notified by a worker when the last unfinished job ends.
        self._all_done = threading.Condition(self._mutex)
        self._unfinished = 0  # accepted, neither finished nor dropped
        self._closed = False
        self._in_handler = threading.local()  # .job: the job a worker thread is running
        self._workers = [
            threading.Thread(target=_worker, args=(self,), name=f"jobqueue-naive-{i}")
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

        Never blocks: ``timeout`` is accepted for the common API, and unused.
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
        with self._mutex:
            if self._closed:
                raise QueueClosed(f"cannot enqueue job {job.id!r}: the queue is closed")
            self._unfinished += 1
            # Problem: never blocks, however many jobs are already waiting.
            self._jobs.put(entry)

    def enqueue_many(self, jobs: Iterable[Job], timeout: float | None = None) -> None:
        """Add every job of ``jobs``, all or none, to be run by ``Config.handler``.

        Every job is checked before any is put.  Never blocks, as ``enqueue``.
        """
        entries = [self._entry(job, None) for job in jobs]
        check_timeout(timeout)
        with self._mutex:
            if self._closed:
                raise QueueClosed(f"cannot enqueue {len(entries)} jobs: the queue is closed")
            self._unfinished += len(entries)
            # Problem: unbounded, so no batch is too big and none waits for room.
            for entry in entries:
                self._jobs.put(entry)

    def status(self, job_id: str) -> Status | None:
        """Not in this stage: it keeps no record of jobs by id."""
        not_in_stage(__name__, "status()", "jobqueue.final")

    def metrics(self) -> NoReturn:
        """Not in this stage: it counts nothing."""
        not_in_stage(__name__, "metrics()", "jobqueue.improved")

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every accepted job has finished; False if ``timeout`` expired first.

        From inside a handler it raises ``RuntimeError``: it would wait for
        its own job forever.
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
        """Stop intake and drop the jobs still queued.  Idempotent.

        Problem: returns at once.  Jobs that workers are running are still
        running when ``close()`` returns, and nothing waits for them.
        """
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            dropped = 0
            while True:
                try:
                    self._jobs.get_nowait()
                except queue.Empty:
                    break
                dropped += 1
            if dropped:
                logger.warning("close() dropped %d queued jobs; call join() first", dropped)
                self._finish(dropped)
            # One sentinel per worker wakes those blocked in get().
            for _ in self._workers:
                self._jobs.put(None)

    # -- used by the workers ----------------------------------------------------

    def _finish(self, count: int = 1) -> None:
        """Mark ``count`` jobs finished.  Caller holds the mutex."""
        self._unfinished -= count
        if self._unfinished == 0:
            self._all_done.notify_all()


def _worker(jq: JobQueue) -> None:
    """Take jobs in arrival order and run them, until close()."""
    while True:
        entry = jq._jobs.get()
        # Exit on the sentinel from close().  close() emptied the queue before
        # queueing the sentinels, so after close() no worker finds a new job.
        if entry is None:
            return
        jq._in_handler.job = entry.job
        try:
            entry.handler(entry.job.payload)
        except BaseException:
            # Problem: no retry.  The job is gone; only this log line remembers it.
            # BaseException, not Exception: a handler raising SystemExit or
            # KeyboardInterrupt would otherwise end this thread, silently for
            # SystemExit, and join() would hang for ever.  That is a bug, not
            # one of naive's lessons, so naive does not keep it.
            logger.exception("job %r failed and is lost (naive has no retry)", entry.job.id)
        with jq._mutex:
            jq._finish()
