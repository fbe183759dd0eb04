"""Stage 1 of 3: the naive job queue.  Read ``queue.py`` top to bottom."""

from jobqueue.naive.queue import (
    Config,
    DuplicateJobError,
    Job,
    JobQueue,
    JobQueueError,
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
    "PersistenceError",
    "Priority",
    "QueueClosed",
    "QueueFull",
    "Status",
]
