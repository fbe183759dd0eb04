"""The durable job log: a :class:`~jobqueue.final.storage.Storage` on local disk.

Every step of every job is appended to one JSON-lines file.  The modules,
in reading order: ``format.py`` (one record, one checksummed line),
``replay.py`` (lines added up into state), ``files.py`` (OS calls, the
file-safety rules, the lock, torn tails), ``writer.py`` (the file's owner:
one writer at a time, group commit under ``"always"``, disk failures),
``compaction.py`` (the mirror, and the atomic rewrite), and this one, which
ties them together.  ``docs/durability.md`` has the why.

- ``enqueued`` is the acknowledgement.  Its line is handed to the OS
  (``os.write`` on an ``O_APPEND`` descriptor, no userspace buffer) before it
  returns, under every fsync policy, so a returned enqueue survives
  ``kill -9``.  Power loss is the fsync policy's business: ``"always"``
  returns only after ``fsync``; ``"interval"`` has the flusher fsync every
  ``flush_interval`` (0.5 s); ``"never"`` leaves it to the OS.
- ``retrying`` and ``failed`` are written the same way, at once: each spends
  a run of the job's retry budget, and a crash must not give it back.
  ``cancelled`` too: a cancelled job must not run after a restart.
- ``completed`` is buffered: it rides along with the next write, the
  flusher's tick, a full buffer or ``close()``.  Losing one in a crash only
  means a re-run.
- Compaction (``compaction.py``): once the file is large and mostly dead
  records, it is rewritten in the background.
- One open log per file: ``flock`` on ``PATH.lock``, and the rules of
  ``files.py`` (no symlinks, one name, the user's own file).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import replace

from jobqueue.final.config import FSYNC_POLICIES
from jobqueue.final.log import compaction
from jobqueue.final.log import files as log_files
from jobqueue.final.log.files import FileOps, remove, take_lock
from jobqueue.final.log.format import (
    Op,
    cancelled_fields,
    completed_fields,
    enqueued_fields,
    failed_fields,
    requeued_fields,
    retrying_fields,
)
from jobqueue.final.log.replay import replay
from jobqueue.final.log.writer import Writer
from jobqueue.final.logfields import job_fields
from jobqueue.final.storage import StoredJob
from jobqueue.vocabulary import Job, PersistenceError

__all__ = ["JobLog"]

logger = logging.getLogger(__name__)

#: A recovered retry is due at most this far ahead (a year).  A log may hold a
#: ``retry_at`` written under a Config that allowed an absurd delay; waiting
#: for it would overflow the clock calls, and kill the workers.
RETRY_HORIZON = 365 * 24 * 3600.0


class JobLog:
    """A JSON-lines append log of every job's steps; see the module docstring.

    ``history`` bounds the finished jobs remembered (pass the queue's
    ``status_history``).  The log is compacted when it is at least
    ``compact_min_bytes`` long and its live records are at most
    ``compact_live_fraction`` of it.  Up to ``buffer_limit`` ``completed``
    records wait in memory.  ``ops`` replaces the OS calls (for fault
    injection).
    """

    records_starts = False  # started() writes nothing: see storage.py

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fsync: str = "interval",
        history: int = 10_000,
        compact_min_bytes: int = 4 << 20,
        compact_live_fraction: float = 0.5,
        buffer_limit: int = 512,
        flush_interval: float = 0.5,
        ops: FileOps | None = None,
    ) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {FSYNC_POLICIES}, got {fsync!r}")
        self._path = os.fspath(path)
        self._compact_min_bytes = compact_min_bytes
        self._compact_live_fraction = compact_live_fraction
        self._flush_interval = flush_interval
        ops = ops if ops is not None else log_files.DEFAULT_OPS
        self._history = history
        self._writer = Writer(self._path, fsync, ops, buffer_limit, history)
        self._recovered = False
        # Guarded by the writer's mutex:
        self._compactor: threading.Thread | None = None
        self._stop = threading.Event()  # close() stops the flusher and compaction
        self._flusher: threading.Thread | None = None
        self._lock_fd = take_lock(self._path)

    # -- Storage ----------------------------------------------------------------------

    def recover(self) -> list[StoredJob]:
        """Replay the log, set a torn last line aside, and open it for appending."""
        if self._recovered or self._stop.is_set():
            raise RuntimeError("JobLog.recover() is called once, before anything else")
        self._recovered = True
        data = self._writer.open()
        found = replay(data, self._path, self._history)  # raises if damaged
        self._writer.start(found)
        leftover = compaction.temporary_path(self._path)
        try:
            remove(leftover)  # a compaction that died before its rename (a link: not followed)
        except OSError as exc:
            raise PersistenceError(f"{self._path}: cannot remove {leftover}: {exc}") from exc
        if self._should_compact():
            try:
                self.compact()
            except PersistenceError as exc:  # the log is still whole: go on with it
                logger.warning("%s", exc)
        # A daemon: if close() is never called, or fails, the flusher must not
        # keep the process alive at exit (a lost completion is only a re-run).
        self._flusher = threading.Thread(
            target=self._flush_loop, name="jobqueue-log-flusher", daemon=True
        )
        self._flusher.start()
        return [self._sane(stored) for stored in found.state.stored()]

    def enqueued(self, job: Job) -> None:
        # The fields are built before the writer's mutex is taken: it only seals and writes.
        self._writer.write_now(Op.ENQUEUED, job.id, enqueued_fields(job))

    def enqueued_many(self, jobs: list[Job]) -> None:
        """Every job's line in one write (one fsync under ``"always"``): all or none."""
        self._writer.write_all_now([(Op.ENQUEUED, job.id, enqueued_fields(job)) for job in jobs])

    def started(self, job_id: str, attempt: int) -> None:
        """Writes nothing (see ``storage.py`` for why)."""

    def retrying(self, job_id: str, attempts: int, retry_at: float, error: str) -> None:
        try:
            rest = retrying_fields(job_id, attempts, retry_at, error)
        except ValueError as exc:  # NaN or infinity: never written, the log stays JSON
            raise PersistenceError(f"{self._path}: job {job_id!r}: {exc}") from None
        self._writer.write_now(Op.RETRYING, job_id, rest)

    def completed(self, job_id: str) -> None:
        self._writer.buffer(Op.COMPLETED, job_id, completed_fields(job_id))

    def failed(self, job: Job, attempts: int, error: str, failed_at: float) -> None:
        try:
            rest = failed_fields(job.id, attempts, error, job, failed_at)
        except ValueError as exc:  # NaN or infinity: never written, the log stays JSON
            raise PersistenceError(f"{self._path}: job {job.id!r}: {exc}") from None
        self._writer.write_now(Op.FAILED, job.id, rest)

    def requeued(self, job: Job) -> None:
        self._writer.write_now(Op.REQUEUED, job.id, requeued_fields(job))

    def cancelled(self, job_id: str) -> None:
        self._writer.write_now(Op.CANCELLED, job_id, cancelled_fields(job_id))

    def close(self) -> None:
        """Write what is buffered, fsync (unless ``"never"``), release the file and
        the lock.  Idempotent; the lock is released even if something fails."""
        with self._writer.mutex:
            if self._stop.is_set():
                return
            self._stop.set()
        try:
            if self._flusher is not None:
                self._flusher.join()  # the only thread that starts compactors
            compactor = self._compactor
            if compactor is not None:
                compactor.join()  # it sees _stop and gives up, leaving the log as it was
            self._writer.close()
        finally:
            os.close(self._lock_fd)  # releases the flock

    # -- more than Storage ---------------------------------------------------------------

    def sync(self) -> None:
        """Write every buffered record and fsync now, whatever the policy."""
        self._writer.flush(sync=True)

    @property
    def size(self) -> int:
        """The log's length in bytes, as this log has written it."""
        with self._writer.mutex:
            return self._writer.size

    def compact(self) -> None:
        """Rewrite the log as its live jobs plus its history, atomically
        (``compaction.py``).  Does nothing if a compaction is running."""
        if compaction.compact(self._writer, self._stop):
            logger.info("%s: compacted to %d bytes", self._path, self.size)

    # -- inside -------------------------------------------------------------------------

    def _sane(self, stored: StoredJob) -> StoredJob:
        """A recovered job the queue can wait for: a retry due too far ahead is due
        at the horizon (see ``RETRY_HORIZON``)."""
        if stored.retry_at is None:
            return stored
        latest = time.time() + RETRY_HORIZON
        if stored.retry_at <= latest:
            return stored
        logger.warning(
            "%s: job %r: its retry is due at %r, more than a year ahead; it is due in a "
            "year instead",
            self._path,
            stored.job.id,
            stored.retry_at,
            extra=job_fields(stored.job, stored.job.attempts + 1),
        )
        return replace(stored, retry_at=latest)

    def _flush_loop(self) -> None:
        """The flusher: write buffered records, fsync ("interval"), start compactions."""
        while not self._stop.wait(self._flush_interval):
            if self._writer.broken is not None:
                return  # fail-stop: nothing left to flush
            try:
                self._writer.flush(sync=self._writer.policy == "interval")
            except PersistenceError:
                if not self._stop.is_set():
                    logger.exception("%s: the flusher could not write", self._path)
                continue
            with self._writer.mutex:
                if not self._should_compact() or self._compactor is not None:
                    continue
                compactor = threading.Thread(
                    target=self._compact_in_background,
                    name="jobqueue-log-compactor",
                    daemon=True,  # killed at exit mid-way: the next open removes PATH.compact
                )
                self._compactor = compactor
            compactor.start()

    def _compact_in_background(self) -> None:
        try:
            self.compact()
        except PersistenceError:
            if not self._stop.is_set():
                logger.exception("%s: background compaction failed", self._path)
        finally:
            with self._writer.mutex:
                self._compactor = None

    def _should_compact(self) -> bool:
        """Large, and mostly dead records: as Redis triggers an AOF rewrite."""
        w = self._writer
        return (
            w.tail is None
            and w.size >= self._compact_min_bytes
            and w.mirror.live_bytes <= w.size * self._compact_live_fraction
        )
