"""Stage 1 of 3: the naive job queue.  Read ``queue.py`` top to bottom."""

from jobqueue import vocabulary
from jobqueue.naive.queue import Config, JobQueue
from jobqueue.vocabulary import *  # noqa: F403  (re-exported: see __all__)

__all__ = ["Config", "JobQueue"]
__all__ += vocabulary.__all__
