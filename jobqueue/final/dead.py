"""Dead letters for ``final``: the jobs that failed for good, whole, and how to requeue them.

A job dead-letters when its retries are spent.  Its status says FAILED, but an
operator needs more: which job, with what payload, why, and when.  The
:class:`DeadLetters` book keeps the latest ``status_history`` dead jobs,
whole, newest last; ``JobQueue.dead()`` lists them, newest first, and
``JobQueue.requeue()`` takes one out to queue it again with its attempts reset.

Durable with ``persist_path``: ``Storage.failed`` keeps the whole job, the log
keeps it through compaction (its ``failed`` record holds the payload), and a
restart fills the book from ``Storage.recover()``.  ``requeue`` writes a
``requeued`` record, an acknowledgement like ``enqueued``.

Not thread-safe on its own: the queue's mutex guards every call, as it
guards ``status.py``.  Nothing here knows about the log: a second store
(PostgreSQL, say) fills the same book from its own ``recover()``.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from jobqueue.final.logfields import job_fields
from jobqueue.final.speed import Entry
from jobqueue.final.storage import StoredJob
from jobqueue.vocabulary import DuplicateJobError, Job, Status, check_job_id, check_timeout

if TYPE_CHECKING:
    from jobqueue.final.queue import JobQueue

__all__ = ["ERROR_LIMIT", "DeadJob", "DeadLetters", "error_text", "requeue"]

logger = logging.getLogger(__name__)

#: The longest error text kept for a dead job, in characters: a repr of a
#: huge exception (a response body, say) must not bloat the log or the list.
ERROR_LIMIT = 2000


@dataclass(frozen=True, slots=True)
class DeadJob:
    """A job that failed for good."""

    job: Job  # as it was enqueued, payload included; ``attempts`` as it last ran
    attempts: int  # runs used, the last one included
    error: str  # repr of the last failure, at most ERROR_LIMIT characters
    failed_at: float  # time.time() when it failed for good


def error_text(error: BaseException) -> str:
    """The repr of ``error``, cut to ``ERROR_LIMIT`` characters with a marker that says so."""
    text = repr(error)
    if len(text) <= ERROR_LIMIT:
        return text
    cut = f"... ({len(text) - ERROR_LIMIT + 40} more characters)"
    return text[: ERROR_LIMIT - len(cut)] + cut


class DeadLetters(OrderedDict[str, DeadJob]):
    """The latest dead jobs by id, oldest first.  The caller holds the queue's mutex.

    A mapping, so that the hot path's ``pop(job_id, None)`` (an id enqueued
    again is no longer dead) is one C call, not a method of ours.
    """

    def __init__(self, limit: int) -> None:
        super().__init__()
        self._limit = limit  # status_history: the same bound as the status book

    def add(self, dead: DeadJob) -> None:
        """A job failed for good: remember it, forgetting the oldest past the limit."""
        self[dead.job.id] = dead
        self.move_to_end(dead.job.id)
        while len(self) > self._limit:
            self.popitem(last=False)

    def recovered(self, stored: StoredJob) -> None:
        """A FAILED job from ``Storage.recover()``; one without its payload (an old
        log) cannot be requeued, and is not listed."""
        if stored.status is Status.FAILED and stored.failed_at is not None:
            error = stored.error or ""
            self.add(DeadJob(stored.job, stored.job.attempts, error, stored.failed_at))

    def newest(self, limit: int) -> list[DeadJob]:
        """Up to ``limit`` dead jobs, newest first."""
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError(f"limit must be an int, got {type(limit).__name__}")
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        found: list[DeadJob] = []
        for dead in reversed(self.values()):
            if len(found) >= limit:
                break
            found.append(dead)
        return found


def requeue(jq: JobQueue, job_id: str, timeout: float | None) -> bool:
    """``jq.requeue(job_id)``: the dead job again, QUEUED, its attempts reset."""
    check_job_id(job_id)
    check_timeout(timeout)
    with jq._mutex:
        dead = jq._dead.get(job_id)
    if dead is None:
        return False
    job = replace(dead.job, attempts=0)
    try:
        jq._accept(Entry(job, jq._handlers.for_job(job)), timeout, requeue=True)
    except DuplicateJobError:  # requeued by another caller meanwhile
        return False
    logger.info("job %r requeued", job_id, extra=job_fields(job, 1))
    return True
