"""The durable job log: a :class:`~jobqueue.final.storage.Storage` on local disk.

Every step of every job is appended to one JSON-lines file (the format is in
``log_format.py``).  What this module adds is *when* bytes reach the disk:

- ``enqueued`` is the acknowledgement.  Its line is handed to the OS
  (``os.write`` on an ``O_APPEND`` descriptor, no userspace buffer) before it
  returns, under every fsync policy, so a returned ``enqueue`` survives
  ``kill -9``.  What survives a power loss is the fsync policy's business:
  ``"always"`` returns only after ``fsync``; ``"interval"`` fsyncs at least
  once a second (every ``flush_interval``); ``"never"`` leaves it to the OS.
- Group commit: producers append to ``_pending`` under the mutex; one of them,
  the *leader*, writes every pending line in one ``write`` (and, for
  ``"always"``, one ``fsync``) outside the mutex while the others wait.  When
  it is done, one waiter leads the next batch.  N concurrent enqueues cost
  about one fsync, not N.
- ``started``, ``retrying``, ``completed`` and ``failed`` are buffered: they
  ride along with the next batch, the flusher's tick, a full buffer
  (``buffer_limit``) or ``close()``.  Losing them only means a re-run.
- Disk failures: a failed ``write`` truncates the file back to its last good
  record and fails the batch (no job in it is acknowledged); the log stays
  usable.  A failed ``fsync`` fails the log *stop*: after "fsyncgate" nobody
  may assume that a retried fsync makes earlier data safe, so every later
  append raises ``PersistenceError`` until the log is reopened and replayed.
- Compaction (``compact()``): when the file is large and mostly dead records,
  live jobs plus the history are rewritten to ``PATH.compact``, fsynced,
  renamed over ``PATH``, and the directory fsynced.  Enqueues go on during the
  rewrite; they pause only while the few records written meanwhile are copied
  over and the file is swapped.
- One open log per file: ``flock`` on ``PATH.lock`` (a separate file, because
  compaction replaces ``PATH`` itself).
"""

from __future__ import annotations

import logging
import os
import threading

from jobqueue.final import log_files
from jobqueue.final.config import FSYNC_POLICIES
from jobqueue.final.log_files import (
    FileOps,
    remove,
    set_aside,
    take_lock,
    write_all,
    write_records,
)
from jobqueue.final.log_format import Op, Record, encode, header
from jobqueue.final.log_replay import State, read_log
from jobqueue.final.storage import StoredJob
from jobqueue.vocabulary import Job, PersistenceError

__all__ = ["JobLog"]

logger = logging.getLogger(__name__)


class _Ack:
    """How a producer learns that the batch holding its ``enqueued`` line is done."""

    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = False
        self.error: PersistenceError | None = None


