"""Stage 3 of 3: the final job queue.  Read ``queue.py`` first, then
``fairness.py``, ``status.py``, ``metrics.py``, ``storage.py``, ``recovery.py``,
``log/`` and ``speed.py``; then the handler's API: ``context.py``
(``current_job()``), ``futures.py`` (``submit()``), ``cancellation.py``
(``cancel()``) and ``schedule.py`` (``Job.run_at``); ``extras.py`` holds the
calls beyond ``improved``'s API, each one line into its module."""

from jobqueue import vocabulary
from jobqueue.final.config import FSYNC_POLICIES, Config
from jobqueue.final.context import JobContext, current_job
from jobqueue.final.dead import DeadJob
from jobqueue.final.futures import JobFuture
from jobqueue.final.metrics import Metrics, PriorityMetrics
from jobqueue.final.queue import JobQueue
from jobqueue.vocabulary import *  # noqa: F403  (re-exported: see __all__)

__all__ = [
    "FSYNC_POLICIES",
    "Config",
    "DeadJob",
    "JobContext",
    "JobFuture",
    "JobQueue",
    "Metrics",
    "PriorityMetrics",
    "current_job",
]
__all__ += vocabulary.__all__
