"""Group commit for the job log: many producers, one ``write`` (and ``fsync``) per batch.

Producers append records to ``pending`` under the mutex.  One of them, the
*leader*, takes the *writer role* (``busy``), writes every pending line in one
``write`` (and, under ``"always"``, one ``fsync``) with the mutex released,
then wakes the others; one of those leads the next batch.  N concurrent
enqueues cost about one fsync, not N.  Only the role holder touches the file,
so lines land in the order they were numbered.

Disk failures end here too.  A failed ``write`` truncates the file back to
its last good record and fails the batch; the log goes on.  A failed
``fsync`` fails the log *stop* (``broken``): after PostgreSQL's "fsyncgate" no
one may assume a retried fsync makes earlier data safe, so every later append
raises ``PersistenceError`` until the log is reopened and replayed.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator

from jobqueue.final.log_files import FileOps, write_all
from jobqueue.final.log_format import Record, encode
from jobqueue.vocabulary import PersistenceError

__all__ = ["Writer"]

logger = logging.getLogger(__name__)


class _Ack:
    """How a producer learns that the batch holding its ``enqueued`` line is done."""

    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = False
        self.error: PersistenceError | None = None


class Writer:
    """Appends records to the log's file.  Every field is guarded by ``mutex``.

    ``written(records, sizes)`` is called under the mutex with each batch
    that reached the file, in order: the log keeps its state from it.
    """

    def __init__(
        self,
        path: str,
        policy: str,
        ops: FileOps,
        buffer_limit: int,
        written: Callable[[list[Record], list[int]], None],
    ) -> None:
        self.path, self.policy, self.ops = path, policy, ops
        self.buffer_limit = buffer_limit
        self._written = written
        self.mutex = threading.Lock()
        # Waiters: producers whose enqueued line is pending or being written,
        # and whoever waits for the writer role (a leader, the flusher,
        # compaction, close()).  Notified when a leader finishes a batch, when
        # the role is handed back, when an fsync outside the role ends, and
        # when a waiter for the role leaves (producers stood back for it).
        self.batch_done = threading.Condition(self.mutex)
        self.pending: list[tuple[Record, _Ack | None]] = []
        self.busy = False  # someone holds the writer role: only they touch the file
        self.wanted = 0  # flusher, compaction or close() wait for the role: producers yield
        self.syncing = 0  # fsyncs running outside the role: the fd must stay open
        self.fd = -1
        self.size = 0  # bytes written: the end of the last good record
        self.synced = 0  # bytes known to be on disk
        self.next_seq = 1
        self.broken: PersistenceError | None = None  # set once: fail-stop
        self.closed = False

    def append(self, record: Record, *, ack: bool) -> None:
        """Add ``record``; with ``ack``, return only once it is written (and fsynced)."""
        with self.mutex:
            self.check_usable()
            waiter = _Ack() if ack else None
            self.pending.append((record, waiter))
            if waiter is None:
                # Buffered: written with the next batch, unless the buffer is full.
                if len(self.pending) >= self.buffer_limit and not (self.busy or self.wanted):
                    error = self._lead()
                    if error is not None:
                        raise error
                return
            while not waiter.done:
                if self.busy or self.wanted:
                    self.batch_done.wait()
                else:
                    self._lead()
        if waiter.error is not None:
            raise waiter.error

    def flush(self, *, sync: bool) -> None:
        """Write the buffered records, then fsync if ``sync`` and anything is new."""
        with self.mutex:
            self.check_usable()
            self.wait_for_role()
            error = self._lead() if self.pending else None
            if error is not None:
                raise error
            if not sync or self.synced >= self.size:
                return
            fd, target = self.fd, self.size
            self.syncing += 1  # whoever swaps or closes the fd waits for this fsync
        # fsync outside the role: producers keep writing while the disk catches up.
        failed: PersistenceError | None = None
        try:
            self.ops.fsync(fd)
        except OSError as exc:
            failed = self.fail(f"fsync failed: {exc}")
        with self.mutex:
            self.syncing -= 1
            if failed is None:
                self.synced = max(self.synced, target)
            self.batch_done.notify_all()
        if failed is not None:
            raise failed

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the writer role, with no fsync running either, for the body.

        The body runs without the mutex: appends queue up meanwhile.  It must
        take the mutex to change the fields.
        """
        with self.mutex:
            self.wait_for_role(fd_idle=True)
            self.check_usable()
            self.busy = True
        try:
            yield
        finally:
            with self.mutex:
                self.busy = False
                self.batch_done.notify_all()

    def close(self) -> tuple[int, PersistenceError | None]:
        """Write what is buffered and stop; return the fd to close, and any failure."""
        with self.mutex:
            self.closed = True
            self.wait_for_role(fd_idle=True)
            error = self._lead() if self.pending else None
            fd, self.fd = self.fd, -1
            return fd, self.broken or error

    def wait_for_role(self, *, fd_idle: bool = False) -> None:
        """Wait until nobody holds the writer role (and, with ``fd_idle``, no fsync
        runs outside it).  Caller holds the mutex, and takes the role before
        releasing it, or needs only a moment with no batch in flight.

        Producers stand back while someone waits here: a producer that
        re-takes the mutex at once could otherwise starve the flusher and
        compaction for ever.
        """
        self.wanted += 1
        try:
            while self.busy or (fd_idle and self.syncing):
                self.batch_done.wait()
        finally:
            self.wanted -= 1
            if not self.wanted:  # producers that stood back may lead again
                self.batch_done.notify_all()

    def check_usable(self) -> None:
        if self.broken is not None:
            raise self.broken
        if self.closed or self.fd < 0:
            raise PersistenceError(f"{self.path}: the log is closed")

    def fail(self, reason: str) -> PersistenceError:
        """Fail stop: refuse every append until the log is reopened and replayed."""
        if self.broken is None:  # plain assignment: safe with or without the mutex
            self.broken = PersistenceError(
                f"{self.path}: {reason}; the log refuses appends until the queue is "
                "reopened and replays it"
            )
            logger.error("%s", self.broken)
        return self.broken

    def _lead(self) -> PersistenceError | None:
        """Write every pending record as one batch.  Caller holds the mutex, not the role.

        Releases the mutex while it writes, so others can queue up behind it.
        Returns the batch's error, which every waiting producer also gets.
        """
        batch, self.pending = self.pending, []
        error = self.broken
        if error is None and self.fd < 0:
            error = PersistenceError(f"{self.path}: the log is closed")
        if error is not None:
            return self._settle(batch, error)
        self.busy = True
        fd, start, seq = self.fd, self.size, self.next_seq
        sync = self.policy == "always" and any(waiter for _, waiter in batch)
        lines: list[bytes] = []
        stage = "encode"
        self.mutex.release()
        try:
            lines = [encode(record, seq + i) for i, (record, _) in enumerate(batch)]
            stage = "write"
            write_all(self.ops, fd, b"".join(lines))
            stage = "fsync"
            if sync:
                self.ops.fsync(fd)
        except OSError as exc:
            error = self._write_failed(exc, stage, fd, start, len(batch))
        except Exception as exc:  # a bug, not the disk: still, no producer may hang
            error = PersistenceError(f"{self.path}: cannot encode a record: {exc!r}")
        finally:
            self.mutex.acquire()
            self.busy = False
        if error is None:
            sizes = [len(line) for line in lines]
            self.size += sum(sizes)
            self.next_seq += len(batch)
            if sync:
                self.synced = self.size
            self._written([record for record, _ in batch], sizes)
        return self._settle(batch, error)

    def _settle(
        self, batch: list[tuple[Record, _Ack | None]], error: PersistenceError | None
    ) -> PersistenceError | None:
        for _, waiter in batch:
            if waiter is not None:
                waiter.done, waiter.error = True, error
        self.batch_done.notify_all()
        return error

    def _write_failed(
        self, exc: OSError, stage: str, fd: int, start: int, count: int
    ) -> PersistenceError:
        """Turn a failed batch into the error its producers get.  Runs without the mutex."""
        if stage == "fsync":
            return self.fail(f"fsync failed: {exc}")
        try:
            self.ops.truncate(fd, start)  # a short write must not leave half a line
        except OSError as again:
            return self.fail(f"write failed ({exc}), then truncating it back failed: {again}")
        return PersistenceError(
            f"{self.path}: write failed: {exc}; {count} records were not written "
            "(no job among them was accepted) and the log was truncated back to its last "
            "good record"
        )
