"""Structured logs for ``final``: the ``extra`` fields of every log record about a job.

A log line such as "job 'mail-7' failed for good" is for people; a JSON
formatter that indexes logs needs the same facts as fields.  Every record the
queue logs about one job carries them as attributes of the ``LogRecord``
(``logging``'s ``extra``):

- ``job_id`` (str), ``priority`` (the priority's name, "HIGH"...),
- ``attempt`` (int, 1 for the first run),
- ``duration`` (float seconds the run took; only where a run ended).
"""

from __future__ import annotations

from typing import Any

from jobqueue.final.speed import Entry
from jobqueue.vocabulary import Job

__all__ = ["job_fields", "run_fields"]


def job_fields(job: Job, attempt: int, duration: float | None = None) -> dict[str, Any]:
    """The ``extra`` for a log record about run ``attempt`` of ``job``."""
    fields: dict[str, Any] = {"job_id": job.id, "priority": job.priority.name, "attempt": attempt}
    if duration is not None:
        fields["duration"] = duration
    return fields


def run_fields(entry: Entry, now: float | None = None) -> dict[str, Any]:
    """The ``extra`` for a log record about the run of ``entry``'s job that a worker took;
    with ``now`` (``time.monotonic()``), a run that ended then, so with its duration."""
    job = entry.job
    return job_fields(job, job.attempts + 1, None if now is None else now - entry.started)
