"""The seam between the queue and where its jobs are kept.

The queue keeps its waiting jobs in memory and tells a :class:`Storage` about
every step of each job's life.  A storage remembers enough to rebuild the
queue after a restart.  Two implementations ship:

- :class:`MemoryStorage` (no ``persist_path``): remembers nothing.
- ``jobqueue.final.log.JobLog``: a JSON-lines append log on local disk.

The calls, in the order the queue makes them for one job::

    enqueued -> started -> (retrying -> started)* -> completed | failed

Contract for implementations:

- The queue writes a job's records in that order, and frees the job's id
  (so it may be enqueued again) only after ``completed`` or ``failed`` has
  returned.  A storage may therefore key its state by job id.
- ``enqueued`` is the acknowledgement.  When it returns, the job must be
  recoverable by a later ``recover()``, to the durability the storage
  promises.  If it cannot promise that, it raises ``PersistenceError`` and the
  job is not accepted.
- ``started``, ``retrying``, ``completed`` and ``failed`` may be buffered.
  Losing one in a crash only means a job runs again, which at-least-once
  delivery allows.  They raise ``PersistenceError`` if the storage has failed.
- Every method may be called from several threads at once.
- Payloads are opaque bytes, stored as data (never pickled).

A networked store shared by several processes (Redis with a processing list
and leases, say) fits the same calls: ``enqueued`` is an ``LPUSH`` that must
be acknowledged, ``started`` moves the job to a processing list with a lease,
``completed``/``failed`` remove it, and ``recover`` re-queues jobs whose lease
expired.  Such a store would also have to hand out the jobs (the queue's
deques would become a local buffer); that extension is not built here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from jobqueue.vocabulary import Job, Status

__all__ = ["MemoryStorage", "Storage", "StoredJob"]


@dataclass(frozen=True, slots=True)
class StoredJob:
    """One job as ``recover()`` found it."""

    job: Job  # ``job.attempts`` counts the runs that ended in failure
    status: Status  # PROCESSING means it was in flight at the crash: run it again
    retry_at: float | None = None  # wall-clock time (``time.time()``) a RETRYING job is due
    error: str | None = None  # the last failure, if any


class Storage(Protocol):
    """Where a ``final.JobQueue`` keeps its jobs.  See the module docstring."""

    def recover(self) -> list[StoredJob]:
        """Every job the storage knows, live ones in enqueue order, then finished ones.

        Called once, before any other call.  Raises ``PersistenceError`` if
        the stored state is damaged beyond what can be safely repaired.
        """
        ...

    def enqueued(self, job: Job) -> None:
        """Record a new job.  Durable when this returns: this is the ack."""
        ...

    def started(self, job_id: str, attempt: int) -> None:
        """Record that run number ``attempt`` (1-based) of a job has begun."""
        ...

    def retrying(self, job_id: str, attempts: int, retry_at: float, error: str) -> None:
        """Record a failed run: ``attempts`` runs used, next one due at ``retry_at``."""
        ...

    def completed(self, job_id: str) -> None:
        """Record that a job finished successfully."""
        ...

    def failed(self, job_id: str, attempts: int, error: str) -> None:
        """Record that a job exhausted its retries (dead-lettered)."""
        ...

    def close(self) -> None:
        """Flush what is buffered and release the storage.  Idempotent."""
        ...


class MemoryStorage:
    """A storage that keeps nothing: a queue without ``persist_path``."""

    def recover(self) -> list[StoredJob]:
        return []

    def enqueued(self, job: Job) -> None:
        pass

    def started(self, job_id: str, attempt: int) -> None:
        pass

    def retrying(self, job_id: str, attempts: int, retry_at: float, error: str) -> None:
        pass

    def completed(self, job_id: str) -> None:
        pass

    def failed(self, job_id: str, attempts: int, error: str) -> None:
        pass

    def close(self) -> None:
        pass
