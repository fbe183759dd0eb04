"""Stage 3 of 3: the final job queue.  Read ``queue.py`` first, then
``fairness.py``, ``metrics.py``, ``storage.py`` and ``log.py``."""

from jobqueue.final.metrics import Metrics, PriorityMetrics
from jobqueue.final.queue import (
    FSYNC_POLICIES,
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
    "FSYNC_POLICIES",
    "Config",
    "DuplicateJobError",
    "Job",
    "JobQueue",
    "JobQueueError",
    "Metrics",
    "PersistenceError",
    "Priority",
    "PriorityMetrics",
    "QueueClosed",
    "QueueFull",
    "Status",
]
