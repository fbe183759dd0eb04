"""Graceful stop on SIGTERM and SIGINT, opt-in: ``stop = install_signal_handlers(jq)``.

On the first signal the queue stops intake and closes, waiting up to
``shutdown_timeout`` for the jobs in flight, exactly as ``close()`` does
(then ``stop.wait()`` returns).  What happens to the jobs not started:

- with ``persist_path``: they stay in the log, queued (retries with their
  backoff), and the next queue opened on it runs them;
- without: they are dropped, and ``close()`` logs how many at WARNING.

The handler closes the queue in a thread of its own, never in the signal
handler: Python runs handlers in the main thread between two bytecodes, and
that thread may be inside ``enqueue()`` holding the queue's mutex, which
``close()`` needs (a deadlock).  The thread is not a daemon, so the process
does not exit before the close is done.

Any handler installed before is chained: called after the close has begun,
so a program that relied on ``KeyboardInterrupt`` for SIGINT still gets it.
``SIG_DFL`` and ``SIG_IGN`` are not called: the default for SIGTERM would kill
the process before the close.  ``stop.uninstall()`` puts the old handlers back.
Call it from the main thread, as ``signal.signal`` requires.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterable
from types import FrameType

from jobqueue.final.queue import JobQueue

__all__ = ["GracefulStop", "install_signal_handlers"]

logger = logging.getLogger(__name__)

_Previous = Callable[[int, FrameType | None], object] | int | signal.Handlers | None


class GracefulStop:
    """The handlers :func:`install_signal_handlers` installed, and the close they start."""

    def __init__(self, queue: JobQueue, signals: Iterable[signal.Signals]) -> None:
        self._queue = queue
        self._mutex = threading.Lock()
        self._closer: threading.Thread | None = None  # guarded by _mutex
        self.signalled = threading.Event()  # a signal arrived: the close has begun
        self.closed = threading.Event()  # the close is done
        self._previous: dict[signal.Signals, _Previous] = {}
        for signum in signals:
            self._previous[signum] = signal.signal(signum, self._handle)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a signal has closed the queue; False if ``timeout`` passed first."""
        return self.closed.wait(timeout)

    def uninstall(self) -> None:
        """Put back the handlers that were there before."""
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        with self._mutex:
            if self._closer is None:
                logger.warning("%s: closing the queue", signal.Signals(signum).name)
                self._closer = threading.Thread(target=self._close, name="jobqueue-signal-close")
                self._closer.start()
        self.signalled.set()
        previous = self._previous.get(signal.Signals(signum))
        if callable(previous):
            previous(signum, frame)

    def _close(self) -> None:
        try:
            self._queue.close()
        finally:
            self.closed.set()


def install_signal_handlers(
    queue: JobQueue,
    signals: Iterable[signal.Signals] = (signal.SIGTERM, signal.SIGINT),
) -> GracefulStop:
    """Close ``queue`` gracefully on any of ``signals``; see the module docstring."""
    if not isinstance(queue, JobQueue):
        raise TypeError(f"queue must be a jobqueue.final.JobQueue, got {type(queue).__name__}")
    return GracefulStop(queue, tuple(signals))
