"""The words all three stages share, defined once.

Only what is truly identical across ``naive``, ``improved`` and ``final`` lives
here: the :class:`Priority` and :class:`Status` enums, the :class:`Job` value,
the common :class:`Config`, and the exception hierarchy.  Each stage re-exports
the names in ``__all__`` (``__all__ = ["JobQueue", ...] + vocabulary.__all__``),
so ``from jobqueue.naive import Job`` and ``from jobqueue.final import Job`` are
the same class, and the test matrix can drive every stage through one API.
``Config`` is each stage's own: ``naive`` and ``improved`` export this one,
``final`` a subclass.

Everything here validates eagerly: bad input raises ``TypeError`` or
``ValueError`` at construction, and the message names the field and, for a
number, its range.  The helpers (``check_timeout``, ``wait_seconds``,
``log_base_exception``, ...) serve the stages' code, not their users.
"""

from __future__ import annotations

import enum
import logging
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import NoReturn

# What every stage re-exports as it is.  Config is not among them: each stage
# exports its own (naive and improved the one below, final a subclass).
__all__ = [
    "DuplicateJobError",
    "Job",
    "JobQueueError",
    "PermanentFailure",
    "PersistenceError",
    "Priority",
    "QueueClosed",
    "QueueFull",
    "Status",
]
# Not in __all__: check_job_id, check_timeout, require_count, resolve_handler, wait_seconds,
# refuse_inside_handler, log_base_exception, not_in_stage and NoJobHandles are for
# the stages' own use.

# -- limits: a number outside these is a mistake, and gets a ValueError naming it.

#: The longest retry backoff: one day.  A longer one is a typo, not a plan.
MAX_DELAY = 86_400.0
#: The most retries a Config may allow; ``Job.attempts`` is at most one more.
MAX_RETRIES = 1_000_000
#: The most worker threads: threads, not processes; beyond this, use processes.
MAX_WORKERS = 10_000
#: The most of anything counted: queue slots, fairness tokens, history entries.
MAX_COUNT = 1_000_000_000
#: ``Job.created`` is seconds since the epoch up to the end of year 9999, as ``datetime``.
MAX_CREATED = 253_402_300_799.0

#: A handler takes the job's payload; returning is success, raising is failure.
Handler = Callable[[bytes], object]


class Priority(enum.IntEnum):
    """How urgent a job is.  A lower value is served first."""

    HIGH = 0
    MEDIUM = 1
    LOW = 2


class Status(enum.Enum):
    """Where a job is in its life.  Only ``final`` can report it by id."""

    QUEUED = "queued"  # accepted, waiting for a worker
    SCHEDULED = "scheduled"  # accepted, waiting for its Job.run_at
    PROCESSING = "processing"  # a worker is running its handler
    RETRYING = "retrying"  # failed, waiting out its backoff before the next attempt
    COMPLETED = "completed"  # the handler returned
    FAILED = "failed"  # retries exhausted (or PermanentFailure): dead-lettered
    CANCELLED = "cancelled"  # cancel() took it out before it ran: it never will

    @property
    def finished(self) -> bool:
        """True for the three states a job never leaves."""
        return self in _FINISHED


_FINISHED = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})


# -- errors -------------------------------------------------------------------


class JobQueueError(Exception):
    """Base class of every error this package raises on purpose."""


class QueueFull(JobQueueError, queue.Full):
    """Raised by ``enqueue()`` when its timeout expires while the queue is full."""


class QueueClosed(JobQueueError):
    """Raised by ``enqueue()`` after ``close()`` has been called."""


class DuplicateJobError(JobQueueError, ValueError):
    """Raised by ``enqueue()`` for an id that is still queued, retrying or processing."""


class PermanentFailure(JobQueueError):
    """Raised by a handler to fail its job for good at once: no retry.

    For an error that another attempt cannot cure (an HTTP 404, a payload
    that does not parse).  The job ends FAILED, its error recorded as for
    any failure.  ``raise PermanentFailure("404 from the webhook") from exc``
    keeps the cause.
    """


class PersistenceError(JobQueueError):
    """Raised when the job log cannot be used: locked, corrupt, or the disk failed."""


