"""Status by id for ``final``: the live jobs, a bounded history, and duplicate ids.

Every job the queue has accepted and not yet finished is *live*: its status
is one of QUEUED, SCHEDULED, PROCESSING, RETRYING, and its id cannot be enqueued again
(``DuplicateJobError``), so that ``status(id)`` names one job.  A finished job
(COMPLETED, FAILED, CANCELLED) moves to the history, which keeps the latest
``status_history`` ids and forgets the oldest first, so memory stays bounded
however many jobs pass through.

An id may be reused once its job has finished.  From the moment it is taken
again, its old finished status is history: ``status()`` reports the new job.

Not thread-safe on its own: the queue's mutex guards every call, as it
guards the counters in ``metrics.py``.
"""

from __future__ import annotations

from collections import OrderedDict

from jobqueue.vocabulary import DuplicateJobError, Status

__all__ = ["StatusBook"]


class StatusBook:
    """Where every job is, by id.  The caller holds the queue's mutex."""

    __slots__ = ("_finished", "_history", "_live")

    def __init__(self, history: int) -> None:
        self._history = history  # finished statuses kept; 0 keeps none
        self._live: dict[str, Status] = {}  # every unfinished job
        self._finished: OrderedDict[str, Status] = OrderedDict()  # oldest first

    def __len__(self) -> int:
        """The number of live jobs."""
        return len(self._live)

    def get(self, job_id: str) -> Status | None:
        """The job's status, or None for an id never seen (or forgotten)."""
        return self._live.get(job_id) or self._finished.get(job_id)

    def take(self, job_id: str) -> None:
        """Reserve ``job_id`` for a job being enqueued: it is QUEUED from now on.

        ``DuplicateJobError`` if a live job has this id.  ``give_back`` undoes
        it if the enqueue fails; ``accepted`` confirms it.
        """
        status = self._live.get(job_id)
        if status is not None:
            raise DuplicateJobError(f"cannot enqueue job {job_id!r}: it is still {status.value}")
        self._live[job_id] = Status.QUEUED

    def take_all(self, job_ids: list[str]) -> None:
        """``take`` every id of ``job_ids``, all or none: ``DuplicateJobError`` takes none."""
        taken: list[str] = []
        try:
            for job_id in job_ids:
                self.take(job_id)
                taken.append(job_id)
        except DuplicateJobError:
            for job_id in taken:
                self.give_back(job_id)
            raise

    def give_back(self, job_id: str) -> None:
        """The enqueue that took ``job_id`` failed: the id is free again."""
        del self._live[job_id]

    def accepted(self, job_id: str) -> None:
        """The enqueue that took ``job_id`` succeeded: a finished job of that id is history."""
        self._finished.pop(job_id, None)

    def set(self, job_id: str, status: Status) -> None:
        """A live job moved on: QUEUED, SCHEDULED, PROCESSING or RETRYING (or CANCELLED
        while its cancellation is being written)."""
        self._live[job_id] = status

    def finish(self, job_id: str, status: Status) -> None:
        """A job ended for good (COMPLETED, FAILED or CANCELLED): move it to the history."""
        self._live.pop(job_id, None)
        # New at the end: a live id is never in the history (``accepted`` took it out).
        self._finished[job_id] = status
        if len(self._finished) > self._history:  # one in, so at most one out
            self._finished.popitem(last=False)

    def drop(self, job_id: str) -> None:
        """Forget a live job without finishing it (close() dropped its retry)."""
        self._live.pop(job_id, None)
