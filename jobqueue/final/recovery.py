"""What a restart runs again: the jobs ``Storage.recover()`` found, made ready to queue.

Persistence is ``final``'s third fix.  On start, before any worker runs, the
queue asks its storage for every job it knows and sorts them here:

- a finished job (COMPLETED, FAILED, CANCELLED) only goes to the status history,
  and a FAILED one to the dead letters too;
- a QUEUED job, or one PROCESSING when the process died, is queued again
  (past the bound on purpose: it was accepted already).  Delivery is at
  least once: a job that was running at a crash runs again;
- a RETRYING job waits out what is left of its backoff, and keeps its attempts;
- a QUEUED job whose ``Job.run_at`` is still ahead is SCHEDULED again, for
  that same wall-clock time (``schedule.py``); one already past is queued;
- a CANCELLED job is finished: it only goes to the history, and never runs.

A job whose handler cannot be found (``Job.handler`` names none of
``Config.handlers``) stops the start with ``PersistenceError``, and stays in
the log: a job is never dropped because of a configuration mistake.
"""

from __future__ import annotations

import heapq
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from jobqueue.final import schedule
from jobqueue.final.dead import DeadLetters
from jobqueue.final.handlers import Handlers
from jobqueue.final.speed import Entry
from jobqueue.final.status import StatusBook
from jobqueue.final.storage import StoredJob
from jobqueue.final.waits import queued_since
from jobqueue.vocabulary import PersistenceError, Status

if TYPE_CHECKING:
    from jobqueue.final.queue import JobQueue

__all__ = ["Replayed", "replay", "restore"]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Replayed:
    """The unfinished jobs to put back, in the order the storage returned them."""

    queued: list[Entry] = field(default_factory=list)
    retries: list[tuple[float, Entry]] = field(default_factory=list)  # (seconds left, entry)
    scheduled: list[tuple[float, Entry]] = field(default_factory=list)  # (seconds left, entry)


def replay(
    stored_jobs: list[StoredJob],
    handlers: Handlers,
    statuses: StatusBook,
    dead: DeadLetters,
    *,
    retry_max_delay: float,
    source: object,
) -> Replayed:
    """Sort ``stored_jobs`` (from ``Storage.recover()``), recording every status in
    ``statuses`` and every dead job in ``dead``.

    ``source`` names the storage in an error.  Raises ``PersistenceError`` if
    a job cannot run here.
    """
    now = time.time()
    replayed = Replayed()
    unrunnable: list[str] = []
    for stored in stored_jobs:
        job = stored.job
        if stored.status.finished:
            statuses.finish(job.id, stored.status)
            dead.recovered(stored)  # keeps the FAILED ones
            continue
        try:
            entry = Entry(job, handlers.for_job(job))
        except ValueError as exc:
            unrunnable.append(str(exc))
            continue
        if stored.status is Status.RETRYING and stored.retry_at is not None:
            # No backoff outlasts retry_max_delay, whatever the log (or the clock) says.
            left = min(max(0.0, stored.retry_at - now), retry_max_delay)
            replayed.retries.append((left, entry))
            statuses.set(job.id, Status.RETRYING)
        elif stored.status is Status.QUEUED and schedule.seconds_left(job.run_at, now) > 0:
            replayed.scheduled.append((schedule.seconds_left(job.run_at, now), entry))
            statuses.set(job.id, Status.SCHEDULED)
        else:  # QUEUED, or PROCESSING when the process died: run it again
            replayed.queued.append(entry)
            statuses.set(job.id, Status.QUEUED)
    if unrunnable:
        raise PersistenceError(
            f"{source}: {len(unrunnable)} recovered jobs cannot run, "
            f"so the queue will not start (they stay in the log): {unrunnable[0]}"
        )
    return replayed


def restore(jq: JobQueue) -> None:
    """Put back what ``jq``'s storage holds, before any worker starts.

    If that fails (``PersistenceError``: a job cannot run here), the storage
    is closed and the error raised: the queue does not open.
    """
    try:
        replayed = replay(
            jq._storage.recover(),
            jq._handlers,
            jq._statuses,
            jq._dead,
            retry_max_delay=jq._config.retry_max_delay,
            source=jq._config.persist_path,
        )
    except BaseException:
        jq._storage.close()
        raise
    now = time.monotonic()
    for entry in replayed.queued:
        entry.queued = queued_since(entry.job, now)  # its wait began before the restart
        jq._queues[entry.job.priority].append(entry)  # past the bound: already accepted
    for left, entry in replayed.retries:
        heapq.heappush(jq._retries, (now + left, next(jq._tie), entry))
        jq._retrying[entry.job.priority] += 1
    for left, entry in replayed.scheduled:  # delayed jobs share the heap: schedule.py
        heapq.heappush(jq._retries, (now + left, next(jq._tie), entry))
    jq._unfinished = len(replayed.queued) + len(replayed.retries) + len(replayed.scheduled)
    if jq._unfinished:
        logger.info("recovered %d unfinished jobs from %s", jq._unfinished, jq._config.persist_path)
