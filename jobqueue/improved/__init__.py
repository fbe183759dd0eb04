"""Stage 2 of 3: the improved job queue.  Read ``queue.py`` top to bottom."""

from jobqueue import vocabulary
from jobqueue.improved.queue import Config, JobQueue, Metrics
from jobqueue.vocabulary import *  # noqa: F403  (re-exported: see __all__)

__all__ = ["Config", "JobQueue", "Metrics"]
__all__ += vocabulary.__all__
