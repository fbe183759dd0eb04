"""Stage 2 of 3: the improved job queue.  Read ``queue.py`` top to bottom."""

from jobqueue.improved.queue import (
    Config,
    DuplicateJobError,
    Job,
    JobQueue,
    JobQueueError,
    Metrics,
    PersistenceError,
    Priority,
    QueueClosed,
    QueueFull,
    Status,
)

__all__ = [
    "Config",
    "DuplicateJobError",
    "Job",
    "JobQueue",
    "JobQueueError",
    "Metrics",
    "PersistenceError",
    "Priority",
    "QueueClosed",
    "QueueFull",
    "Status",
]
