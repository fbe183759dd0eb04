"""The job log's format: one JSON record per line, checksummed.

This module only turns records into bytes and back; ``replay.py`` adds
records up into state, ``writer.py`` appends them to a file.

A log is a header line, then one line per record, in the order they happened::

    {"seq":0,"op":"header","format":"jobqueue.final.log","version":1,"crc":"5362409b"}
    {"seq":1,"op":"enqueued","id":"mail-7","priority":"HIGH","attempts":0,"created":1732783305.25,"handler":"send_email","payload":"eyJ0byI6ICJhQGIuYyJ9","crc":"d18df9fd"}
    {"seq":2,"op":"retrying","id":"mail-7","attempts":1,"retry_at":1732783306.25,"error":"TimeoutError('smtp')","crc":"9b658df2"}

A delayed job's ``enqueued`` record ends with ``"run_at":<time.time()>``
(absent: None); ``{"op":"cancelled","id":...}`` ends a cancelled job.

- ``seq`` numbers the lines of this file, 0 for the header: a line lost or
  repeated in the middle is caught, not just a damaged one.
- ``crc`` is the CRC-32 of the line's bytes before ``,"crc":``, as 8 hex
  digits, and always the last field.  A line that still parses as JSON but was
  changed (a flipped bit in a digit, a lost byte in the payload) is caught.
  CRC-32 detects every burst error up to 32 bits and all but 1 in 4 billion
  others: it guards against accidents (torn writes, bad sectors), not malice;
  anyone who can write the log can also fix its checksums.
- Payloads are base64, so any bytes fit in a human-readable line.  Text is
  written with ``ensure_ascii``, so the file is ASCII and any ``str`` id
  (even one with lone surrogates) round-trips.
- Numbers are finite: ``NaN`` and ``Infinity`` are not JSON, so they are
  never written (``ValueError``) and a line holding one is damage.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jobqueue.vocabulary import MAX_RETRIES, Job, Priority, require_count

__all__ = [
    "FORMAT",
    "HEADER_START",
    "VERSION",
    "Batch",
    "Damage",
    "Op",
    "Record",
    "cancelled_fields",
    "completed_fields",
    "decode",
    "encode",
    "enqueued_fields",
    "failed_fields",
    "fields",
    "header",
    "requeued_fields",
    "retrying_fields",
    "seal",
]

FORMAT = "jobqueue.final.log"
VERSION = 1
_CRC_TAIL = len(',"crc":"00000000"}\n')  # the fixed-size end of every line
HEADER_START = b'{"seq":0,"op":"header",'  # what even a torn header starts with


class Op(enum.Enum):
    """What a record says happened."""

    HEADER = "header"
    ENQUEUED = "enqueued"  # the acknowledgement: the whole job
    RETRYING = "retrying"  # a run failed; the next is due at retry_at
    COMPLETED = "completed"
    FAILED = "failed"  # failed for good: dead-lettered, the whole job kept
    CANCELLED = "cancelled"  # cancel(): it never runs
    REQUEUED = "requeued"  # a dead job queued again, attempts reset: the whole job


@dataclass(frozen=True, slots=True)
class Record:
    """One line of the log, decoded."""

    op: Op
    id: str = ""
    job: Job | None = None  # ENQUEUED, REQUEUED; FAILED (None in a log written before dead())
    attempts: int = 0  # runs used (RETRYING, FAILED)
    retry_at: float | None = None  # RETRYING: wall-clock time the next run is due
    error: str | None = None  # RETRYING, FAILED: the last failure
    failed_at: float | None = None  # FAILED: wall-clock time it failed for good


#: Records as the writer hands them over: (op, job id, fields), oldest first.
Batch = list[tuple[Op, str, bytes]]


class Damage(Exception):
    """A line that is not a valid record; its message says why.

    ``whole`` is true for a line that ends in a valid checksum: whatever is
    wrong with it, a torn write (a prefix of what was written) cannot have
    produced it, so it is damage even as the last line of a log.
    """

    def __init__(self, reason: str, *, whole: bool = False) -> None:
        super().__init__(reason)
        self.whole = whole


def encode(record: Record, seq: int) -> bytes:
    """The line for ``record`` as line number ``seq`` of its file, newline included."""
    return seal(fields(record), seq)


def seal(rest: bytes, seq: int) -> bytes:
    """A whole line from a record's fields (see :func:`fields`): its ``seq`` in front,
    its checksum behind.

    Split from the fields so that the fields can be built before the log's
    mutex is taken; only this, which needs the line's number, runs under it.
    """
    body = b'{"seq":%d%s' % (seq, rest)
    return b'%s,"crc":"%08x"}\n' % (body, zlib.crc32(body))


def fields(record: Record) -> bytes:
    """A record's fields after ``seq``: ``,"op":...``, without the closing brace.

    The same bytes ``json.dumps(fields, separators=(",", ":"))`` would give,
    built by hand: the ``*_fields`` functions below run for every record.
    """
    op = record.op
    if op is Op.HEADER:
        return HEADER_FIELDS
    if op is Op.ENQUEUED or op is Op.REQUEUED:  # both carry the whole job
        assert record.job is not None
        return (enqueued_fields if op is Op.ENQUEUED else requeued_fields)(record.job)
    if op is Op.RETRYING:
        assert record.retry_at is not None
        assert record.error is not None
        return retrying_fields(record.id, record.attempts, record.retry_at, record.error)
    if op is Op.FAILED:
        return failed_fields(record.id, record.attempts, record.error, record.job, record.failed_at)
    if op is Op.CANCELLED:
        return cancelled_fields(record.id)
    return completed_fields(record.id)


def enqueued_fields(job: Job, op: str = "enqueued") -> bytes:
    """The whole job; with ``op="requeued"``, a dead job queued again."""
    payload = base64.b64encode(job.payload).decode("ascii")
    text = (
        f',"op":"{op}","id":{_str(job.id)},"priority":"{_NAMES[job.priority]}",'
        f'"attempts":{job.attempts},"created":{_num("created", job.created)},'
        f'"handler":{_opt(job.handler)},"payload":"{payload}"'
    )
    if job.run_at is not None:  # a delayed job; absent means None
        text += f',"run_at":{_num("run_at", job.run_at)}'
    return text.encode()


def requeued_fields(job: Job) -> bytes:
    """An ``enqueued`` record by another name: a dead job queued again, the whole job."""
    return enqueued_fields(job, "requeued")


_NAMES = {p: p.name for p in Priority}  # Priority.name is a descriptor call; this is a lookup


def cancelled_fields(job_id: str) -> bytes:
    return b',"op":"cancelled","id":%s' % _str(job_id).encode()


def completed_fields(job_id: str) -> bytes:
    return b',"op":"completed","id":%s' % _str(job_id).encode()


def retrying_fields(job_id: str, attempts: int, retry_at: float, error: str) -> bytes:
    return (
        f',"op":"retrying","id":{_str(job_id)},"attempts":{attempts},'
        f'"retry_at":{_num("retry_at", retry_at)},"error":{_opt(error)}'
    ).encode()


def failed_fields(
    job_id: str,
    attempts: int,
    error: str | None,
    job: Job | None = None,
    failed_at: float | None = None,
) -> bytes:
    """A ``failed`` record; with ``job``, the whole job too, so that a dead job keeps
    its payload through compaction (``dead()``, ``requeue()``)."""
    text = f',"op":"failed","id":{_str(job_id)},"attempts":{attempts},"error":{_opt(error)}'
    if job is None:
        return text.encode()
    payload = base64.b64encode(job.payload).decode("ascii")
    when = "null" if failed_at is None else _num("failed_at", failed_at)
    return (
        f'{text},"failed_at":{when},"priority":"{_NAMES[job.priority]}",'
        f'"created":{_num("created", job.created)},"handler":{_opt(job.handler)},'
        f'"payload":"{payload}"'
    ).encode()


_str: Callable[[str], str] = json.encoder.encode_basestring_ascii  # quoted, escaped, ASCII


def _opt(text: str | None) -> str:
    return "null" if text is None else _str(text)


def _num(name: str, value: float) -> str:
    if type(value) is float and math.isfinite(value):
        return float.__repr__(value)  # what json.dumps writes for a finite float
    try:
        return json.dumps(value, allow_nan=False)  # NaN and infinities are not JSON
    except ValueError:
        raise ValueError(f"{name} must be a finite number, got {value!r}") from None


HEADER_FIELDS = f',"op":"header","format":"{FORMAT}","version":{VERSION}'.encode()


def header() -> Record:
    return Record(Op.HEADER)


def decode(line: bytes) -> tuple[int, Record]:
    """Check and decode one line (with its newline): its sequence number and record.

    Raises :class:`Damage` if the line is unterminated, fails its checksum,
    or does not hold a valid record.
    """
    if not line.endswith(b"\n"):
        raise Damage("the line is unterminated")
    body, tail = line[:-_CRC_TAIL], line[-_CRC_TAIL:]
    if not (tail.startswith(b',"crc":"') and tail.endswith(b'"}\n')):
        raise Damage("the line does not end with its checksum")
    computed = b"%08x" % zlib.crc32(body)
    if tail[8:16] != computed:  # exact bytes: even "A" for "a" is damage
        stored = tail[8:16].decode("ascii", "replace")
        raise Damage(f"checksum mismatch (stored {stored}, computed {computed.decode()})")
    # From here on the line is whole (its checksum holds): every problem is
    # damage, never a torn write, and never an exception other than Damage.
    try:
        fields = json.loads(line, parse_constant=_no_constant)
    except RecursionError:  # a valid checksum over absurd nesting: not ours
        raise Damage("not a record: nested too deeply", whole=True) from None
    except ValueError as exc:  # a valid checksum over invalid JSON: written by a bug
        raise Damage(f"not JSON: {exc}", whole=True) from None
    if not isinstance(fields, dict):
        raise Damage("not a JSON object", whole=True)
    try:
        return _int(fields["seq"]), _record(fields)
    except (
        AttributeError,
        LookupError,
        OverflowError,
        RecursionError,
        TypeError,
        ValueError,
        binascii.Error,
    ) as exc:
        raise Damage(f"invalid {fields.get('op')!r} record: {exc!r}", whole=True) from None


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _record(f: dict[str, Any]) -> Record:
    op = Op(f["op"])
    if op is Op.HEADER:
        if f["format"] != FORMAT:
            raise ValueError(f"format {f['format']!r}, expected {FORMAT!r}")
        return Record(op, attempts=_int(f["version"]))  # a header's "attempts" is its version
    job_id = f["id"]
    if not isinstance(job_id, str) or not job_id:
        raise TypeError("id must be a non-empty str")
    if op is Op.ENQUEUED or op is Op.REQUEUED:
        return Record(op, job_id, job=_job(job_id, f))
    if op is Op.COMPLETED or op is Op.CANCELLED:
        return Record(op, job_id)
    error = f["error"]
    if not isinstance(error, str):
        raise TypeError("error must be a str")
    if op is Op.RETRYING:
        retry_at = _time("retry_at", f["retry_at"])
        return Record(op, job_id, attempts=_attempts(f["attempts"]), retry_at=retry_at, error=error)
    if "payload" not in f:  # written before failed records kept the job
        return Record(op, job_id, attempts=_attempts(f["attempts"]), error=error)
    failed_at = None if f["failed_at"] is None else _time("failed_at", f["failed_at"])
    return Record(
        op,
        job_id,
        job=_job(job_id, f),
        attempts=_attempts(f["attempts"]),
        error=error,
        failed_at=failed_at,
    )


def _job(job_id: str, f: dict[str, Any]) -> Job:
    return Job(
        id=job_id,
        priority=Priority[f["priority"]],
        payload=base64.b64decode(f["payload"].encode("ascii"), validate=True),
        attempts=_int(f["attempts"]),
        created=_time("created", f["created"]),
        handler=f["handler"],
        run_at=None if f.get("run_at") is None else _time("run_at", f["run_at"]),
    )  # the constructor checks every field, as for a Job built by hand


def _time(name: str, value: object) -> float:
    """A wall-clock time read back: a finite number that fits a float."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {value!r}")
    seconds = float(value)  # OverflowError for an int too large for a float
    if not math.isfinite(seconds):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return seconds


def _attempts(value: object) -> int:
    """A run count read back, bounded as ``Job.attempts`` is: replay builds a Job from it."""
    require_count("attempts", value, 0, MAX_RETRIES + 1)
    assert isinstance(value, int)
    return value


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError(f"expected an int >= 0, got {value!r}")
    return value
