"""The words all three stages share, defined once.

Only what is truly identical across ``naive``, ``improved`` and ``final`` lives
here: the :class:`Priority` and :class:`Status` enums, the :class:`Job` value,
the common :class:`Config`, and the exception hierarchy.  Each stage re-exports
these names, so ``from jobqueue.naive import Job`` and
``from jobqueue.final import Job`` are the same class, and the test matrix can
drive every stage through one API.

Everything here validates eagerly: bad input raises ``TypeError`` or
``ValueError`` at construction, and the message names the field.
"""

from __future__ import annotations

import enum
import math
import os
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = [
    "Config",
    "DuplicateJobError",
    "Handler",
    "Job",
    "JobQueueError",
    "PersistenceError",
    "Priority",
    "QueueClosed",
    "QueueFull",
    "Status",
    "check_timeout",
    "resolve_handler",
]

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
    PROCESSING = "processing"  # a worker is running its handler
    RETRYING = "retrying"  # failed, waiting out its backoff before the next attempt
    COMPLETED = "completed"  # the handler returned
    FAILED = "failed"  # retries exhausted: dead-lettered

    @property
    def finished(self) -> bool:
        """True for the two states a job never leaves."""
        return self in (Status.COMPLETED, Status.FAILED)


# -- errors -------------------------------------------------------------------


class JobQueueError(Exception):
    """Base class of every error this package raises on purpose."""


class QueueFull(JobQueueError, queue.Full):
    """Raised by ``enqueue()`` when its timeout expires while the queue is full."""


class QueueClosed(JobQueueError):
    """Raised by ``enqueue()`` after ``close()`` has been called."""


class DuplicateJobError(JobQueueError, ValueError):
    """Raised by ``enqueue()`` for an id that is still queued, retrying or processing."""


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


def _require_seconds(name: str, value: object, *, positive: bool = False) -> None:
    _require(name, value, (int, float))
    assert isinstance(value, int | float)
    if math.isnan(value) or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be {bound} seconds, got {value!r}")


def check_timeout(timeout: float | None) -> None:
    """Validate a ``timeout`` argument: ``None`` (wait forever) or seconds >= 0."""
    if timeout is not None:
        _require_seconds("timeout", timeout)


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """One unit of work.  Build it by keyword: ``Job(id="a1", payload=b"...")``.

    ``payload`` is opaque bytes: the queue stores and passes it on, never
    interprets it.  ``attempts`` counts the runs already made (a restarted
    ``final`` queue carries it over).  ``handler`` optionally *names* the
    handler to run, from ``Config.handlers`` in ``final``; a name, unlike a
    function, survives a restart.
    """

    id: str
    priority: Priority = Priority.MEDIUM
    payload: bytes = b""
    attempts: int = 0
    created: float = field(default_factory=time.time)
    handler: str | None = None

    def __post_init__(self) -> None:
        _require("id", self.id, str)
        if not self.id:
            raise ValueError("id must be a non-empty str")
        _require("priority", self.priority, Priority)
        _require("payload", self.payload, bytes)
        _require("attempts", self.attempts, int)
        if self.attempts < 0:
            raise ValueError(f"attempts must be >= 0, got {self.attempts}")
        _require("created", self.created, (int, float))
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
        for name in ("num_workers", "queue_size", "fairness_tokens"):
            value = getattr(self, name)
            _require(name, value, int)
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        _require("max_retries", self.max_retries, int)
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        _require_seconds("retry_base_delay", self.retry_base_delay)
        _require_seconds("retry_max_delay", self.retry_max_delay)
        if self.retry_max_delay < self.retry_base_delay:
            raise ValueError(
                f"retry_max_delay ({self.retry_max_delay}) must be >= "
                f"retry_base_delay ({self.retry_base_delay})"
            )
        _require_seconds("shutdown_timeout", self.shutdown_timeout)
        if self.persist_path is not None:
            _require("persist_path", self.persist_path, (str, os.PathLike))
        if self.handler is not None and not callable(self.handler):
            raise TypeError(f"handler must be callable, got {type(self.handler).__name__}")

    def retry_delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1-based), before any jitter."""
        # min(.., 64): 2**(k-1) beyond that is past any sane cap, and would overflow a float.
        return float(min(self.retry_max_delay, self.retry_base_delay * 2 ** min(retry - 1, 64)))


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
