"""``submit()`` on PostgreSQL: futures that follow a job's row, wherever the job runs.

A job of a shared queue may run in any process, so a future cannot wait for
a local worker.  It waits for the row: one thread per queue (started by the
first ``submit()``) polls the rows of every job with a pending future, in
one statement, backing off from 5 ms to 50 ms while nothing changes.  The
future resolves once the row's status is final, so ``status(id)`` already
says COMPLETED, FAILED or CANCELLED when ``result()`` returns:

- COMPLETED: to the handler's return value if this process ran the last
  run (workers hand it over in ``ran()``), else to None: a return value
  lives in the memory of the process that ran the job;
- FAILED: to the last exception if this process ran the last run, else to
  a :class:`JobFailedElsewhere` naming the job and the error the row keeps;
- CANCELLED: cancelled;
- ``close()``: to ``QueueClosed``, if its job is not final once this
  process's jobs in flight ended; the job stays in the database and runs,
  but no future follows it there.

A future follows the job's id: if the job is cancelled and the id enqueued
again before a poll sees it, the future follows the new job.  The cost is
one SELECT per poll while futures wait, none when no future does.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future

import psycopg

from jobqueue.final import futures
from jobqueue.final.postgres.connections import Link
from jobqueue.final.postgres.operations import Operations
from jobqueue.vocabulary import JobQueueError

__all__ = ["JobFailedElsewhere", "Watcher"]

logger = logging.getLogger(__name__)

_POLL_MIN, _POLL_MAX = 0.005, 0.05


class JobFailedElsewhere(JobQueueError):
    """A submitted job failed for good in another process: its exception stayed there."""


class Watcher(threading.Thread):
    """The pending futures of one queue, and the thread that resolves them."""

    def __init__(self, ops: Operations, url: str) -> None:
        super().__init__(name="jobqueue-pg-futures", daemon=True)
        self._ops = ops
        self._link = Link(url)
        self._lock = threading.Lock()
        # Waiters: this thread, for a future to follow.  Notified by watch() and stop().
        self._has_futures = threading.Condition(self._lock)
        self._futures: dict[str, Future[object]] = {}
        self._outcomes: dict[str, tuple[BaseException | None, object]] = {}  # run here
        self._expected: Counter[str] = Counter()  # being enqueued by submit(): see expect()
        self._stopping = False

    def expect(self, job_id: str) -> None:
        """``submit()`` is about to enqueue ``job_id``: keep its outcome if it runs here
        before ``watch()`` (or ``unexpect()``, if the enqueue failed) is called."""
        with self._lock:
            self._expected[job_id] += 1

    def unexpect(self, job_id: str) -> None:
        with self._lock:
            self._expected[job_id] -= 1
            if self._expected[job_id] <= 0:
                del self._expected[job_id]
                if job_id not in self._futures:
                    self._outcomes.pop(job_id, None)

    def watch(self, job_id: str, future: Future[object]) -> None:
        """Follow ``job_id``, enqueued now.  Not before the insert: an older finished row
        of the same id would resolve the future at once."""
        with self._lock:
            self._expected[job_id] -= 1  # (its outcome, if it ran already, stays)
            if self._expected[job_id] <= 0:
                del self._expected[job_id]
            stopped = self._stopping  # close() ran since submit() enqueued the job
            if not stopped:
                self._futures[job_id] = future
                self._has_futures.notify()
        if stopped:
            futures.abandoned(future, job_id, durable=True)

    def forget(self, job_id: str) -> Future[object] | None:
        """The job was cancelled here: stop following it; its future, if any."""
        with self._lock:
            self._outcomes.pop(job_id, None)
            return self._futures.pop(job_id, None)

    def ran(self, job_id: str, error: BaseException | None, result: object) -> None:
        """A worker of this process ended a run of ``job_id``: keep the outcome, if a
        future waits for it, until the row says whether it was the last run."""
        with self._lock:
            if job_id in self._futures or job_id in self._expected:
                self._outcomes[job_id] = (error, result)

    def stop(self, last_look: Callable[[list[str]], list[tuple[str, str, str | None]]]) -> None:
        """Stop polling, then resolve the futures still pending: by ``last_look`` (a final
        poll, after close() let the jobs in flight end), the rest to ``QueueClosed``."""
        with self._lock:
            self._stopping = True
            self._has_futures.notify()
        self.join(5.0)
        with self._lock:
            pending = dict(self._futures)
            outcomes = dict(self._outcomes)
            self._futures.clear()
            self._outcomes.clear()
        try:
            rows = last_look(list(pending)) if pending else []
        except JobQueueError as exc:  # PersistenceError: the server is gone
            logger.warning("queue %r: futures left unresolved: %s", self._ops.queue, exc)
            rows = []
        for job_id, state, error in rows:
            if (future := pending.pop(job_id, None)) is not None:
                _resolve(future, state, error, outcomes.get(job_id))
        for job_id, future in pending.items():
            futures.abandoned(future, job_id, durable=True)

    def run(self) -> None:
        pause = _POLL_MIN
        try:
            while True:
                with self._lock:
                    while not self._futures and not self._stopping:
                        self._has_futures.wait()
                    if self._stopping:
                        return
                    ids = list(self._futures)
                try:
                    rows = self._ops.final_states(self._link.get(), ids)
                except psycopg.Error as exc:
                    self._link.broken()
                    logger.warning("queue %r: cannot poll futures: %s", self._ops.queue, exc)
                    rows = []
                resolved = []
                with self._lock:
                    for job_id, state, error in rows:
                        future = self._futures.pop(job_id, None)
                        if future is not None:
                            resolved.append(
                                (future, state, error, self._outcomes.pop(job_id, None))
                            )
                for future, state, error, outcome in resolved:  # outside the lock: callbacks
                    _resolve(future, state, error, outcome)
                pause = _POLL_MIN if resolved else min(_POLL_MAX, pause * 2)
                with self._lock:
                    if not self._stopping:
                        self._has_futures.wait(pause)
        finally:
            self._link.close()


def _resolve(
    future: Future[object],
    state: str,
    error: str | None,
    outcome: tuple[BaseException | None, object] | None,
) -> None:
    job_id = getattr(future, "job_id", "?")
    if state == "cancelled":
        futures.cancelled(future)
    elif outcome is not None and (outcome[0] is None) == (state == "completed"):
        futures.resolve(future, outcome[0], outcome[1])  # this process ran the last run
    elif state == "completed":
        futures.resolve(future, None, None)
    else:
        failure = JobFailedElsewhere(f"job {job_id!r} failed for good elsewhere: {error}")
        futures.resolve(future, failure, None)
