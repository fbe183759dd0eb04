"""The seam between the queue and where its jobs are kept.

The queue keeps its waiting jobs in memory and tells a :class:`Storage` about
every step of each job's life.  A storage remembers enough to rebuild the
queue after a restart.  Two implementations ship:

- :class:`MemoryStorage` (no ``persist_path``): remembers nothing.
- ``jobqueue.final.log.JobLog``: a JSON-lines append log on local disk
  (the ``jobqueue/final/log/`` package; ``docs/durability.md``).

The calls, in the order the queue makes them for one job::

    enqueued -> started -> (retrying -> started)* -> completed | failed [-> requeued ...]
    enqueued -> (started -> retrying)* -> cancelled

A job's ``Job.run_at`` (a delayed job) is part of what ``enqueued`` stores.
``requeued`` starts the same life again for a dead (``failed``) job.

(``enqueued_many`` stands for ``enqueued`` when a batch comes in at once.)

Contract for implementations:

- ``recover()`` comes first, once; every other call after it.
- The queue writes a job's records in that order, and frees the job's id
  (so it may be enqueued again) only after ``completed``, ``failed`` or
  ``cancelled`` has returned.  A storage may therefore key its state by job id.
- ``enqueued`` is the acknowledgement.  When it returns, the job must be
  recoverable by a later ``recover()``, to the durability the storage
  promises (``JobLog``: a ``kill -9`` under every fsync policy, a power loss
  under ``"always"``).  If it cannot promise that, it raises
  ``PersistenceError`` and the job is not accepted.  A job whose
  ``enqueued`` raised may still come back after a restart (its record may
  have reached the disk before the failure): at least once, never "acked but
  lost".
- ``cancelled`` is recorded when it returns: a cancelled job never runs,
  not even after a restart.  If it raises, the queue keeps the job.
- ``retrying`` and ``failed`` are recorded when they return (``JobLog``:
  handed to the OS, so they survive ``kill -9``): each spends a run of the
  job's retry budget, and a crash must not give it back.  Across crashes a
  job then runs at most ``1 + max_retries + (number of crashes)`` times.
- ``completed`` may be buffered: losing one in a crash only means the job
  runs again, which at-least-once delivery allows.  A failed write must not
  lose it either: only the records of the call that failed may be lost.
  These calls raise ``PersistenceError`` if the storage has failed.
- ``started`` may record nothing, as ``JobLog``'s does, and this is why the
  log has no ``started`` record: ``recover()`` returns a job that was
  enqueued and never finished as QUEUED whether it had started or not, and
  ``Job.attempts`` counts failed runs only, so a start record would change
  nothing at recovery; leaving it out saves a record per job.  The call
  stays in the seam for storages that do need it: a store shared by several
  machines takes a lease here (below), so that another machine re-runs the
  job if this one dies mid-run.
- Every method may be called from several threads at once; ``enqueued``
  from many producers at once (``JobLog`` shares one fsync among them).
- Payloads are opaque bytes, stored as data (never pickled).  A job names its
  handler (``Job.handler``), because a function cannot be stored.

A networked store that several processes on several machines share fits the
same calls.  With Redis, a processing list and leases, say:

- ``enqueued``: ``HSET job:<id>`` (the job as data) and ``LPUSH queue:<prio>``
  in one ``MULTI``, followed by ``WAIT`` (replicas) if the ack must survive a
  node; the call returns when Redis replied, or raises.
- ``started``: ``LMOVE queue:<prio> processing:<worker>`` plus
  ``SET lease:<id> <worker> PX <ttl>``, renewed while the handler runs.
- ``retrying``: ``LREM`` from the processing list, ``ZADD retry <retry_at>``,
  ``HSET job:<id> attempts <n>``.  ``completed``/``failed``: ``LREM`` and
  ``DEL`` (or a move to a capped history / dead-letter list).
- ``recover``: a sweep more than a replay: jobs in processing lists whose
  lease expired go back to their queue (a machine died mid-run: at least
  once), and so do due entries of ``retry``.  It returns no jobs to hold in
  memory, since the jobs stay in the shared store.

What that store needs beyond these calls is to *hand out* jobs: with several
consumers the queue's deques would become a local prefetch buffer filled by a
``claim()`` (the ``LMOVE``), and ``started`` would be part of it.  That
extension is not built here; nothing in the calls above assumes one process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from jobqueue.vocabulary import Job, Status

if TYPE_CHECKING:
    from jobqueue.final.config import Config

__all__ = ["MemoryStorage", "Storage", "StoredJob", "open_storage"]


@dataclass(frozen=True, slots=True)
class StoredJob:
    """One job as ``recover()`` found it.

    A COMPLETED job is remembered for ``status()`` only: its ``job`` keeps
    its id and attempts, not its payload.  A FAILED one is a dead letter: its
    ``job`` is whole, payload included, for ``dead()`` and ``requeue()``.
    """

    job: Job  # ``job.attempts`` counts the runs that ended in failure; ``job.run_at`` kept
    status: Status  # QUEUED, RETRYING (PROCESSING: in flight at a crash, if starts are recorded)
    # or finished: COMPLETED, FAILED, CANCELLED
    retry_at: float | None = None  # wall-clock time (``time.time()``) a RETRYING job is due
    error: str | None = None  # the last failure, if any
    failed_at: float | None = None  # FAILED: wall-clock time it failed for good


class Storage(Protocol):
    """Where a ``final.JobQueue`` keeps its jobs.  See the module docstring."""

    #: False if ``started`` records nothing: the queue then skips the call,
    #: one per run, on its hot path.
    records_starts: bool = True

    def recover(self) -> list[StoredJob]:
        """Every job the storage knows, live ones in enqueue order, then finished ones
        (oldest first, at most the history it was given).

        Called once, before any other call.  Raises ``PersistenceError`` if
        the stored state is damaged beyond what can be safely repaired, and
        then changes nothing.
        """
        ...

    def enqueued(self, job: Job) -> None:
        """Record a new job.  Durable when this returns: this is the ack."""
        ...

    def enqueued_many(self, jobs: list[Job]) -> None:
        """Record several new jobs: ``enqueue_many``'s acknowledgement, for all of them.

        All or none: if it raises ``PersistenceError``, no job of the batch is
        accepted (some may still come back after a restart, as for
        ``enqueued``).  ``JobLog`` writes them in one write (one fsync under
        ``"always"``).  This default, which a storage subclassing ``Storage``
        inherits, records them one by one: correct, since the queue accepts
        none of them if one fails, but a storage that can write them together
        should.
        """
        for job in jobs:
            self.enqueued(job)

    def started(self, job_id: str, attempt: int) -> None:
        """Run number ``attempt`` (1-based) of a job has begun.  May record nothing
        (see the module docstring); a shared store takes the job's lease here."""
        ...

    def retrying(self, job_id: str, attempts: int, retry_at: float, error: str) -> None:
        """Record a failed run: ``attempts`` runs used, next one due at ``retry_at``.
        Recorded when it returns."""
        ...

    def completed(self, job_id: str) -> None:
        """Record that a job finished successfully.  May be buffered."""
        ...

    def failed(self, job: Job, attempts: int, error: str, failed_at: float) -> None:
        """Record that a job failed for good (dead-lettered) at ``failed_at``
        (``time.time()``).  Recorded when it returns.  Keep the whole job, payload
        included, within the history: ``recover()`` returns it for ``dead()``."""
        ...

    def requeued(self, job: Job) -> None:
        """Record that a dead job is queued again (``job.attempts`` reset to 0).
        Durable when this returns, like ``enqueued``: it is an acknowledgement."""
        ...

    def cancelled(self, job_id: str) -> None:
        """Record that a queued, scheduled or retrying job was cancelled: it must never
        run again.  Recorded when it returns."""
        ...

    def close(self) -> None:
        """Flush what is buffered and release the storage.  Idempotent."""
        ...


class MemoryStorage:
    """A storage that keeps nothing: a queue without ``persist_path``."""

    records_starts = False

    def recover(self) -> list[StoredJob]:
        return []

    def enqueued(self, job: Job) -> None:
        pass

    def enqueued_many(self, jobs: list[Job]) -> None:
        pass

    def started(self, job_id: str, attempt: int) -> None:
        pass

    def retrying(self, job_id: str, attempts: int, retry_at: float, error: str) -> None:
        pass

    def completed(self, job_id: str) -> None:
        pass

    def failed(self, job: Job, attempts: int, error: str, failed_at: float) -> None:
        pass

    def requeued(self, job: Job) -> None:
        pass

    def cancelled(self, job_id: str) -> None:
        pass

    def close(self) -> None:
        pass


def open_storage(config: Config) -> Storage:
    """The storage ``config`` asks for: the log at ``persist_path``, else none."""
    if config.persist_path is None:
        return MemoryStorage()
    from jobqueue.final.log import JobLog  # the log imports this module: not at the top

    return JobLog(config.persist_path, fsync=config.fsync, history=config.status_history)
