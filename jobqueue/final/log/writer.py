"""Appending to the job log: one writer at a time, and disk failures.

The :class:`Writer` owns the log's file descriptor for its whole life: it
opens the file (under the rules in ``files.open_log``), repairs a torn tail,
appends, swaps in a compacted file, and closes it.  Compaction
(``compaction.py``) talks to it through :meth:`Writer.snapshot` and
:meth:`Snapshot.swap`, never through its fields.

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
  ``retrying`` and ``failed`` are written the same way, at once: each one
  spends a run of the retry budget, which a crash must not give back.
  No waiting object, no Condition round unless another write is in flight.
- ``"always"`` keeps *group commit*: producers append to ``pending`` and one of
  them, the *leader*, writes every pending line in one ``write`` and one
  ``fsync``, then wakes the others, whose lines were in its batch.  N
  concurrent enqueues cost about one fsync, not N.

The mutex is released around the ``write``, even for a lone producer: the
system call gives up the GIL, and a worker that runs meanwhile and records
an outcome needs the mutex.  Held across the call, it halves the throughput
(``docs/durability.md``).

Disk failures end here too.  A failed ``write`` truncates the file back to
its last good record and fails the batch's acknowledgements (its ``enqueued``
records: those jobs were not accepted); every other record of the batch, a
``completed`` buffered for another job say, goes back to the buffer and is
written with the next batch.  The log goes on.  A failed ``fsync`` fails the
log *stop* (``broken``): no one may assume a retried fsync makes earlier data
safe, so every later append raises until the log is reopened and replayed.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from jobqueue.final.log.compaction import Mirror
from jobqueue.final.log.files import FileOps, open_log, read_all, set_aside, write_all
from jobqueue.final.log.format import HEADER_FIELDS, Batch, Op, seal
from jobqueue.final.log.replay import Replay
from jobqueue.vocabulary import PersistenceError

__all__ = ["Snapshot", "Writer"]

logger = logging.getLogger(__name__)

_ACKS = (Op.ENQUEUED, Op.REQUEUED)  # records whose caller learns they failed: not kept


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
        self, path: str, policy: str, ops: FileOps, buffer_limit: int, history: int
    ) -> None:
        self.path, self.policy, self.ops = path, policy, ops
        self.group_commit = policy == "always"
        self.buffer_limit = buffer_limit
        self.mirror = Mirror(history)
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

    # -- the file's life: open, start, close --------------------------------------------

    def open(self) -> bytes:
        """Open the log (creating it if missing) and return what it holds.

        The bytes are read through the descriptor the writer then appends
        to: what is replayed is the file that is written, even if the name
        is changed meanwhile.
        """
        try:
            self.fd = open_log(self.ops, self.path)
            return read_all(self.fd)
        except OSError as exc:
            self._drop_fd()
            raise PersistenceError(f"{self.path}: cannot open the log: {exc}") from exc
        except PersistenceError:
            self._drop_fd()
            raise

    def start(self, found: Replay) -> None:
        """Begin appending after the replayed log ``found``: set a torn last line
        aside first, write the header of a new log."""
        ops, fd = self.ops, self.fd
        try:
            if found.torn:
                why = f"line {found.torn_line} was torn ({found.torn_reason})"
                set_aside(ops, self.path, fd, found.good_bytes, torn=found.torn, why=why)
            self.size = self.synced = found.good_bytes
            if self.size == 0:  # a new log: its header, and its name, must be durable
                self.size = self.synced = write_all(ops, fd, seal(HEADER_FIELDS, 0))
                ops.fsync(fd)
                ops.fsync_dir(self.path)
        except OSError as exc:
            self._drop_fd()
            raise PersistenceError(f"{self.path}: cannot open the log: {exc}") from exc
        self.mirror, self.next_seq = Mirror.of(found.state), found.next_seq

    def close(self) -> None:
        """Write what is buffered, fsync (unless ``"never"``), close the file.

        Idempotent; logs, never raises, what failed: the caller is closing.
        """
        with self.mutex:
            if self.closed:
                return
            self.closed = True
            self.wait_for_role(fd_idle=True)
            error = self._lead() if self.pending else None
            fd, self.fd = self.fd, -1
            broken = self.broken or error
        if fd < 0:
            return
        try:
            if broken is None and self.policy != "never":
                self.ops.fsync(fd)
        except OSError as exc:
            logger.error("%s: fsync at close failed: %s", self.path, exc)
        finally:
            os.close(fd)
        if broken is not None:
            logger.error("%s: closed a failed log: %s", self.path, broken)

    def _drop_fd(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    # -- compaction's two calls ----------------------------------------------------------

    def snapshot(self) -> Snapshot | None:
        """The state to compact from, or None while another compaction runs.

        Taken between batches (a batch half-applied would make it lie); from
        now until the snapshot is released, every batch written is also kept
        for it, to be copied into the new file.
        """
        with self.mutex:
            self.check_usable()
            if self.tail is not None:
                return None  # one compaction at a time
            self.wait_for_role()
            mode = os.fstat(self.fd).st_mode & 0o777
            self.tail = []
            return Snapshot(self, self.mirror.copy(), mode)

    # -- appending ----------------------------------------------------------------------

    def write_now(self, op: Op, job_id: str, rest: bytes) -> None:
        """Write a record and everything buffered before it; return once it is
        written (and, under ``"always"``, fsynced).

        For ``enqueued`` (the acknowledgement) and for the records that spend
        the retry budget (``retrying``, ``failed``).
        """
        if self.group_commit:
            self._write_together([(op, job_id, rest)])
            return
        with self.mutex:
            # Only the role holder touches the file.  Stand back for the flusher,
            # compaction and close(), too: re-taking the role at once could starve them.
            while self.busy or self.wanted:
                self._wait()
            if self.broken is not None or self.closed or self.fd < 0:  # check_usable(), no call
                self.check_usable()
            self.pending.append((op, job_id, rest))
            error = self._lead()
        if error is not None:
            raise error

    def write_all_now(self, records: Batch) -> None:
        """``write_now`` for several records at once: one write (one fsync under
        ``"always"``), so a batch is written whole or, if the write fails, not at all
        (a short write is truncated back, as for one record)."""
        if self.group_commit:
            self._write_together(records)
            return
        with self.mutex:
            while self.busy or self.wanted:  # as in write_now
                self._wait()
            self.check_usable()
            self.pending.extend(records)
            error = self._lead()
        if error is not None:
            raise error

    def buffer(self, op: Op, job_id: str, rest: bytes) -> None:
        """Add a record that may wait: written with the next batch, or now if the buffer is full."""
        with self.mutex:
            if self.broken is not None or self.closed or self.fd < 0:  # check_usable(), no call
                self.check_usable()
            pending = self.pending
            pending.append((op, job_id, rest))
            if len(pending) < self.buffer_limit or self.busy or self.wanted:
                return
            self._lead()
        # A failed write put this record back in the buffer (see _lead): it is
        # not lost, so the caller is not told; the flusher reports the failure.
        if self.broken is not None:
            raise self.broken

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
            if self.waiting:
                self.batch_done.notify_all()
        if failed is not None:
            raise failed

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

    def check_usable(self) -> None:
        """Raise why nothing can be appended: the fail-stop error, or a closed log."""
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

    # -- writing ------------------------------------------------------------------------

    def _write_together(self, records: Batch) -> None:
        """Group commit (``"always"``): lead a batch, or wait for the leader's."""
        with self.mutex:
            self.check_usable()
            waiter = _Ack()
            self.pending.extend(records)
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
            error = self._write_failed(exc, stage, fd, start, batch)
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
        if acks or self.waiting:  # a lone producer with nobody behind it: nothing to settle
            self._settle(acks, error)
        return error

    def _settle(self, acks: list[_Ack], error: PersistenceError | None) -> PersistenceError | None:
        for waiter in acks:
            waiter.done, waiter.error = True, error
        if self.waiting:
            self.batch_done.notify_all()
        return error

    def _write_failed(
        self, exc: OSError, stage: str, fd: int, start: int, batch: Batch
    ) -> PersistenceError:
        """Turn a failed batch into the error its producers get.  Caller does not
        hold the mutex: it is taken here to put records back.

        The batch's ``enqueued`` records fail with it: their producers get the
        error, and those jobs were not accepted.  Every other record goes back
        to the front of the buffer (it happened before whatever was buffered
        meanwhile): a disk that filled up must not make other jobs' finished
        runs be forgotten, and so run again.
        """
        if stage == "fsync":
            return self.fail(f"fsync failed: {exc}")
        try:
            self.ops.truncate(fd, start)  # a short write must not leave half a line
        except OSError as again:
            return self.fail(f"write failed ({exc}), then truncating it back failed: {again}")
        kept = [record for record in batch if record[0] not in _ACKS]
        if kept:
            with self.mutex:
                self.pending[:0] = kept
        return PersistenceError(
            f"{self.path}: write failed: {exc}; {len(batch) - len(kept)} enqueued records "
            "were not written (no job among them was accepted), the log was truncated back "
            f"to its last good record, and {len(kept)} other records stay buffered"
        )


