"""The durable job log: a :class:`~jobqueue.final.storage.Storage` on local disk.

Every step of every job is appended to one JSON-lines file.  The modules,
in reading order: ``format.py`` (one record, one checksummed line),
``replay.py`` (lines added up into state, and the mirror compaction
writes from), ``writer.py`` (one writer at a time, group commit under
``"always"``, disk failures), ``files.py`` (OS calls, lock, torn tails),
and this one, which ties them together.  ``docs/durability.md`` has the why.

- ``enqueued`` is the acknowledgement.  Its line is handed to the OS
  (``os.write`` on an ``O_APPEND`` descriptor, no userspace buffer) before it
  returns, under every fsync policy, so a returned enqueue survives
  ``kill -9``.  Power loss is the fsync policy's business: ``"always"``
  returns only after ``fsync``; ``"interval"`` has the flusher fsync every
  ``flush_interval`` (0.5 s); ``"never"`` leaves it to the OS.
- ``retrying``, ``completed`` and ``failed`` are buffered: they ride along
  with the next write, the flusher's tick, a full buffer or ``close()``.
  Losing one in a crash only means a re-run.  ``started`` writes nothing:
  replay re-runs a job that was enqueued and never finished whether or not
  it had started.
- Compaction: once the file is large and mostly dead records, live jobs plus
  the history (the writer's byte :class:`~jobqueue.final.log.replay.Mirror`)
  are rewritten to ``PATH.compact``, fsynced, renamed over ``PATH``, and the
  directory fsynced.
- One open log per file: ``flock`` on ``PATH.lock``.
"""

from __future__ import annotations

import logging
import os
import threading

from jobqueue.final.config import FSYNC_POLICIES
from jobqueue.final.log import files as log_files
from jobqueue.final.log.files import FileOps, remove, set_aside, take_lock, write_all
from jobqueue.final.log.format import (
    HEADER_FIELDS,
    Op,
    completed_fields,
    enqueued_fields,
    failed_fields,
    retrying_fields,
    seal,
)
from jobqueue.final.log.replay import Mirror, read_log
from jobqueue.final.log.writer import Writer
from jobqueue.final.storage import StoredJob
from jobqueue.vocabulary import Job, PersistenceError

__all__ = ["JobLog"]

logger = logging.getLogger(__name__)

_CATCH_UP_ROUNDS = 4  # compaction copies records appended meanwhile at most this often...
_SMALL_TAIL = 256  # ...until fewer than this are left, to copy while appends pause


