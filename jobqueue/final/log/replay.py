"""Replaying a job log: records added up into the state a queue restarts from.

Replay keys state by job id, which is safe because the queue frees an id only
after that job's ``completed``/``failed`` record (see ``storage.py``).
:class:`Mirror` is the running log's cheaper copy of the same state, kept only
for compaction.  Replay never writes: ``log.py`` repairs a torn tail, and
``jobqueue inspect``/``check`` read through :func:`read_log` and change nothing.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from jobqueue.final.log.format import (
    HEADER_START,
    VERSION,
    Damage,
    Op,
    Record,
    completed_fields,
    decode,
    enqueued_fields,
    failed_fields,
    retrying_fields,
)
from jobqueue.final.storage import StoredJob
from jobqueue.vocabulary import Job, PersistenceError, Status

__all__ = ["Finished", "Live", "Mirror", "Replay", "State", "read_log", "replay", "scan"]


@dataclass(frozen=True, slots=True)
class Live:
    """An unfinished job, as the log knows it."""

    job: Job  # job.attempts counts the runs that ended in failure
    status: Status  # QUEUED, PROCESSING or RETRYING
    retry_at: float | None = None
    error: str | None = None
    size: int = 0  # bytes its records take in a compacted log


@dataclass(frozen=True, slots=True)
class Finished:
    """A finished job in the bounded history.  Its payload is not kept."""

    id: str
    status: Status  # COMPLETED or FAILED
    attempts: int = 0
    error: str | None = None
    size: int = 0


@dataclass(slots=True)
class State:
    """Live jobs in enqueue order and the bounded history, oldest first."""

    history_limit: int
    live: dict[str, Live] = field(default_factory=dict)
    history: OrderedDict[str, Finished] = field(default_factory=OrderedDict)
    live_bytes: int = 0  # about what a compacted log of this state would take

    def apply(self, record: Record, size: int) -> None:
        """Apply one record whose line took ``size`` bytes.

        Lenient by design: a record about an id the log does not know (its
        ``enqueued`` failed to write) is a no-op, and a second ``enqueued``
        for a live id replaces it, as the queue did after losing the first
        job's completion to a failed write.
        """
        op, job_id = record.op, record.id
        old = self.live.get(job_id)
        if op is Op.ENQUEUED:
            assert record.job is not None
            self._forget(job_id)
            self._set(Live(record.job, Status.QUEUED, size=size))
        elif old is None:
            if op in (Op.COMPLETED, Op.FAILED):
                self._finish(record, size)
        elif op is Op.STARTED:  # the commonest record: built directly, not by replace()
            self.live[job_id] = Live(old.job, Status.PROCESSING, old.retry_at, old.error, old.size)
        elif op is Op.RETRYING:
            job = replace(old.job, attempts=record.attempts)
            # A compacted log keeps one retrying line: count only the first.
            grown = old.size if old.status is Status.RETRYING else old.size + size
            self._set(Live(job, Status.RETRYING, record.retry_at, record.error, grown))
        elif op is Op.COMPLETED or op is Op.FAILED:
            self._finish(record, size)

    def _set(self, live: Live) -> None:
        old = self.live.get(live.job.id)
        self.live_bytes += live.size - (old.size if old else 0)
        self.live[live.job.id] = live

    def _finish(self, record: Record, size: int) -> None:
        self._forget(record.id)
        status = Status.COMPLETED if record.op is Op.COMPLETED else Status.FAILED
        self.history[record.id] = Finished(record.id, status, record.attempts, record.error, size)
        self.live_bytes += size
        while len(self.history) > self.history_limit:
            _, dropped = self.history.popitem(last=False)
            self.live_bytes -= dropped.size

    def _forget(self, job_id: str) -> None:
        for known in (self.live, self.history):
            gone = known.pop(job_id, None)
            if gone is not None:
                self.live_bytes -= gone.size

    def stored(self) -> list[StoredJob]:
        """What ``Storage.recover()`` returns: live jobs in enqueue order, then history."""
        jobs = [StoredJob(x.job, x.status, x.retry_at, x.error) for x in self.live.values()]
        for done in self.history.values():
            job = Job(id=done.id, attempts=done.attempts, created=0.0)
            jobs.append(StoredJob(job, done.status, None, done.error))
        return jobs


_SEAL = len('{"seq":1234567,"crc":"00000000"}\n')  # what seal() adds to a record's fields

_ENQUEUED, _COMPLETED, _FAILED, _RETRYING = Op.ENQUEUED, Op.COMPLETED, Op.FAILED, Op.RETRYING

#: A batch of records as the writer hands them over: (op, job id, fields).
Batch = list[tuple[Op, str, bytes]]


class Mirror:
    """What a compaction of the running log would write, kept up to date as it is written.

    Per live job the fields of its ``enqueued`` record and of its last
    ``retrying`` (or None); per finished job, the fields of its
    ``completed``/``failed``.  Compaction renumbers and re-checksums these
    (``seal``) without decoding anything.  The upkeep is a few dict operations
    per record, under the writer's mutex, on the enqueue path: that is why it
    keeps bytes and not :class:`Live` values.  A ``started`` record of an old
    log is not kept: a job in flight is re-run exactly like a queued one.
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
        done = [
            (Op.COMPLETED if x.status is Status.COMPLETED else Op.FAILED, x.id, _finished(x))
            for x in state.history.values()
        ]
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
            if op is _ENQUEUED:
                old = live.get(job_id)
                live[job_id] = (rest, None)
                grown += len(rest) + _SEAL
                if old is not None:  # a live id enqueued again: see State.apply
                    grown -= _size(old)
                done = history.pop(job_id, None)
                if done is not None:  # a finished id enqueued again leaves the history,
                    grown -= len(done) + _SEAL  # as State.apply's _forget() does
            elif op is _COMPLETED or op is _FAILED:
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
    return failed_fields(done.id, done.attempts, done.error)


