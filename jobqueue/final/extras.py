"""What ``final``'s ``JobQueue`` offers beyond the lessons of the stages.

``improved`` answers "not in this stage" to ``submit`` and ``cancel``, and has
no dead letters, no pause, no shared queue.  ``final`` adds them without
changing the queue's shape: each call here is one line into the module that
does the work (``futures.py``, ``cancellation.py``, ``dead.py``,
``pause.py``, ``postgres/``), and ``JobQueue`` inherits them, so that
``queue.py`` shows the fixes (``diff -u jobqueue/improved/queue.py
jobqueue/final/queue.py``).  The state they keep beside the queue's own is
made by :meth:`Extras._open_extras`, before the workers start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from jobqueue import vocabulary
from jobqueue.final import cancellation, dead, futures, pause
from jobqueue.final.config import Config
from jobqueue.final.dead import DeadJob, DeadLetters
from jobqueue.final.handlers import Handlers
from jobqueue.vocabulary import Job, Priority

if TYPE_CHECKING:
    from jobqueue.final.queue import JobQueue

__all__ = ["Extras"]


class Extras:
    """The calls of ``final.JobQueue`` that ``improved`` has not, each in its own module."""

    _handlers: Handlers  # handlers by name (handlers.py)
    _dead: DeadLetters  # dead() and requeue()
    _pauses: pause.Pauses  # pause() and resume()
    _retrying: list[int]  # jobs waiting out a backoff, per priority, for metrics()

    def __new__(cls, config: vocabulary.Config | None = None) -> JobQueue:
        # Config(postgres_url=...) gets the queue that processes share (final/postgres/).
        from jobqueue.final.queue import JobQueue

        if cls is JobQueue and getattr(config, "postgres_url", None) is not None:
            from jobqueue.final.postgres import PostgresJobQueue

            return super().__new__(PostgresJobQueue)
        return cast("JobQueue", super().__new__(cls))

    def _open_extras(self, config: Config) -> None:
        """Make the state of the calls below; ``JobQueue.__init__`` calls it."""
        self._handlers = Handlers(config)
        self._dead = DeadLetters(config.status_history)
        self._pauses = pause.Pauses()
        cast("JobQueue", self)._picker.pauses = self._pauses  # paused looks empty to it
        self._retrying = [0] * len(Priority)

    def submit(self, job: Job, timeout: float | None = None) -> futures.JobFuture:
        """``enqueue(job)``, and a Future of its outcome, local to this process (``futures.py``)."""
        return futures.submit(cast("JobQueue", self), job, timeout, cancellation.cancel)

    def cancel(self, job_id: str) -> bool:
        """True if a queued, scheduled or retrying job will now never run, even after a
        restart; False if it is running, finished or unknown (``cancellation.py``)."""
        return cancellation.cancel(cast("JobQueue", self), job_id, None)

    def dead(self, limit: int = 100) -> list[DeadJob]:
        """Up to ``limit`` jobs that failed for good, newest first (``dead.py``)."""
        with cast("JobQueue", self)._mutex:
            return self._dead.newest(limit)

    def requeue(self, job_id: str, timeout: float | None = None) -> bool:
        """Queue a dead job again, QUEUED with its attempts reset; False if ``job_id``
        is not a dead job (or is live again).  Blocks for room like ``enqueue``."""
        return dead.requeue(cast("JobQueue", self), job_id, timeout)

    def pause(self, priority: Priority | None = None) -> None:
        """Start no new job of ``priority`` (of any, if None); enqueues go on (``pause.py``)."""
        pause.pause(cast("JobQueue", self), priority, True)

    def resume(self, priority: Priority | None = None) -> None:
        """Undo ``pause``: ``priority``'s jobs (every one's, if None) start again."""
        pause.pause(cast("JobQueue", self), priority, False)
