"""Replaying a job log: records added up into the state a queue restarts from.

Replay keys state by job id, which is safe because the queue frees an id only
after that job's ``completed``/``failed`` record (see ``storage.py``).
Replay never writes: ``joblog.py`` repairs a torn tail, and ``jobqueue
inspect``/``check`` read through :func:`read_log` and change nothing.
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
    decode,
)
from jobqueue.final.storage import StoredJob
from jobqueue.vocabulary import Job, PersistenceError, Status

__all__ = ["Finished", "Live", "Replay", "State", "read_log", "replay", "scan"]


#: The records that end a job, and the status each leaves it in.
_ENDS = {Op.COMPLETED: Status.COMPLETED, Op.FAILED: Status.FAILED, Op.CANCELLED: Status.CANCELLED}


@dataclass(frozen=True, slots=True)
class Live:
    """An unfinished job, as the log knows it."""

    job: Job  # job.attempts counts the runs that ended in failure
    status: Status  # QUEUED or RETRYING
    retry_at: float | None = None
    error: str | None = None
    size: int = 0  # bytes its records take in a compacted log


@dataclass(frozen=True, slots=True)
class Finished:
    """A finished job in the bounded history.  Only a FAILED one keeps its job (payload)."""

    id: str
    status: Status  # COMPLETED, FAILED or CANCELLED
    attempts: int = 0
    error: str | None = None
    size: int = 0
    job: Job | None = None  # FAILED: the dead job (None if written before dead() existed)
    failed_at: float | None = None  # FAILED: wall-clock time


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
        if op is Op.ENQUEUED or op is Op.REQUEUED:
            assert record.job is not None
            self._forget(job_id)
            self._set(Live(record.job, Status.QUEUED, size=size))
        elif old is None:
            if op in _ENDS:
                self._finish(record, size)
        elif op is Op.RETRYING:
            job = replace(old.job, attempts=record.attempts)  # Job's checks run again
            # A compacted log keeps one retrying line: count only the first.
            grown = old.size if old.status is Status.RETRYING else old.size + size
            self._set(Live(job, Status.RETRYING, record.retry_at, record.error, grown))
        elif op in _ENDS:
            self._finish(record, size)

    def _set(self, live: Live) -> None:
        old = self.live.get(live.job.id)
        self.live_bytes += live.size - (old.size if old else 0)
        self.live[live.job.id] = live

    def _finish(self, record: Record, size: int) -> None:
        self._forget(record.id)
        status = _ENDS[record.op]
        self.history[record.id] = Finished(
            record.id, status, record.attempts, record.error, size, record.job, record.failed_at
        )
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
            job = done.job or Job(id=done.id, attempts=done.attempts, created=0.0)
            jobs.append(StoredJob(job, done.status, None, done.error, done.failed_at))
        return jobs


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

    A last line that is cut short or fails its checksum is a torn write,
    tolerated: it is reported in ``Replay.torn``.  Any other damage raises
    ``PersistenceError`` naming the line: damage before the last line, and a
    last line that is whole (its checksum holds) yet wrong, say a gap in the
    sequence numbers where a line was lost.  A torn write cannot produce a
    whole line.  Empty ``data`` is a log not yet begun.
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
            if end < len(data) or exc.whole:
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
        raise Damage(f"sequence number {found}, expected {seq}", whole=True)
    if (seq == 0) != (record.op is Op.HEADER):
        raise Damage("the header must be the first line, and only the first", whole=True)
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
