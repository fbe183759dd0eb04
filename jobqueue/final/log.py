"""The durable job log: a :class:`~jobqueue.final.storage.Storage` on local disk.

Every step of every job is appended to one JSON-lines file.  The modules,
in reading order: ``log_format.py`` (one record, one checksummed line),
``log_replay.py`` (lines added up into state), ``log_writer.py`` (group
commit and disk failures), ``log_files.py`` (OS calls, lock, torn tails), and
this one, which ties them together.  ``docs/durability.md`` has the why.

- ``enqueued`` is the acknowledgement.  Its line is handed to the OS
  (``os.write`` on an ``O_APPEND`` descriptor, no userspace buffer) before it
  returns, under every fsync policy, so a returned enqueue survives
  ``kill -9``.  Power loss is the fsync policy's business: ``"always"``
  returns only after ``fsync``; ``"interval"`` has the flusher fsync every
  ``flush_interval`` (0.5 s); ``"never"`` leaves it to the OS.
- ``started``, ``retrying``, ``completed`` and ``failed`` are buffered: they
  ride along with the next batch, the flusher's tick, a full buffer or
  ``close()``.  Losing one in a crash only means a re-run.
- Compaction: once the file is large and mostly dead records, live jobs plus
  the history are rewritten to ``PATH.compact``, fsynced, renamed over
  ``PATH``, and the directory fsynced.
- One open log per file: ``flock`` on ``PATH.lock``.
"""

from __future__ import annotations

import logging
import os
import threading

from jobqueue.final import log_files
from jobqueue.final.config import FSYNC_POLICIES
from jobqueue.final.log_files import FileOps, remove, set_aside, take_lock, write_all
from jobqueue.final.log_format import Op, Record, encode, header
from jobqueue.final.log_replay import State, read_log
from jobqueue.final.log_writer import Writer
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
        self._writer = Writer(self._path, fsync, ops, buffer_limit, self._written)
        # Guarded by the writer's mutex, like everything the writer changes:
        self._state = State(history)
        self._tail: list[Record] | None = None  # while compacting: records written since
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
        found = read_log(self._path, self._state.history_limit)  # raises if damaged
        try:
            if found.torn:
                set_aside(w.ops, self._path, found)
            w.fd = w.ops.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            w.size = w.synced = found.good_bytes
            if w.size == 0:  # a new log: its header, and its name, must be durable
                w.size = w.synced = write_all(w.ops, w.fd, encode(header(), 0))
                w.ops.fsync(w.fd)
                w.ops.fsync_dir(self._path)
            remove(self._path + ".compact")  # a compaction that died before its rename
        except OSError as exc:
            raise PersistenceError(f"{self._path}: cannot open the log: {exc}") from exc
        self._state, w.next_seq = found.state, found.next_seq
        if self._should_compact():
            try:
                self.compact()
            except PersistenceError as exc:  # the log is still whole: go on with it
                logger.warning("%s", exc)
        self._flusher = threading.Thread(target=self._flush_loop, name="jobqueue-log-flusher")
        self._flusher.start()
        return self._state.stored()

    def enqueued(self, job: Job) -> None:
        self._writer.append(Record(Op.ENQUEUED, job.id, job=job), ack=True)

    def started(self, job_id: str, attempt: int) -> None:
        self._writer.append(Record(Op.STARTED, job_id, attempts=attempt), ack=False)

    def retrying(self, job_id: str, attempts: int, retry_at: float, error: str) -> None:
        record = Record(Op.RETRYING, job_id, attempts=attempts, retry_at=retry_at, error=error)
        self._writer.append(record, ack=False)

    def completed(self, job_id: str) -> None:
        self._writer.append(Record(Op.COMPLETED, job_id), ack=False)

    def failed(self, job_id: str, attempts: int, error: str) -> None:
        self._writer.append(Record(Op.FAILED, job_id, attempts=attempts, error=error), ack=False)

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
            w.check_usable()
            if self._tail is not None:
                return  # one compaction at a time
            w.wait_for_role()  # a batch half-applied would make the snapshot lie
            snapshot = self._state.copy()
            mode = os.fstat(w.fd).st_mode & 0o777
            self._tail = []
        tmp, fd, swapped = self._path + ".compact", -1, False
        try:
            fd = w.ops.open(tmp, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC)
            os.fchmod(fd, mode)  # keep whatever mode the owner gave the log
            records = [header(), *snapshot.records()]
            size, seq = log_files.write_records(w.ops, fd, records, 0, self._stop)
            for _ in range(_CATCH_UP_ROUNDS):  # copy what was appended meanwhile, unpaused
                with w.mutex:
                    if self._tail is None or len(self._tail) < _SMALL_TAIL:
                        break
                    tail, self._tail = self._tail, []
                more, seq = log_files.write_records(w.ops, fd, tail, seq, self._stop)
                size += more
            w.ops.fsync(fd)
            with w.exclusive():  # the pause: no batch is written until the swap is done
                with w.mutex:
                    tail, self._tail = self._tail or [], None
                more, seq = log_files.write_records(w.ops, fd, tail, seq, self._stop)
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
                self._tail = None
            if fd >= 0:
                os.close(fd)  # the old log after a swap, or the unused new one
            if not swapped:
                remove(tmp)
        logger.info("%s: compacted to %d bytes", self._path, self.size)

    # -- inside -------------------------------------------------------------------------

    def _written(self, records: list[Record], sizes: list[int]) -> None:
        """A batch reached the file (the writer calls this under its mutex)."""
        for record, size in zip(records, sizes, strict=True):
            self._state.apply(record, size)
        if self._tail is not None:
            self._tail.extend(records)

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
            self._tail is None
            and self._writer.size >= self._compact_min_bytes
            and self._state.live_bytes <= self._writer.size * self._compact_live_fraction
        )
