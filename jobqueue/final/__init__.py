"""Stage 3 of 3: the final job queue.  Read ``queue.py`` first, then
``fairness.py``, ``status.py``, ``metrics.py``, ``storage.py``, ``recovery.py``,
``log/`` and ``speed.py``."""

from jobqueue import vocabulary
from jobqueue.final.config import FSYNC_POLICIES, Config
from jobqueue.final.dead import DeadJob
from jobqueue.final.metrics import Metrics, PriorityMetrics
from jobqueue.final.queue import JobQueue
from jobqueue.vocabulary import *  # noqa: F403  (re-exported: see __all__)

__all__ = ["FSYNC_POLICIES", "Config", "DeadJob", "JobQueue", "Metrics", "PriorityMetrics"]
__all__ += vocabulary.__all__
