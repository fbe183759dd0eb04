"""Compaction: rewrite the log as its live jobs plus its history, atomically.

The running log keeps a :class:`Mirror`, the bytes a compaction would write,
up to date as batches are written.  :func:`compact` writes a snapshot of it
to ``PATH.compact``, copies over what was appended meanwhile, fsyncs, and has
the writer swap the new file in (rename over ``PATH``, fsync the directory).

Crash-safe at every step: until the rename the old file is whole and a
leftover ``PATH.compact`` is removed at the next open; after it the new file
is whole, because it was fsynced first.  Appends go on while the bulk is
written and while what they appended meanwhile is copied over; they pause
only for the last few records, an fsync and the swap.

``PATH.compact`` is created with ``O_EXCL | O_NOFOLLOW``: a file or symlink
already there (planted by someone else in a shared directory, say) makes the
compaction fail, never makes it truncate or write through to another file.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

from jobqueue.final.log.files import remove, write_records
from jobqueue.final.log.format import (
    HEADER_FIELDS,
    Batch,
    Op,
    cancelled_fields,
    completed_fields,
    enqueued_fields,
    failed_fields,
    retrying_fields,
)
from jobqueue.final.log.replay import Finished, State
from jobqueue.vocabulary import PersistenceError, Status

if TYPE_CHECKING:
    from jobqueue.final.log.writer import Writer

__all__ = ["Mirror", "compact", "temporary_path"]

_CATCH_UP_ROUNDS = 4  # records appended meanwhile are copied at most this often...
_SMALL_TAIL = 256  # ...until fewer than this are left, to copy while appends pause


def temporary_path(path: str) -> str:
    """Where a compaction of the log at ``path`` builds the new file."""
    return path + ".compact"


def compact(writer: Writer, stop: threading.Event) -> bool:
    """Compact the writer's log; False if another compaction is running.

    Raises ``PersistenceError`` if it fails; the old log then goes on (unless
    the failure came after the rename: then the writer has failed stop).
    Gives up between chunks once ``stop`` is set.
    """
    snapshot = writer.snapshot()
    if snapshot is None:
        return False
    ops, path = writer.ops, writer.path
    tmp, fd = temporary_path(path), -1
    try:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        fd = ops.open(tmp, flags, snapshot.mode)
        os.fchmod(fd, snapshot.mode)  # the owner's mode, whatever the umask
        records = [HEADER_FIELDS, *snapshot.mirror.fields()]
        size, seq = write_records(ops, fd, records, 0, stop)
        for _ in range(_CATCH_UP_ROUNDS):  # copy what was appended meanwhile, unpaused
            # fsync first: the bulk's takes longest, and what is appended
            # during it is copied next, not in the pause.
            ops.fsync(fd)
            tail = snapshot.appended(_SMALL_TAIL)
            if tail is None:
                break
            more, seq = write_records(ops, fd, [rest for _, _, rest in tail], seq, stop)
            size += more

        def finish(tail: Batch) -> tuple[int, int]:
            more, next_seq = write_records(ops, fd, [rest for _, _, rest in tail], seq, stop)
            ops.fsync(fd)
            return size + more, next_seq

        snapshot.swap(fd, tmp, finish)
    except FileExistsError as exc:
        raise PersistenceError(
            f"{path}: compaction failed: {tmp} exists, and is not ours to overwrite "
            "(it is removed when the log is next opened)"
        ) from exc
    except OSError as exc:
        raise PersistenceError(f"{path}: compaction failed: {exc}") from exc
    finally:
        snapshot.release()
        if fd >= 0 and not snapshot.swapped:  # once swapped in, the writer's
            os.close(fd)
            remove(tmp)  # ours: created with O_EXCL
    return True


_SEAL = len('{"seq":1234567,"crc":"00000000"}\n')  # what seal() adds to a record's fields

_ENQUEUED, _COMPLETED, _FAILED, _RETRYING = Op.ENQUEUED, Op.COMPLETED, Op.FAILED, Op.RETRYING
_CANCELLED = Op.CANCELLED
_END_OPS = {
    Status.COMPLETED: Op.COMPLETED,
    Status.FAILED: Op.FAILED,
    Status.CANCELLED: Op.CANCELLED,
}
_REQUEUED = Op.REQUEUED


class Mirror:
    """What a compaction of the running log would write, kept up to date as it is written.

    Per live job the fields of its ``enqueued`` record (``run_at`` included)
    and of its last ``retrying`` (or None); per finished job, the fields of
    its ``completed``/``failed``/``cancelled``.  Compaction renumbers and re-checksums these
    (``seal``) without decoding anything.  The upkeep is a few dict operations
    per record, under the writer's mutex, on the enqueue path: that is why it
    keeps bytes and not replayed values.
    """

    __slots__ = ("history", "history_limit", "live", "live_bytes")

    def __init__(self, history_limit: int) -> None:
        self.history_limit = history_limit
        self.live: dict[str, tuple[bytes, bytes | None]] = {}  # in enqueue order
        self.history: OrderedDict[str, bytes] = OrderedDict()  # oldest first
        self.live_bytes = 0  # about what a compacted log would take

    @classmethod
    def of(cls, state: State) -> Mirror:
        """The mirror of a replayed log."""
        mirror = cls(state.history_limit)
        done = [(_END_OPS[x.status], x.id, _finished(x)) for x in state.history.values()]
        live = [(Op.ENQUEUED, x.job.id, enqueued_fields(x.job)) for x in state.live.values()]
        retries = [
            (Op.RETRYING, x.job.id, retrying_fields(x.job.id, x.job.attempts, x.retry_at, x.error))
            for x in state.live.values()
            if x.status is Status.RETRYING and x.retry_at is not None and x.error is not None
        ]
        mirror.add(done + live + retries)
        return mirror

    def add(self, batch: Batch) -> None:
        """Apply records just written, in order.  Lenient like :meth:`State.apply`."""
        live, history, grown = self.live, self.history, 0
        for op, job_id, rest in batch:
            if op is _ENQUEUED or op is _REQUEUED:  # a requeued line stays one when compacted
                old = live.get(job_id)
                live[job_id] = (rest, None)
                grown += len(rest) + _SEAL
                if old is not None:  # a live id enqueued again: see State.apply
                    grown -= _size(old)
                done = history.pop(job_id, None)
                if done is not None:  # a finished id enqueued again leaves the history,
                    grown -= len(done) + _SEAL  # as State.apply's _forget() does
            elif op is _COMPLETED or op is _FAILED or op is _CANCELLED:
                old = live.pop(job_id, None)
                if old is not None:
                    grown -= len(old[0]) + _SEAL if old[1] is None else _size(old)
                if job_id in history:  # finished before: it moves to the end, as in replay
                    grown -= len(history.pop(job_id)) + _SEAL
                history[job_id] = rest
                grown += len(rest) + _SEAL
                if len(history) > self.history_limit:
                    grown -= len(history.popitem(last=False)[1]) + _SEAL
            elif op is _RETRYING:
                old = live.get(job_id)
                if old is not None:
                    live[job_id] = (old[0], rest)
                    grown += len(rest) + _SEAL - (_size(old) - len(old[0]) - _SEAL)
        self.live_bytes += grown

    def copy(self) -> Mirror:
        """A snapshot for compaction: the values are bytes, so copying the dicts is enough."""
        mirror = Mirror(self.history_limit)
        mirror.live, mirror.history = dict(self.live), self.history.copy()
        mirror.live_bytes = self.live_bytes
        return mirror

    def fields(self) -> list[bytes]:
        """The records' fields that rebuild this state: history first, then live jobs.

        History goes first: an id both finished and live again must end live.
        """
        rests = list(self.history.values())
        for enqueued, retrying in self.live.values():
            rests.append(enqueued)
            if retrying is not None:
                rests.append(retrying)
        return rests


def _size(entry: tuple[bytes, bytes | None]) -> int:
    enqueued, retrying = entry
    return len(enqueued) + _SEAL + (0 if retrying is None else len(retrying) + _SEAL)


def _finished(done: Finished) -> bytes:
    if done.status is Status.COMPLETED:
        return completed_fields(done.id)
    if done.status is Status.CANCELLED:
        return cancelled_fields(done.id)
    return failed_fields(done.id, done.attempts, done.error, done.job, done.failed_at)
