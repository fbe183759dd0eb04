"""``current_job()``: the job a handler is running, its attempt, and its queue.

A handler keeps its one argument, the payload.  When it needs more (the job's
id as an idempotency key, at-least-once delivery needs one; the attempt
number; the queue, to enqueue a follow-up), it asks::

    def deliver(payload: bytes) -> None:
        ctx = current_job()
        assert ctx is not None  # None outside a handler
        post(payload, headers={"Idempotency-Key": ctx.job.id})

This is RQ's ``get_current_job()``, done with :mod:`contextvars`.  Each worker
thread sets the variable once, to a slot of its own; per job the worker only
stores the job in that slot (one attribute write), and ``current_job()``
builds the frozen :class:`JobContext` when asked.  So handlers that never ask
cost nothing.  The answer belongs to the handler's thread, and to contexts
copied from it (``contextvars.copy_context()``, ``asyncio.run``) while the
handler runs.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jobqueue.vocabulary import Job

if TYPE_CHECKING:
    from jobqueue.final.queue import JobQueue

__all__ = ["JobContext", "Slot", "current_job", "enter_worker"]


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a running handler may know about its job."""

    job: Job  # id, priority, payload, handler name, run_at as enqueued
    attempt: int  # 1 for the first run, 2 for the first retry, ...
    queue: JobQueue  # the queue running it


class Slot:
    """One worker thread's current job: the queue's worker loop writes it."""

    __slots__ = ("job", "queue")

    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue
        self.job: Job | None = None  # set while a handler runs, None in between


_current: ContextVar[Slot | None] = ContextVar("jobqueue_final_current_job", default=None)


def enter_worker(queue: JobQueue) -> Slot:
    """Called once by each worker thread of ``queue``, before its first job."""
    slot = Slot(queue)
    _current.set(slot)
    return slot


def current_job() -> JobContext | None:
    """The job the calling handler runs, or None outside a handler."""
    slot = _current.get()
    if slot is None or slot.job is None:
        return None
    job = slot.job
    return JobContext(job, job.attempts + 1, slot.queue)  # attempts counts failed runs