class JobLog:
    """A JSON-lines append log of every job's steps; see the module docstring.

    ``history`` bounds the finished jobs remembered (pass the queue's
    ``status_history``).  The log is compacted when it is at least
    ``compact_min_bytes`` long and its live records are at most
    ``compact_live_fraction`` of it.  Up to ``buffer_limit`` non-ack records
    wait in memory.  ``ops`` replaces the OS calls (for fault injection).
    """

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
        self._writer = Writer(self._path, fsync, ops, buffer_limit, Mirror(history))
        # Guarded by the writer's mutex, like everything the writer changes:
        self._compactor: threading.Thread | None = None
        self._stop = threading.Event()  # close() stops the flusher and compaction
        self._flusher: threading.Thread | None = None
        self._lock_fd = take_lock(self._path)

    # -- Storage ----------------------------------------------------------------------

    def recover(self) -> list[StoredJob]:
        """Replay the log, set a torn last line aside, and open it for appending."""
        w = self._writer
        if w.fd >= 0 or w.closed:
            raise RuntimeError("JobLog.recover() is called once, before anything else")
        found = read_log(self._path, self._history)  # raises if damaged
        try:
            if found.torn:
                set_aside(w.ops, self._path, found)
            w.fd = w.ops.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            w.size = w.synced = found.good_bytes
            if w.size == 0:  # a new log: its header, and its name, must be durable
                w.size = w.synced = write_all(w.ops, w.fd, seal(HEADER_FIELDS, 0))
                w.ops.fsync(w.fd)
                w.ops.fsync_dir(self._path)
            remove(self._path + ".compact")  # a compaction that died before its rename
        except OSError as exc:
            raise PersistenceError(f"{self._path}: cannot open the log: {exc}") from exc
        w.mirror, w.next_seq = Mirror.of(found.state), found.next_seq
        if self._should_compact():
            try:
                self.compact()
            except PersistenceError as exc:  # the log is still whole: go on with it
                logger.warning("%s", exc)
        self._flusher = threading.Thread(target=self._flush_loop, name="jobqueue-log-flusher")
        self._flusher.start()
        return found.state.stored()

    def enqueued(self, job: Job) -> None:
        # The fields are built before the writer's mutex is taken: it only seals and writes.
        self._writer.ack(job.id, enqueued_fields(job))

    def started(self, job_id: str, attempt: int) -> None:
        """Writes nothing: the log does not need to know that a run began.

        Replay re-runs a job that was enqueued and never finished, exactly
        like a queued one, and ``Job.attempts`` counts only failed runs, so
        recovery comes out the same with or without a start record; leaving
        it out saves a record per job.  (Logs written by earlier versions
        have ``started`` lines; they are still read.)  The seam keeps the
        call because other storages need it: a networked store takes a
        lease here, so that another machine can re-run the job if this one
        dies mid-run (see ``storage.py``).
        """

    def retrying(self, job_id: str, attempts: int, retry_at: float, error: str) -> None:
        rest = retrying_fields(job_id, attempts, retry_at, error)
        self._writer.buffer(Op.RETRYING, job_id, rest)

    def completed(self, job_id: str) -> None:
        self._writer.buffer(Op.COMPLETED, job_id, completed_fields(job_id))

    def failed(self, job_id: str, attempts: int, error: str) -> None:
        self._writer.buffer(Op.FAILED, job_id, failed_fields(job_id, attempts, error))

    def close(self) -> None:
        """Write what is buffered, fsync (unless ``"never"``), release the file.  Idempotent."""
        w = self._writer
        with w.mutex:
            if self._stop.is_set():
                return
            self._stop.set()
        if self._flusher is not None:
            self._flusher.join()  # the only thread that starts compactors
        compactor = self._compactor
        if compactor is not None:
            compactor.join()  # it sees _stop and gives up, leaving the log as it was
        fd, broken = w.close()
        try:
            if fd >= 0 and not broken and w.policy != "never":
                w.ops.fsync(fd)
        except OSError as exc:
            logger.error("%s: fsync at close failed: %s", self._path, exc)
        finally:
            if fd >= 0:
                os.close(fd)
            os.close(self._lock_fd)  # releases the flock
        if broken:
            logger.error("%s: closed a failed log: %s", self._path, broken)

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
        """Rewrite the log as its live jobs plus its history, atomically.

        Crash-safe at every step: until the rename the old file is whole and a
        leftover ``PATH.compact`` is removed at the next open; after it the
        new file is whole, because it was fsynced first.  Appends go on while
        the bulk is written, and while what they appended meanwhile is copied
        over; they pause only for the last few records, an fsync and the swap.
        """
        w = self._writer
        with w.mutex:
            if w.broken is not None or w.closed or w.fd < 0:
                raise w.unusable()
            if w.tail is not None:
                return  # one compaction at a time
            w.wait_for_role()  # a batch half-applied would make the snapshot lie
            snapshot = w.mirror.copy()
            mode = os.fstat(w.fd).st_mode & 0o777
            w.tail = []
        tmp, fd, swapped = self._path + ".compact", -1, False
        try:
            fd = w.ops.open(tmp, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC)
            os.fchmod(fd, mode)  # keep whatever mode the owner gave the log
            records = [HEADER_FIELDS, *snapshot.fields()]
            size, seq = log_files.write_records(w.ops, fd, records, 0, self._stop)
            for _ in range(_CATCH_UP_ROUNDS):  # copy what was appended meanwhile, unpaused
                # fsync first: the bulk's takes longest, and what is appended
                # during it is copied next, not in the pause.
                w.ops.fsync(fd)
                with w.mutex:
                    if w.tail is None or len(w.tail) < _SMALL_TAIL:
                        break
                    tail, w.tail = w.tail, []
                more, seq = log_files.write_records(
                    w.ops, fd, [rest for _, _, rest in tail], seq, self._stop
                )
                size += more
            else:
                w.ops.fsync(fd)
            with w.exclusive():  # the pause: no batch is written until the swap is done
                with w.mutex:
                    tail, w.tail = w.tail or [], None
                more, seq = log_files.write_records(
                    w.ops, fd, [rest for _, _, rest in tail], seq, self._stop
                )
                w.ops.fsync(fd)
                w.ops.rename(tmp, self._path)
                swapped = True
                with w.mutex:  # from now on appends go to the new file
                    w.fd, fd = fd, w.fd
                    w.size = w.synced = size + more
                    w.next_seq = seq
                w.ops.fsync_dir(self._path)
        except OSError as exc:
            if swapped:  # the rename happened, but whether it is durable is unknown
                w.fail(f"fsync of the directory after compaction failed: {exc}")
            raise PersistenceError(f"{self._path}: compaction failed: {exc}") from exc
        finally:
            with w.mutex:
                w.tail = None
            if fd >= 0:
                os.close(fd)  # the old log after a swap, or the unused new one
            if not swapped:
                remove(tmp)
        logger.info("%s: compacted to %d bytes", self._path, self.size)

    # -- inside -------------------------------------------------------------------------

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
                    target=self._compact_in_background, name="jobqueue-log-compactor"
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
        return (
            self._writer.tail is None
            and self._writer.size >= self._compact_min_bytes
            and self._writer.mirror.live_bytes <= self._writer.size * self._compact_live_fraction
        )