# -- values ---------------------------------------------------------------------


def _require(name: str, value: object, kind: type | tuple[type, ...]) -> None:
    # bool is an int subclass: Config(num_workers=True) is a mistake, not 1 worker.
    if isinstance(value, bool) and kind is not bool:
        raise TypeError(f"{name} must be {_kind_name(kind)}, got bool {value!r}")
    if not isinstance(value, kind):
        raise TypeError(f"{name} must be {_kind_name(kind)}, got {type(value).__name__} {value!r}")


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def _require_seconds(name: str, value: object, *, most: float = math.inf) -> None:
    _require(name, value, (int, float))
    assert isinstance(value, int | float)
    if not 0 <= value <= most:  # also refuses NaN
        bound = "" if most == math.inf else f" and <= {most:g}"
        raise ValueError(f"{name} must be >= 0{bound} seconds, got {value!r}")


def _require_time(name: str, value: object) -> None:
    _require(name, value, (int, float))
    assert isinstance(value, int | float)
    if not 0 <= value <= MAX_CREATED:  # also refuses NaN and infinities
        raise ValueError(
            f"{name} must be seconds since the epoch, between 0 and {MAX_CREATED:.0f} "
            f"(the end of year 9999), got {_shown(value)}"
        )


def require_count(name: str, value: object, least: int, most: int) -> None:
    _require(name, value, int)
    assert isinstance(value, int)
    if not least <= value <= most:
        raise ValueError(f"{name} must be between {least} and {most:,}, got {_short(value)}")


def _short(value: int) -> str:
    # str() of an int over 4,300 digits raises ValueError itself: say how big it is instead.
    return str(value) if abs(value) < 10**100 else f"an int of {value.bit_length()} bits"


def _shown(value: float) -> str:
    return _short(value) if isinstance(value, int) else repr(value)


def check_job_id(job_id: object) -> None:
    """Validate a ``job_id`` argument (``cancel``, ``requeue``): a str."""
    if not isinstance(job_id, str):
        raise TypeError(f"job_id must be a str, got {type(job_id).__name__}")


def check_timeout(timeout: float | None) -> None:
    """Validate a ``timeout`` argument: ``None`` or ``math.inf`` (wait forever), or seconds >= 0."""
    if timeout is not None:
        _require_seconds("timeout", timeout)


