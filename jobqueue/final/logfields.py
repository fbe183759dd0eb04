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

import logging
from typing import Any

from jobqueue.final.speed import Entry
from jobqueue.vocabulary import Job

__all__ = ["job_fields", "log_failed_run"]


def job_fields(job: Job, attempt: int, duration: float | None = None) -> dict[str, Any]:
    """The ``extra`` for a log record about run ``attempt`` of ``job``."""
    fields: dict[str, Any] = {"job_id": job.id, "priority": job.priority.name, "attempt": attempt}
    if duration is not None:
        fields["duration"] = duration
    return fields


def log_failed_run(
    logger: logging.Logger,
    entry: Entry,
    attempt: int,
    error: BaseException,
    *,
    delay: float | None,
    now: float,
) -> None:
    """Log a failed run of ``entry``'s job, which ended at ``now`` (``time.monotonic()``):
    at INFO if it is retried in ``delay`` seconds, at ERROR if ``delay`` is None (the job
    failed for good: a dead letter)."""
    job = entry.job
    extra = job_fields(job, attempt, now - entry.started)
    if delay is not None:
        logger.info(
            "job %r failed (%r); retry %d in %.3gs", job.id, error, attempt, delay, extra=extra
        )
    else:
        logger.error(
            "job %r failed for good after %d attempts: %r", job.id, attempt, error, extra=extra
        )
