"""Fix: persistence.  What the queue writes to its ``Storage``, and when.

``storage.py`` is the seam: what a store must keep.  This module is the
queue's side of it, the three moments a job is written, and what a failed
write means at each:

- **Intake** (:func:`write_ahead`).  An enqueue holds its slots in the queue
  (``JobQueue._reserved``) and its id (``StatusBook.take``), then writes
  *outside* the mutex: the write gives up the GIL, and the workers must not
  block on the mutex meanwhile; with ``fsync="always"``, concurrent producers
  share an fsync.  Only once the write returns is the job queued, and only
  then does ``enqueue`` return: the acknowledgement.  If the write fails,
  everything is given back and the caller gets the error: nothing was
  accepted, so nothing is lost.
- **Start** (:func:`record_start`).  A lost start record only means the job
  runs again after a crash, which at-least-once allows: warn and go on.
- **Outcome** (:func:`record_outcome`).  Storage first, memory second: the
  job's id stays live until its last record is written, so a re-enqueue of
  the same id cannot be logged before this job's end (which would hide it on
  replay).  A lost outcome means a re-run after a restart: warn and go on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, TypeVar

from jobqueue.final.dead import DeadJob, error_text
from jobqueue.final.logfields import job_fields
from jobqueue.final.speed import Entry
from jobqueue.final.storage import Storage
from jobqueue.vocabulary import Job, PersistenceError, QueueClosed

if TYPE_CHECKING:
    from jobqueue.final.queue import JobQueue

__all__ = ["record_outcome", "record_start", "write_ahead"]

T = TypeVar("T")

logger = logging.getLogger(__name__)


def write_ahead(jq: JobQueue, entries: list[Entry], record: Callable[[T], object], what: T) -> None:
    """Write with ``record(what)``, then queue ``entries``; undo it all if the write fails.

    The caller, under the mutex, took their ids and reserved a slot for each
    (``JobQueue._reserved``); this gives both back on failure.
    """
    try:
        record(what)  # the acknowledgement
    except BaseException as exc:
        with jq._mutex:
            for entry in entries:
                jq._statuses.give_back(entry.job.id)
            _give_back(jq, entries)
            closed = jq._closed
        if closed and isinstance(exc, PersistenceError):  # close() shut the log under us
            raise QueueClosed(f"cannot enqueue {_what(entries)}: the queue is closed") from exc
        raise
    with jq._mutex:
        if jq._closed:
            # close() ran while the log was written: the jobs are in the log
            # (they run after a restart), but this queue starts nothing new.
            _give_back(jq, entries)
            return
        for entry in entries:
            jq._reserved[entry.job.priority] -= 1
            jq._admit(entry)


def _give_back(jq: JobQueue, entries: list[Entry]) -> None:
    """Enqueues that reserved slots accept nothing after all.  Caller holds the mutex."""
    for entry in entries:
        jq._reserved[entry.job.priority] -= 1
        jq._not_full[entry.job.priority].notify()
    jq._room.notify_all()
    jq._finish(len(entries))


def record_start(storage: Storage, job: Job) -> None:
    """``storage.started``; a failure is only a warning (a re-run after a crash)."""
    try:
        storage.started(job.id, job.attempts + 1)
    except PersistenceError as exc:
        logger.warning(
            "job %r: could not record its start: %s",
            job.id,
            exc,
            extra=job_fields(job, job.attempts + 1),
        )


def record_outcome(
    storage: Storage, job: Job, attempts: int, error: BaseException | None, retry_in: float | None
) -> DeadJob | None:
    """Write how the run of ``job`` ended: success (``error`` None), a retry in
    ``retry_in`` seconds, or failure for good (``retry_in`` None); return the
    dead job in that last case.  A failed write is only a warning."""
    dead = None
    try:
        if error is None:
            storage.completed(job.id)
        elif retry_in is not None:
            storage.retrying(job.id, attempts, time.time() + retry_in, repr(error))
        else:
            dead = DeadJob(
                replace(job, attempts=attempts), attempts, error_text(error), time.time()
            )
            storage.failed(dead.job, attempts, dead.error, dead.failed_at)
    except PersistenceError as exc:  # it runs again after a restart: at least once
        logger.warning(
            "job %r: could not record its outcome: %s",
            job.id,
            exc,
            extra=job_fields(job, attempts),
        )
    return dead


def close_log(jq: JobQueue) -> None:
    """The end of ``jq.close()``: close the log, unless a handler called ``close()``.

    Then its worker closes the log, once it has written the job's outcome: the
    race this prevents is a closed log that misses that outcome, so that the
    job, finished, runs again after a restart.
    """
    me = threading.current_thread()
    if me in jq._workers:
        jq._log_closer = me  # read by the worker loop on its way out
    elif jq._log_closer is None:
        jq._storage.close()


def _what(entries: list[Entry]) -> str:
    return f"job {entries[0].job.id!r}" if len(entries) == 1 else f"{len(entries)} jobs"
