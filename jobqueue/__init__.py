"""jobqueue: a thread-based, in-process job queue, taught in three stages.

- ``jobqueue.naive``: one unbounded FIFO queue; wrong on purpose.
- ``jobqueue.improved``: bounded priority queues, retry with backoff, graceful close.
- ``jobqueue.final``: fairness, status by id, a durable log; the one to use.

Read them side by side: ``diff jobqueue/naive/queue.py jobqueue/improved/queue.py``.
"""

__version__ = "0.1.0"