# -- replay ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Replay:
    """A log read back: its state, and where its good records end."""

    state: State
    records: int  # good records after the header
    good_bytes: int  # the file's length up to the end of the last good record
    torn: bytes = b""  # the damaged last line, if any (tolerated: see read_log)
    torn_reason: str = ""
    torn_line: int = 0  # its line number, 1-based

    @property
    def next_seq(self) -> int:
        return self.records + 1


def replay(data: bytes, path: str, history_limit: int) -> Replay:
    """Replay a whole log held in ``data``; ``path`` only names it in errors.

    Damage in the last line is a torn write, tolerated: it is reported in
    ``Replay.torn``.  Damage before it raises ``PersistenceError`` naming the
    line.  Empty ``data`` is a log not yet begun.
    """
    state = State(history_limit)
    offset, seq = 0, 0
    while offset < len(data):
        end = data.find(b"\n", offset)
        end = len(data) if end < 0 else end + 1
        line = data[offset:end]
        try:
            record = _decode_at(line, seq)
        except Damage as exc:
            if seq == 0 and not (HEADER_START.startswith(line) or line.startswith(HEADER_START)):
                raise PersistenceError(
                    f"{path}: not a jobqueue log (line 1 is not a header: {exc}); "
                    "the file was left untouched"
                ) from None
            if end < len(data):
                raise PersistenceError(
                    f"{path}: line {seq + 1} (byte {offset}) is damaged: {exc}; "
                    "the file was left untouched: run `jobqueue check` on it"
                ) from None
            return Replay(state, max(seq - 1, 0), offset, line, str(exc), seq + 1)
        if seq == 0 and record.attempts != VERSION:
            raise PersistenceError(
                f"{path}: written in log format version {record.attempts}; "
                f"this jobqueue reads version {VERSION}; the file was left untouched"
            )
        if seq:
            state.apply(record, len(line))
        offset, seq = end, seq + 1
    return Replay(state, max(seq - 1, 0), offset)


def _decode_at(line: bytes, seq: int) -> Record:
    found, record = decode(line)
    if found != seq:
        raise Damage(f"sequence number {found}, expected {seq}")
    if (seq == 0) != (record.op is Op.HEADER):
        raise Damage("the header must be the first line, and only the first")
    return record


def read_log(path: str | os.PathLike[str], history_limit: int = 10_000) -> Replay:
    """Read and replay the log at ``path`` without changing it.  Missing = empty."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        data = b""
    except OSError as exc:
        raise PersistenceError(f"{name}: cannot read the log: {exc}") from exc
    return replay(data, name, history_limit)


def scan(data: bytes) -> Iterator[tuple[int, int, str]]:
    """Every damaged line of ``data`` as (line number, byte offset, reason).

    Unlike :func:`replay` it does not stop at the first: ``jobqueue check``
    points at all of them.  After a gap in the sequence numbers it resumes
    from the number found, so one lost line is reported once, not once per
    line after it.
    """
    offset, lineno, expected = 0, 1, 0
    while offset < len(data):
        end = data.find(b"\n", offset)
        end = len(data) if end < 0 else end + 1
        try:
            found, record = decode(data[offset:end])
            if found != expected:
                raise Damage(f"sequence number {found}, expected {expected}")
            if (found == 0) != (record.op is Op.HEADER):
                raise Damage("the header must be the first line, and only the first")
        except Damage as exc:
            yield lineno, offset, str(exc)
            if not str(exc).startswith("sequence number"):
                found = expected
        expected = found + 1
        offset, lineno = end, lineno + 1
