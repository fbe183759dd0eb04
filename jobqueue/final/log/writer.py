"""Appending to the job log: one writer at a time, and disk failures.

Records wait in ``pending`` (as their fields, see ``format.py``) until a
*write* numbers them, seals them and hands them to the OS in one ``write``.
Whoever writes first takes the *writer role* (``busy``) under the mutex, then
releases the mutex for the system call and takes it back to account for the
batch (:meth:`Writer._lead`).  Only the role holder touches the file, so
lines land in the order they were numbered, and a failed write is truncated
back before anyone writes after it.

- ``"interval"`` and ``"never"`` owe the acknowledgement no fsync, so there is
  nothing for producers to share: a producer waits until the role is free,
  then writes its own ``enqueued`` line with the buffered lines before it.
  No waiting object, no Condition round unless another write is in flight.
- ``"always"`` keeps *group commit*: producers append to ``pending`` and one of
  them, the *leader*, writes every pending line in one ``write`` and one
  ``fsync``, then wakes the others, whose lines were in its batch.  N
  concurrent enqueues cost about one fsync, not N.

Why the mutex is released around the ``write``, even for a lone producer:
the system call gives up the GIL, a worker runs, and a worker that records an
outcome (``completed``) then needs the mutex.  Held across the call, it makes
that worker block and be woken again, every job: measured, 18,700 instead of
37,900 jobs/s through the queue (4 workers, 1 producer, ``"interval"``).

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
from collections.abc import Iterator

from jobqueue.final.log.files import FileOps, write_all
from jobqueue.final.log.format import Op, seal
from jobqueue.final.log.replay import Batch, Mirror
from jobqueue.vocabulary import PersistenceError

__all__ = ["Writer"]

logger = logging.getLogger(__name__)

_ENQUEUED = Op.ENQUEUED


class _Ack:
    """How an ``"always"`` producer learns that the batch holding its line is done."""

    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = False
        self.error: PersistenceError | None = None


class Writer:
    """Appends records to the log's file.  Every field is guarded by ``mutex``.

    Each batch that reached the file is added to ``mirror`` (compaction's
    copy of the state) and, while a compaction runs, to ``tail``.
    """

    def __init__(
        self, path: str, policy: str, ops: FileOps, buffer_limit: int, mirror: Mirror
    ) -> None:
        self.path, self.policy, self.ops = path, policy, ops
        self.group_commit = policy == "always"
        self.buffer_limit = buffer_limit
        self.mirror = mirror
        self.tail: Batch | None = None  # while compacting: records written since its snapshot
        self.mutex = threading.Lock()
        # Waiters: "always" producers whose line is pending or being written;
        # anyone waiting for the writer role (a producer about to write, the
        # flusher, compaction, close()).  Notified, if ``waiting``, when a
        # batch is done, when the role is handed back, when an fsync outside
        # the role ends, and when a waiter for the role leaves (producers
        # stood back for it).
        self.batch_done = threading.Condition(self.mutex)
        self.pending: Batch = []  # numbered and sealed only when written
        self.acks: list[_Ack] = []  # "always": the producers whose lines are in pending
        self.busy = False  # someone holds the writer role: only they touch the file
        self.wanted = 0  # flusher, compaction or close() wait for the role: producers yield
        self.syncing = 0  # fsyncs running outside the role: the fd must stay open
        self.waiting = 0  # threads in batch_done.wait(): nobody waiting, nobody to notify
        self.fd = -1
        self.size = 0  # bytes written: the end of the last good record
        self.synced = 0  # bytes known to be on disk
        self.next_seq = 1
        self.broken: PersistenceError | None = None  # set once: fail-stop
        self.closed = False

    def ack(self, job_id: str, rest: bytes) -> None:
        """Write an ``enqueued`` record and everything buffered before it; return once
        it is written (and, under ``"always"``, fsynced)."""
        if self.group_commit:
            self._ack_together(job_id, rest)
            return
        with self.mutex:
            # Only the role holder touches the file.  Stand back for the flusher,
            # compaction and close(), too: re-taking the role at once could starve them.
            while self.busy or self.wanted:
                self._wait()
            if self.broken is not None or self.closed or self.fd < 0:
                raise self.unusable()
            self.pending.append((_ENQUEUED, job_id, rest))
            error = self._lead()
        if error is not None:
            raise error

    def buffer(self, op: Op, job_id: str, rest: bytes) -> None:
        """Add a record that may wait: written with the next batch, or now if the buffer is full."""
        with self.mutex:
            if self.broken is not None or self.closed or self.fd < 0:
                raise self.unusable()
            pending = self.pending
            pending.append((op, job_id, rest))
            if len(pending) < self.buffer_limit or self.busy or self.wanted:
                return
            error = self._lead()
        if error is not None:
            raise error

    def flush(self, *, sync: bool) -> None:
        """Write the buffered records, then fsync if ``sync`` and anything is new."""
        with self.mutex:
            if self.broken is not None or self.closed or self.fd < 0:
                raise self.unusable()
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
            if self.waiting:
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
            if self.broken is not None or self.closed or self.fd < 0:
                raise self.unusable()
            self.busy = True
        try:
            yield
        finally:
            with self.mutex:
                self.busy = False
                if self.waiting:
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
        runs outside it).  Caller holds the mutex, and takes the role or writes
        before releasing it, or needs only a moment with no batch in flight.

        ``"always"`` producers stand back while someone waits here: a producer
        that re-takes the mutex at once could otherwise starve the flusher and
        compaction for ever.
        """
        self.wanted += 1
        try:
            while self.busy or (fd_idle and self.syncing):
                self._wait()
        finally:
            self.wanted -= 1
            if not self.wanted and self.waiting:  # producers that stood back may go on
                self.batch_done.notify_all()

    def unusable(self) -> PersistenceError:
        """Why nothing can be appended: the fail-stop error, or a closed log."""
        if self.broken is not None:
            return self.broken
        return PersistenceError(f"{self.path}: the log is closed")

    def fail(self, reason: str) -> PersistenceError:
        """Fail stop: refuse every append until the log is reopened and replayed."""
        if self.broken is None:  # plain assignment: safe with or without the mutex
            self.broken = PersistenceError(
                f"{self.path}: {reason}; the log refuses appends until the queue is "
                "reopened and replays it"
            )
            logger.error("%s", self.broken)
        return self.broken

    # -- writing ------------------------------------------------------------------------

    def _ack_together(self, job_id: str, rest: bytes) -> None:
        """Group commit (``"always"``): lead a batch, or wait for the leader's."""
        with self.mutex:
            if self.broken is not None or self.closed or self.fd < 0:
                raise self.unusable()
            waiter = _Ack()
            self.pending.append((_ENQUEUED, job_id, rest))
            self.acks.append(waiter)
            while not waiter.done:
                if self.busy or self.wanted:
                    self._wait()
                else:
                    self._lead()
        if waiter.error is not None:
            raise waiter.error

    def _wait(self) -> None:
        """Wait on ``batch_done``, counted: notifying nobody is skipped, not paid for."""
        self.waiting += 1
        try:
            self.batch_done.wait()
        finally:
            self.waiting -= 1

    def _lead(self) -> PersistenceError | None:
        """Write every pending record as one batch (fsynced if an ``"always"``
        producer waits for it).  Caller holds the mutex, not the role.

        Releases the mutex while it writes and fsyncs, so others can queue up
        behind it.  Returns the batch's error, which every waiting producer
        also gets.
        """
        batch, self.pending = self.pending, []
        acks, self.acks = self.acks, []
        error = self.broken
        if error is None and self.fd < 0:
            error = PersistenceError(f"{self.path}: the log is closed")
        if error is not None:
            return self._settle(acks, error)
        self.busy = True
        fd, start, seq = self.fd, self.size, self.next_seq
        sync = bool(acks)  # only "always" producers wait on acks
        data = b""
        stage = "encode"
        self.mutex.release()
        try:
            if len(batch) == 1:  # a lone enqueue, the commonest write: no list, no join
                data = seal(batch[0][2], seq)
            else:
                data = b"".join([seal(rest, seq + i) for i, (_, _, rest) in enumerate(batch)])
            stage = "write"
            write_all(self.ops, fd, data)
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
            self.size += len(data)
            self.next_seq += len(batch)
            if sync:
                self.synced = self.size
            self.mirror.add(batch)
            if self.tail is not None:
                self.tail.extend(batch)
        return self._settle(acks, error)

    def _settle(self, acks: list[_Ack], error: PersistenceError | None) -> PersistenceError | None:
        for waiter in acks:
            waiter.done, waiter.error = True, error
        if self.waiting:
            self.batch_done.notify_all()
        return error

    def _write_failed(
        self, exc: OSError, stage: str, fd: int, start: int, count: int
    ) -> PersistenceError:
        """Turn a failed batch into the error its producers get."""
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
