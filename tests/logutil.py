"""Helpers for the job log's tests (``final`` only): open logs, write sample ones."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from jobqueue.final.log import JobLog
from jobqueue.final.log.format import Record, encode
from jobqueue.final.storage import StoredJob
from jobqueue.vocabulary import Job, PersistenceError, Priority, Status


@contextmanager
def opened(path: Path, **options: Any) -> Iterator[tuple[JobLog, list[StoredJob]]]:
    """A recovered JobLog, closed on the way out (even if the test fails)."""
    log = JobLog(path, **options)
    try:
        yield log, log.recover()
    finally:
        log.close()


def recovered(path: Path, **options: Any) -> list[StoredJob]:
    """Open the log, take what it recovers, close it."""
    with opened(path, **options) as (_, jobs):
        return jobs


def open_error(path: Path, **options: Any) -> str:
    """Open a log that must be refused: the message of its ``PersistenceError``."""
    try:
        log = JobLog(path, **options)  # a lock held elsewhere is refused here
    except PersistenceError as exc:
        return str(exc)
    try:
        log.recover()
    except PersistenceError as exc:
        return str(exc)
    finally:
        log.close()
    raise AssertionError(f"{path} opened, but should have been refused")


def summary(jobs: list[StoredJob]) -> list[tuple[str, Status, int]]:
    return [(s.job.id, s.status, s.job.attempts) for s in jobs]


def write_sample(path: Path) -> list[tuple[str, Status, int]]:
    """A small log with every kind of record, binary payloads included.

    Returns what it recovers to, for comparison.
    """
    with opened(path, fsync="never") as (log, _):
        log.enqueued(Job(id="a", priority=Priority.HIGH, payload=bytes(range(256))))
        log.enqueued(Job(id="b", payload=b"\n\r\x00{}\"'"))
        log.started("a", 1)
        log.retrying("a", 1, time.time() + 60, "RuntimeError('boom')")
        log.enqueued(Job(id="c", priority=Priority.LOW, handler="send"))
        log.started("c", 1)
        log.completed("c")
        log.enqueued(Job(id="d"))
        log.started("d", 1)
        log.failed(Job(id="d"), 1, "ValueError('bad')", 1_700_000_000.0)
        log.enqueued(Job(id="e \u00e9\udc80\n", payload=b""))
        log.started("b", 1)  # writes nothing
    return summary(recovered(path))


def append_record(path: Path, record: Record) -> None:
    """Append ``record`` to a closed log as its next line, checksummed.

    For lines a JobLog would refuse to write, to check how replay takes them.
    """
    with open(path, "ab") as f:
        f.write(encode(record, len(lines(path))))


def lines(path: Path) -> list[bytes]:
    return Path(path).read_bytes().splitlines(keepends=True)


def mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o777