def wait_seconds(remaining: float | None) -> float | None:
    """``remaining`` made safe for ``Condition.wait`` and ``Thread.join``.

    ``threading`` raises ``OverflowError`` above ``threading.TIMEOUT_MAX`` (about
    292 years on Linux), so a longer wait, ``math.inf`` included, waits that
    long and the caller's loop waits again: "wait forever" means what it says.
    """
    return None if remaining is None else min(remaining, threading.TIMEOUT_MAX)


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """One unit of work.  Build it by keyword: ``Job(id="a1", payload=b"...")``.

    ``payload`` is opaque bytes: the queue stores and passes it on, never
    interprets it.  ``attempts`` counts the runs already made (a restarted
    ``final`` queue carries it over).  ``handler`` optionally *names* the
    handler to run, from ``Config.handlers`` in ``final``; a name, unlike a
    function, survives a restart.

    ``run_at`` (``final`` only) is a ``time.time()`` before which the job
    does not start; ``None`` runs it as soon as a worker is free, and so
    does a time already past.

    ``attempts`` is at most 1,000,001 (one more than the most retries a
    ``Config`` allows); ``created`` and ``run_at`` are finite, between 0 and
    the end of year 9999.
    """

    id: str
    priority: Priority = Priority.MEDIUM
    payload: bytes = b""
    attempts: int = 0
    created: float = field(default_factory=time.time)
    handler: str | None = None
    run_at: float | None = None

    def __post_init__(self) -> None:
        _require("id", self.id, str)
        if not self.id:
            raise ValueError("id must be a non-empty str")
        _require("priority", self.priority, Priority)
        _require("payload", self.payload, bytes)
        require_count("attempts", self.attempts, 0, MAX_RETRIES + 1)
        _require("created", self.created, (int, float))
        if not 0 <= self.created <= MAX_CREATED:  # also refuses NaN and infinities
            _require_time("created", self.created)  # raises, naming the range
        if self.run_at is not None:
            _require_time("run_at", self.run_at)
        if self.handler is not None:
            _require("handler", self.handler, str)
            if not self.handler:
                raise ValueError("handler must be a non-empty name or None")


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """Settings shared by every stage.  A stage ignores what it does not implement:
    ``naive`` has no bound, no retries and no log; ``improved`` has no log and no
    fairness.  ``final.Config`` adds the settings only ``final`` has.

    Retry ``k`` (1-based) waits ``min(retry_max_delay, retry_base_delay * 2**(k-1))``:
    1 s, 2 s, 4 s, 8 s with the defaults.

    Ranges (a value outside gets a ``ValueError`` naming the field):
    ``num_workers`` 1 to 10,000; ``queue_size`` and ``fairness_tokens`` 1 to
    10**9; ``max_retries`` 0 to 1,000,000; ``retry_base_delay`` and
    ``retry_max_delay`` 0 to 86,400 s (one day); ``shutdown_timeout`` any
    seconds >= 0, ``math.inf`` meaning "wait for the jobs however long they take".
    ``persist_path`` is a non-empty ``str`` path (or a PathLike giving one).
    """

    num_workers: int = 4
    queue_size: int = 1000  # per priority
    max_retries: int = 3  # retries after the first attempt; 0 = never retry
    retry_base_delay: float = 1.0
    retry_max_delay: float = 60.0
    persist_path: str | os.PathLike[str] | None = None
    shutdown_timeout: float = 30.0
    fairness_tokens: int = 10  # HIGH jobs taken before a waiting lower job gets a turn
    handler: Handler | None = None  # the default handler

    def __post_init__(self) -> None:
        require_count("num_workers", self.num_workers, 1, MAX_WORKERS)
        require_count("queue_size", self.queue_size, 1, MAX_COUNT)
        require_count("fairness_tokens", self.fairness_tokens, 1, MAX_COUNT)
        require_count("max_retries", self.max_retries, 0, MAX_RETRIES)
        _require_seconds("retry_base_delay", self.retry_base_delay, most=MAX_DELAY)
        _require_seconds("retry_max_delay", self.retry_max_delay, most=MAX_DELAY)
        if self.retry_max_delay < self.retry_base_delay:
            raise ValueError(
                f"retry_max_delay ({self.retry_max_delay}) must be >= "
                f"retry_base_delay ({self.retry_base_delay})"
            )
        _require_seconds("shutdown_timeout", self.shutdown_timeout)
        if self.persist_path is not None:
            _check_path("persist_path", self.persist_path)
        if self.handler is not None and not callable(self.handler):
            raise TypeError(f"handler must be callable, got {type(self.handler).__name__}")

    def retry_delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1-based), before any jitter."""
        # min(.., 64): 2**(k-1) beyond that is past any sane cap, and would overflow a float.
        return float(min(self.retry_max_delay, self.retry_base_delay * 2 ** min(retry - 1, 64)))


def require_config(config: Config | None) -> Config:
    """A stage's ``config`` argument: the default ``Config`` for None, else checked to be one."""
    if config is None:
        return Config()
    if not isinstance(config, Config):
        raise TypeError(f"config must be a Config, got {type(config).__name__}")
    return config


def log_base_exception(
    logger: logging.Logger, job: Job, exc: BaseException, extra: Mapping[str, object] | None = None
) -> None:
    """Say so, at ERROR, when a handler raised a ``BaseException`` that is no ``Exception``.

    ``SystemExit``, ``KeyboardInterrupt``, ``GeneratorExit`` and the like would
    end a worker thread, silently for ``SystemExit``: the job would stay in
    flight forever and ``join()`` would hang.  Every stage's worker catches
    them and counts the run as failed, as ``concurrent.futures`` does for its
    futures; this line makes sure such a failure is not mistaken for a normal one.
    """
    if not isinstance(exc, Exception):
        logger.error(
            "job %r: its handler raised %s; counted as a failed run, the worker goes on",
            job.id,
            type(exc).__name__,
            extra=extra,
        )


