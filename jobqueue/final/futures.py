"""``submit()``'s futures: a job's outcome as a :class:`concurrent.futures.Future`.

``JobQueue.submit(job)`` enqueues ``job`` as ``enqueue`` does and returns a
:class:`JobFuture`.  It resolves

- to the handler's return value, when a run succeeds;
- to the last exception, once the job failed for good (retries exhausted, or
  :class:`~jobqueue.vocabulary.PermanentFailure`): ``result()`` raises it;
- as cancelled, when ``future.cancel()`` or ``JobQueue.cancel(id)`` took the
  job out while it was queued, scheduled or waiting to retry;
- to :class:`~jobqueue.vocabulary.QueueClosed`, when ``close()`` left the
  job unfinished.  With ``persist_path`` the job is still in the log and runs
  after a restart, but no future follows it there.

Futures are local to the process that submitted the job: they hold the
return value in memory, and the log never records it.

A future resolves only once the job's status is final, so ``status(id)``
already says COMPLETED, FAILED or CANCELLED when ``result()`` returns.  It
resolves outside the queue's mutex, in the worker thread (or the thread that
cancelled), because its callbacks may call the queue.  ``enqueue()`` creates
no future: a job without one costs one ``is None`` test at its end.
"""

from __future__ import annotations

import functools
import itertools
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from typing import TYPE_CHECKING

from jobqueue.final.speed import Entry
from jobqueue.vocabulary import Job, QueueClosed

if TYPE_CHECKING:
    from jobqueue.final.queue import JobQueue

__all__ = [
    "JobFuture",
    "abandon_all",
    "abandoned",
    "cancelled",
    "of",
    "resolve",
    "settle",
    "submit",
]

#: How a future cancels its job: ``cancellation.cancel(queue, job_id, future)``.
Canceller = Callable[["JobQueue", str, "Future[object] | None"], bool]


class JobFuture(Future[object]):
    """A ``Future`` whose ``cancel()`` cancels its job, as ``concurrent.futures`` does.

    ``cancel()`` returns True if the job was queued, scheduled or waiting to
    retry and will now never run (or the future was cancelled already), False
    if the job is running or finished.  ``running()`` stays False: the future
    follows the job's outcome, not each of its runs; ``status(id)`` says where
    the job is.
    """

    def __init__(self, job_id: str, cancel_job: Callable[[str, JobFuture], bool]) -> None:
        super().__init__()
        self.job_id = job_id
        self._cancel_job = cancel_job

    def cancel(self) -> bool:
        if self.done():
            return self.cancelled()
        return self._cancel_job(self.job_id, self)  # resolves this future via cancelled()

    def __repr__(self) -> str:
        return f"<JobFuture job {self.job_id!r} {super().__repr__()[1:-1]}>"


def resolve(future: Future[object], error: BaseException | None, result: object) -> None:
    """The job's final run ended: ``error`` is None for a success."""
    try:
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)
    except InvalidStateError:  # resolved already (cancelled): the first outcome stands
        pass


def cancelled(future: Future[object]) -> None:
    """The job was cancelled: mark the future so, waking its waiters."""
    Future.cancel(future)  # the base class's: JobFuture.cancel would cancel the job again
    # As an executor does for a cancelled future: without it, concurrent.futures.wait()
    # and as_completed() would not count the future as done.
    future.set_running_or_notify_cancel()


def abandoned(future: Future[object], job_id: str, durable: bool) -> None:
    """``close()`` left the job unfinished: its future will never see the outcome."""
    where = "it stays in the log and runs after a restart" if durable else "it was dropped"
    resolve(
        future, QueueClosed(f"job {job_id!r}: the queue closed before it finished; {where}"), None
    )


def abandon_all(orphans: list[tuple[str, Future[object]]], durable: bool) -> None:
    """``abandoned`` for each (job id, future) of ``orphans``, from :func:`of`."""
    for job_id, future in orphans:
        abandoned(future, job_id, durable)


def of(
    queues: tuple[deque[Entry], ...], heap: list[tuple[float, int, Entry]]
) -> list[tuple[str, Future[object]]]:
    """(job id, future) of every waiting job that has one: what ``close()`` leaves."""
    waiting = itertools.chain(*queues, (item[2] for item in heap))
    return [(entry.job.id, entry.future) for entry in waiting if entry.future is not None]


def submit(jq: JobQueue, job: Job, timeout: float | None, cancel: Canceller) -> JobFuture:
    """``jq.submit(job)``: ``enqueue(job)``, with a future that follows it."""
    job, handler = jq._handlers.resolve(job, None)  # TypeError unless a Job
    future = JobFuture(job.id, functools.partial(cancel, jq))
    jq._accept(Entry(job, handler, future=future), timeout)
    return future


def settle(entry: Entry, error: BaseException | None, *, dropped: bool, durable: bool) -> None:
    """The last run in this queue of ``entry``'s job ended; its status is final.  Call it
    without the queue's mutex: the future's callbacks may call the queue.  ``dropped``:
    it failed while ``close()`` ran, and its retry is left to the log (if ``durable``)."""
    assert entry.future is not None
    if dropped:
        abandoned(entry.future, entry.job.id, durable)
    else:
        resolve(entry.future, error, entry.result)