class JobLog:
    """A JSON-lines append log of every job's steps; see the module docstring.

    ``history`` bounds the finished jobs remembered (pass the queue's
    ``status_history``).  The log is compacted when it is at least
    ``compact_min_bytes`` long and its live records are at most
    ``compact_live_fraction`` of it.
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
        self._policy = fsync
        self._compact_min_bytes = compact_min_bytes
        self._compact_live_fraction = compact_live_fraction
        self._buffer_limit = buffer_limit
        self._flush_interval = flush_interval
        self._ops = ops if ops is not None else log_files.DEFAULT_OPS
        self._lock_fd = take_lock(self._path)
        self._mutex = threading.Lock()
        # Waiters: producers whose enqueued line is pending or being written,
        # and whoever needs the writer role (a leader, compaction's swap,
        # close()).  Notified when a leader finishes a batch, when a swap ends
        # and when an fsync outside the role ends.
        self._batch_done = threading.Condition(self._mutex)
        self._pending: list[tuple[Record, _Ack | None]] = []
        self._busy = False  # someone holds the writer role: only they touch the file
        self._wanted = 0  # flush, compaction or close() waiting for the role: producers yield
        self._syncing = 0  # fsyncs running outside the role: the fd must stay open
        self._fd = -1
        self._size = 0  # bytes written: the end of the last good record
        self._synced = 0  # bytes known to be on disk
        self._next_seq = 1
        self._state = State(history)
        self._tail: list[Record] | None = None  # while compacting: records written since
        self._broken: PersistenceError | None = None  # set once: fail-stop
        self._closed = False
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        self._compactor: threading.Thread | None = None

    # -- Storage ----------------------------------------------------------------------

    def recover(self) -> list[StoredJob]:
        """Replay the log, set a torn last line aside, and open it for appending."""
        if self._fd >= 0 or self._closed:
            raise RuntimeError("JobLog.recover() is called once, before anything else")
        found = read_log(self._path, self._state.history_limit)  # raises if damaged
        try:
            if found.torn:
                set_aside(self._ops, self._path, found)
            self._fd = self._ops.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            self._size = self._synced = found.good_bytes
            if self._size == 0:  # a new log: its header, and its name, must be durable
                self._size = self._synced = write_all(self._ops, self._fd, encode(header(), 0))
                self._ops.fsync(self._fd)
                self._ops.fsync_dir(self._path)
            remove(self._path + ".compact")  # a compaction that died before its rename
        except OSError as exc:
            raise PersistenceError(f"{self._path}: cannot open the log: {exc}") from exc
        self._state, self._next_seq = found.state, found.next_seq
        if self._should_compact():
            try:
                self.compact()
            except PersistenceError as exc:  # the log is still whole: open it as it is
                logger.warning("%s", exc)
        self._flusher = threading.Thread(target=self._flush_loop, name="jobqueue-log-flusher")
        self._flusher.start()
        return self._state.stored()

    def enqueued(self, job: Job) -> None:
        self._append(Record(Op.ENQUEUED, job.id, job=job), ack=True)

    def started(self, job_id: str, attempt: int) -> None:
        self._append(Record(Op.STARTED, job_id, attempts=attempt), ack=False)

    def retrying(self, job_id: str, attempts: int, retry_at: float, error: str) -> None:
        record = Record(Op.RETRYING, job_id, attempts=attempts, retry_at=retry_at, error=error)
        self._append(record, ack=False)

    def completed(self, job_id: str) -> None:
        self._append(Record(Op.COMPLETED, job_id), ack=False)

    def failed(self, job_id: str, attempts: int, error: str) -> None:
        self._append(Record(Op.FAILED, job_id, attempts=attempts, error=error), ack=False)

    def close(self) -> None:
        """Write what is buffered, fsync (unless ``"never"``), release the file.  Idempotent."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join()  # the only thread that starts compactors
        compactor = self._compactor
        if compactor is not None:
            compactor.join()  # it sees _closed and gives up, leaving the log as it was
        with self._mutex:
            self._wait_for_role(fd_idle=True)
            error = self._lead() if self._pending else None
            fd, self._fd = self._fd, -1
            broken = self._broken or error
        try:
            if fd >= 0 and not broken and self._policy != "never":
                self._ops.fsync(fd)
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
        self._flush(sync=True)

    @property
    def size(self) -> int:
        """The log's length in bytes, as this log has written it."""
        with self._mutex:
            return self._size

    def compact(self) -> None:
        """Rewrite the log as its live jobs plus its history, atomically.

        Crash-safe at every step: until the rename the old file is whole and a
        leftover ``PATH.compact`` is removed at the next open; after it the
        new file is whole, because it was fsynced first.  Appends go on while
        the bulk is written; they pause only for the final swap.
        """
        with self._mutex:
            self._check_usable()
            if self._tail is not None:
                return  # one compaction at a time
            self._wait_for_role()  # a batch half-applied would make the snapshot lie
            snapshot = self._state.copy()
            mode = os.fstat(self._fd).st_mode & 0o777
            self._tail = []
        tmp, fd, swapped = self._path + ".compact", -1, False
        try:
            fd = self._ops.open(tmp, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC)
            os.fchmod(fd, mode)  # keep whatever mode the owner gave the log
            size, seq = write_records(self._ops, fd, [header(), *snapshot.records()], 0, self._stop)
            self._ops.fsync(fd)
            with self._mutex:
                self._wait_for_role(fd_idle=True)
                self._check_usable()
                self._busy = True  # the pause begins: hold the writer role
                tail, self._tail = self._tail or [], None
            try:
                more, seq = write_records(self._ops, fd, tail, seq, self._stop)
                self._ops.fsync(fd)
                self._ops.rename(tmp, self._path)
                swapped = True
                self._ops.fsync_dir(self._path)
            finally:
                with self._mutex:
                    if swapped:  # from now on appends go to the new file
                        self._fd, fd = fd, self._fd
                        self._size = self._synced = size + more
                        self._next_seq = seq
                    self._busy = False
                    self._batch_done.notify_all()
        except OSError as exc:
            if swapped:  # the rename happened, but its durability is unknown
                self._fail(f"fsync of the directory after compaction failed: {exc}")
            raise PersistenceError(f"{self._path}: compaction failed: {exc}") from exc
        finally:
            with self._mutex:
                self._tail = None
            if fd >= 0:
                os.close(fd)  # the old log after a swap, or the unused new one
            if not swapped:
                remove(tmp)
        logger.info("%s: compacted to %d bytes", self._path, self.size)

    # -- appending ---------------------------------------------------------------------

    def _append(self, record: Record, *, ack: bool) -> None:
        with self._mutex:
            self._check_usable()
            waiter = _Ack() if ack else None
            self._pending.append((record, waiter))
            if waiter is None:
                # Buffered: written with the next batch, unless the buffer is full.
                error = None
                if len(self._pending) >= self._buffer_limit and not (self._busy or self._wanted):
                    error = self._lead()
                if error is not None:
                    raise error
                return
            while not waiter.done:
                if self._busy or self._wanted:
                    self._batch_done.wait()
                else:
                    self._lead()
        if waiter.error is not None:
            raise waiter.error

    def _lead(self) -> PersistenceError | None:
        """Write every pending record as one batch.  Caller holds the mutex, not the role.

        Releases the mutex while it writes, so others can queue up behind it.
        Returns the batch's error, which every waiting producer also gets.
        """
        batch, self._pending = self._pending, []
        error = self._broken
        if error is None and self._fd < 0:
            error = PersistenceError(f"{self._path}: the log is closed")
        if error is not None:
            return self._settle(batch, error)
        self._busy = True
        fd, start, seq = self._fd, self._size, self._next_seq
        sync = self._policy == "always" and any(waiter for _, waiter in batch)
        lines: list[bytes] = []
        stage = "encode"
        self._mutex.release()
        try:
            lines = [encode(record, seq + i) for i, (record, _) in enumerate(batch)]
            stage = "write"
            write_all(self._ops, fd, b"".join(lines))
            stage = "fsync"
            if sync:
                self._ops.fsync(fd)
        except OSError as exc:
            error = self._write_failed(exc, stage, fd, start, len(batch))
        except Exception as exc:  # a bug, not the disk: still, no producer may hang
            error = PersistenceError(f"{self._path}: cannot encode a record: {exc!r}")
        finally:
            self._mutex.acquire()
            self._busy = False
        if error is None:
            for (record, _), line in zip(batch, lines, strict=True):
                self._state.apply(record, len(line))
                self._size += len(line)
            self._next_seq += len(batch)
            if sync:
                self._synced = self._size
            if self._tail is not None:
                self._tail.extend(record for record, _ in batch)
        return self._settle(batch, error)

    def _wait_for_role(self, *, fd_idle: bool = False) -> None:
        """Wait until nobody holds the writer role (and, with ``fd_idle``, no fsync
        runs outside it).  Caller holds the mutex, and takes the role before
        releasing it.

        Producers stand back while someone waits here: otherwise a busy
        producer, who re-takes the mutex at once, could starve the flusher and
        compaction for ever.
        """
        self._wanted += 1
        try:
            while self._busy or (fd_idle and self._syncing):
                self._batch_done.wait()
        finally:
            self._wanted -= 1
            if not self._wanted:  # producers that stood back may lead again
                self._batch_done.notify_all()

    def _settle(
        self, batch: list[tuple[Record, _Ack | None]], error: PersistenceError | None
    ) -> PersistenceError | None:
        for _, waiter in batch:
            if waiter is not None:
                waiter.done, waiter.error = True, error
        self._batch_done.notify_all()
        return error

    def _write_failed(
        self, exc: OSError, stage: str, fd: int, start: int, count: int
    ) -> PersistenceError:
        """Turn a failed batch into the error its producers get.  Runs without the mutex."""
        if stage == "fsync":
            return self._fail(f"fsync failed: {exc}")
        try:
            self._ops.truncate(fd, start)  # a short write must not leave half a line
        except OSError as again:
            return self._fail(f"write failed ({exc}), then truncating it back failed: {again}")
        return PersistenceError(
            f"{self._path}: write failed: {exc}; {count} records were not written "
            "(no job among them was accepted) and the log was truncated back to its last "
            "good record"
        )

    def _fail(self, reason: str) -> PersistenceError:
        """Fail stop: refuse every append until the log is reopened and replayed."""
        error = PersistenceError(
            f"{self._path}: {reason}; the log refuses appends until the queue is reopened "
            "and replays it"
        )
        if self._broken is None:  # plain assignment: safe with or without the mutex
            self._broken = error
            logger.error("%s", error)
        return self._broken

    def _check_usable(self) -> None:
        if self._broken is not None:
            raise self._broken
        if self._closed or self._fd < 0:
            raise PersistenceError(f"{self._path}: the log is closed")

    # -- flushing -----------------------------------------------------------------------

    def _flush(self, *, sync: bool) -> None:
        """Write the buffered records, then fsync if ``sync`` and anything is new."""
        with self._mutex:
            self._check_usable()
            self._wait_for_role()
            error = self._lead() if self._pending else None
            if error is not None:
                raise error
            if not sync or self._synced >= self._size:
                return
            fd, target = self._fd, self._size
            self._syncing += 1  # compaction's swap and close() wait: fd stays open
        # fsync outside the role: producers keep writing while the disk catches up.
        failed: PersistenceError | None = None
        try:
            self._ops.fsync(fd)
        except OSError as exc:
            failed = self._fail(f"fsync failed: {exc}")
        with self._mutex:
            self._syncing -= 1
            if failed is None:
                self._synced = max(self._synced, target)
            self._batch_done.notify_all()
        if failed is not None:
            raise failed

    def _flush_loop(self) -> None:
        """The flusher: write buffered records, fsync ("interval"), start compactions."""
        while not self._stop.wait(self._flush_interval):
            if self._broken is not None:
                return  # fail-stop: nothing left to flush
            try:
                self._flush(sync=self._policy == "interval")
            except PersistenceError:
                if self._closed:
                    return
                logger.exception("%s: the flusher could not write", self._path)
                continue
            with self._mutex:
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
            if not self._closed:
                logger.exception("%s: background compaction failed", self._path)
        finally:
            with self._mutex:
                self._compactor = None

    def _should_compact(self) -> bool:
        """Large, and mostly dead records: as Redis triggers an AOF rewrite."""
        return (
            self._tail is None
            and self._size >= self._compact_min_bytes
            and self._state.live_bytes <= self._size * self._compact_live_fraction
        )
