"""``cancel(job_id)``: take a job out before it runs, for good.

A job can be cancelled while it is QUEUED, SCHEDULED or RETRYING: it then
sits in one of the queue's deques or in its timer heap, holding no worker.
Cancelling takes it out under the queue's mutex, so a worker either took
the job first (cancel returns False: PROCESSING) or never sees it; there is
no third case.  A running job is not interrupted: Python threads cannot be.

Durable: the storage records the cancellation (the log's ``cancelled``
record) before the job's status is final, and a restart does not run it.
While that write is under way the job's id stays live (its status reads
CANCELLED), as after any job's last record (see ``storage.py``).  If the
write fails, the job is put back, at the front of its queue or at its old
place in the heap, and ``cancel`` raises the ``PersistenceError``.

:func:`take_out` and :func:`put_back` are the state change, for any store
that keeps jobs in memory; :func:`cancel` is the queue's whole call.  They
scan for the job: cancel is rare, and ``enqueue`` pays nothing for it.
"""

from __future__ import annotations

import heapq
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jobqueue.final import futures
from jobqueue.final.speed import Entry
from jobqueue.vocabulary import Status, check_job_id

if TYPE_CHECKING:
    from jobqueue.final.queue import JobQueue

__all__ = ["CANCELLABLE", "Taken", "cancel", "put_back", "take_out"]

#: The statuses of a job that has not started its (next) run: cancel() takes it out.
CANCELLABLE = frozenset({Status.QUEUED, Status.SCHEDULED, Status.RETRYING})

#: A heap item: (monotonic due time, FIFO tie-breaker, entry).
HeapItem = tuple[float, int, Entry]


@dataclass(frozen=True, slots=True)
class Taken:
    """A job taken out, and where from, to put it back if its record cannot be written."""

    entry: Entry
    timed: HeapItem | None  # its heap item if it was SCHEDULED or RETRYING, else None


def take_out(
    queues: tuple[deque[Entry], ...],
    heap: list[HeapItem],
    job_id: str,
    future: Future[object] | None,
) -> Taken | None:
    """Remove the job ``job_id`` from ``queues`` or ``heap``; None if it is in neither.

    It is in neither while its ``enqueue`` is still writing it to the log.
    With ``future``, only the job that future follows is taken: a job that
    reused the id since is not the future's to cancel.
    """
    for waiting in queues:
        for entry in waiting:
            if entry.job.id == job_id and (future is None or entry.future is future):
                waiting.remove(entry)
                return Taken(entry, None)
    for i, item in enumerate(heap):
        entry = item[2]
        if entry.job.id == job_id and (future is None or entry.future is future):
            heap[i] = heap[-1]
            heap.pop()
            heapq.heapify(heap)
            return Taken(entry, item)
    return None


def put_back(queues: tuple[deque[Entry], ...], heap: list[HeapItem], taken: Taken) -> None:
    """Undo :func:`take_out`: the job waits again, first in line or at its old due time."""
    if taken.timed is None:
        queues[taken.entry.job.priority].appendleft(taken.entry)
    else:
        heapq.heappush(heap, taken.timed)


def cancel(jq: JobQueue, job_id: str, future: Future[object] | None) -> bool:
    """``jq.cancel(job_id)``; with ``future``, ``future.cancel()``, for that future's job only.

    Works on the queue's state under its mutex, as the queue's worker loop does.
    """
    check_job_id(job_id)
    with jq._mutex:
        status = jq._statuses.get(job_id)
        if jq._closed or status not in CANCELLABLE:
            return False  # running, finished, unknown, or close() dropped it
        taken = take_out(jq._queues, jq._retries, job_id, future)
        if taken is None:
            return False  # its enqueue() has not returned yet, or another job's future
        priority = taken.entry.job.priority
        if status is Status.RETRYING:
            jq._retrying[priority] -= 1
        elif taken.timed is None:
            jq._not_full[priority].notify()  # it gave up its slot
        jq._statuses.set(job_id, Status.CANCELLED)  # still live: the record is not written
    try:
        jq._storage.cancelled(job_id)
    except BaseException:
        with jq._mutex:
            if not jq._closed:  # put it back, as it was
                put_back(jq._queues, jq._retries, taken)
                if status is Status.RETRYING:
                    jq._retrying[priority] += 1
                jq._statuses.set(job_id, status)
                jq._not_empty.notify()
                raise
            jq._statuses.drop(job_id)  # close() shut the log under us: dropped
            jq._finish()
        if taken.entry.future is not None:
            futures.abandoned(taken.entry.future, job_id, jq._config.persist_path is not None)
        return False
    with jq._mutex:
        jq._statuses.finish(job_id, Status.CANCELLED)
        jq._finish()
    if taken.entry.future is not None:
        futures.cancelled(taken.entry.future)
    return True