class Snapshot:
    """A compaction's view of the writer: the state to write, and the swap.

    From :meth:`Writer.snapshot` until :meth:`release`, every batch the writer
    writes is also kept here (:meth:`appended`), so that the new file misses
    nothing written while it was being built.
    """

    def __init__(self, writer: Writer, mirror: Mirror, mode: int) -> None:
        self._writer = writer
        self.mirror = mirror  # a copy: compaction reads it without the mutex
        self.mode = mode  # the log's permission bits, for the new file
        self.swapped = False  # the new file is the log: its fd is the writer's

    def appended(self, minimum: int) -> Batch | None:
        """The records written since the last call (or the snapshot), if at least
        ``minimum``; else None, and they stay for :meth:`swap`."""
        w = self._writer
        with w.mutex:
            if w.tail is None or len(w.tail) < minimum:
                return None
            tail, w.tail = w.tail, []
            return tail

    def swap(self, new_fd: int, new_path: str, finish: Callable[[Batch], tuple[int, int]]) -> None:
        """Make the file open at ``new_fd`` (named ``new_path``) the log.

        Holds the writer role, with no fsync running, while ``finish`` writes
        the last records appended (its argument) to ``new_fd`` and fsyncs it,
        returning (the new file's size, its next sequence number); then renames
        ``new_path`` over the log, appends go to ``new_fd`` from then on, the
        old descriptor is closed and the directory fsynced.  Once ``swapped``
        is set, ``new_fd`` belongs to the writer; if this raises before, it
        still belongs to the caller, and the old log goes on unchanged.
        """
        w = self._writer
        with w.mutex:
            w.wait_for_role(fd_idle=True)
            w.check_usable()
            w.busy = True  # the pause: no batch is written until the swap is done
            tail, w.tail = w.tail or [], None
        old_fd = -1
        try:
            size, seq = finish(tail)
            w.ops.rename(new_path, w.path)
            with w.mutex:  # from now on appends go to the new file
                old_fd, w.fd = w.fd, new_fd
                w.size = w.synced = size
                w.next_seq = seq
                self.swapped = True
            try:
                w.ops.fsync_dir(w.path)
            except OSError as exc:  # the rename happened, but whether it is durable is unknown
                raise w.fail(f"fsync of the directory after compaction failed: {exc}") from exc
        finally:
            with w.mutex:
                w.busy = False
                if w.waiting:
                    w.batch_done.notify_all()
            if old_fd >= 0:
                os.close(old_fd)

    def release(self) -> None:
        """Stop keeping batches for this snapshot (the compaction is over)."""
        w = self._writer
        with w.mutex:
            w.tail = None