def log_failed_run(
    logger: logging.Logger,
    job: Job,
    attempt: int,
    error: BaseException,
    retry_in: float | None,
    *,
    extra: Mapping[str, object] | None = None,
) -> None:
    """Log failed run ``attempt`` of ``job``: at INFO if it is retried in ``retry_in``
    seconds, at ERROR if ``retry_in`` is None (the job failed for good)."""
    if retry_in is not None:
        logger.info(
            "job %r failed (%r); retry %d in %.3gs", job.id, error, attempt, retry_in, extra=extra
        )
    else:
        logger.error(
            "job %r failed for good after %d attempts: %r", job.id, attempt, error, extra=extra
        )


def not_in_stage(module: str, what: str, stage: str) -> NoReturn:
    """Raise ``NotImplementedError``: the stage of ``module`` has no ``what``, ``stage`` adds it."""
    raise NotImplementedError(f"{module.rpartition('.')[0]} has no {what}: {stage} adds it")


class NoJobHandles:
    """``submit()`` and ``cancel()`` for ``naive`` and ``improved``, which keep no
    handle on a job once it is enqueued: both raise ``NotImplementedError``."""

    def submit(self, job: Job, timeout: float | None = None) -> Future[object]:
        """Not in this stage: it keeps no handle on a job once enqueued."""
        not_in_stage(type(self).__module__, "submit()", "jobqueue.final")

    def cancel(self, job_id: str) -> bool:
        """Not in this stage: it keeps no record of jobs by id."""
        not_in_stage(type(self).__module__, "cancel()", "jobqueue.final")


def refuse_inside_handler(in_handler: threading.local, call: str) -> None:
    """Raise ``RuntimeError`` if this thread is running a handler (``in_handler.job`` set).

    ``join()`` there would wait for the handler's own job, that is forever;
    like ``Thread.join``'s "cannot join current thread", say so instead.
    """
    job = getattr(in_handler, "job", None)
    if job is not None:
        raise RuntimeError(
            f"cannot call {call} from inside the handler of job {job.id!r}: "
            "it would wait for its own job forever"
        )


def _check_path(name: str, value: object) -> None:
    _require(name, value, (str, os.PathLike))
    assert isinstance(value, str | os.PathLike)
    path: object = os.fspath(value)
    if not isinstance(path, str):
        raise TypeError(f"{name} must be a str path; its __fspath__() gave {type(path).__name__}")
    if not path:
        raise ValueError(f"{name} must be a file path, got an empty string")
    if "\0" in path:
        raise ValueError(f"{name} must not contain a NUL character, got {path!r}")


def resolve_handler(job: Job, handler: Handler | None, default: Handler | None) -> Handler:
    """Check an ``enqueue_with_handler`` call: the handler given, else the default."""
    if not isinstance(job, Job):
        raise TypeError(f"job must be a Job, got {type(job).__name__}")
    if handler is not None and not callable(handler):
        raise TypeError(f"handler must be callable, got {type(handler).__name__}")
    resolved = handler if handler is not None else default
    if resolved is None:
        raise ValueError(
            f"handler: job {job.id!r} has none; pass one to enqueue_with_handler() "
            "or set Config.handler"
        )
    return resolved


def batch_shares(jobs: list[Job], queue_size: int, *, unique_ids: bool) -> list[int]:
    """Check an ``enqueue_many`` batch; return how many jobs it holds of each priority.

    ``ValueError`` if one priority's share exceeds ``queue_size``: waiting for
    room for it would wait forever.  With ``unique_ids``, ``DuplicateJobError``
    for an id the batch holds twice.
    """
    shares = [0] * len(Priority)
    seen: set[str] = set()
    for job in jobs:
        if unique_ids:
            if job.id in seen:
                raise DuplicateJobError(f"cannot enqueue job {job.id!r}: the batch holds it twice")
            seen.add(job.id)
        shares[job.priority] += 1
    for priority in Priority:
        if shares[priority] > queue_size:
            raise ValueError(
                f"jobs: the batch holds {shares[priority]} {priority.name} jobs, more than "
                f"queue_size={queue_size}: the {priority.name} queue could never take them all"
            )
    return shares
