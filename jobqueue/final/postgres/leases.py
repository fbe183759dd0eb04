"""Leases, and the other chores of a queue that nobody's enqueue triggers.

The lease rule:

- A claim takes a lease of ``lease_timeout`` seconds on the job
  (``lease_until``) and counts as an attempt (``attempts + 1``).
- While this queue is open, the heartbeat renews the lease of every job it
  has claimed and not finished running, in one UPDATE, every
  ``lease_timeout / 3`` seconds: a long job keeps its lease for as long as it
  runs, so it is never run twice for being long.
- A lease that expires means its holder died (``kill -9``, a lost machine) or
  lost the database for longer than the lease.  The reaper of any live queue
  puts the job back to QUEUED, to run again elsewhere (at least once).  The
  expired claim was an attempt: a job that has had ``1 + max_retries`` claims
  fails instead, so a job that kills its process every time cannot loop
  forever.  It is counted as a retry, as a failed run is.
- A holder that comes back after its lease was taken cannot write over the new
  run: every write that ends a run is guarded by its claim token (store.py).

The same thread also moves due retries back to QUEUED (waking the workers by
NOTIFY) and prunes finished rows beyond ``status_history``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import psycopg

from jobqueue.final.config import Config
from jobqueue.final.postgres.chores import Chores
from jobqueue.final.postgres.connections import Link
from jobqueue.final.postgres.store import Claim, Store

__all__ = ["Maintenance"]

logger = logging.getLogger(__name__)

_PRUNE_EVERY = 2.0  # seconds between prunes: status() hides old rows by itself meanwhile
_RECONNECT_DELAY = 0.5  # seconds between attempts while the server is down


class Maintenance(threading.Thread):
    """Heartbeat, reaper, retry promotion and pruning, on one connection of its own."""

    def __init__(self, store: Store, config: Config, held: Callable[[], list[Claim]]) -> None:
        super().__init__(name=f"jobqueue-pg-maintenance-{store.queue}", daemon=True)
        assert config.postgres_url is not None
        self._store = store
        self._chores_sql = Chores(store)
        self._config = config
        self._held = held  # the runs whose leases the heartbeat renews
        self._link = Link(config.postgres_url)
        self._lease = config.lease_timeout
        self._heartbeat = config.lease_timeout / 3
        # The slow fallback poll, for expired leases and retries scheduled by
        # other processes: workers are woken by NOTIFY, never by this.
        self._poll = min(1.0, self._heartbeat)
        self._cond = threading.Condition()  # waiters: this thread; notified by retry_at, stop
        self._next_retry = float("inf")  # monotonic time of this queue's earliest retry
        self._stopping = False

    def retry_at(self, due: float) -> None:
        """A worker scheduled a retry due at ``due`` (monotonic): wake then to promote it."""
        with self._cond:
            if due < self._next_retry:
                self._next_retry = due
                self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()

    def run(self) -> None:
        now = time.monotonic()
        next_beat = now + self._heartbeat
        next_poll = now  # reap and promote at once: a previous holder may have died
        next_prune = now + _PRUNE_EVERY
        try:
            while True:
                with self._cond:
                    while not self._stopping:
                        now = time.monotonic()
                        wake = min(next_beat, next_poll, next_prune, self._next_retry)
                        if wake <= now:
                            break
                        self._cond.wait(wake - now)
                    if self._stopping:
                        return
                    if self._next_retry <= now:
                        self._next_retry = float("inf")
                        next_poll = now  # promote now
                try:
                    if now >= next_beat:
                        next_beat = now + self._heartbeat
                        self._chores_sql.renew(self._link.get(), self._held(), self._lease)
                    if now >= next_poll:
                        next_poll = now + self._poll
                        self._chores()
                    if now >= next_prune:
                        next_prune = now + _PRUNE_EVERY
                        self._chores_sql.prune(self._link.get(), self._config.status_history)
                except Exception as exc:  # the server went away, or a bug: never die of it
                    self._link.broken()
                    log = logger.warning if isinstance(exc, psycopg.Error) else logger.exception
                    log("queue %r: maintenance failed, will retry: %s", self._store.queue, exc)
                    next_beat = min(next_beat, now + _RECONNECT_DELAY)
                    next_poll = min(next_poll, now + _RECONNECT_DELAY)
        finally:
            self._link.close()

    def _chores(self) -> None:
        conn = self._link.get()
        requeued, failed = self._chores_sql.reap(conn, 1 + self._config.max_retries)
        if requeued or failed:
            logger.warning(
                "queue %r: %d expired leases: %d jobs queued again, %d failed for good",
                self._store.queue,
                requeued + failed,
                requeued,
                failed,
            )
        self._chores_sql.promote_due(conn)
        due_in = self._chores_sql.next_retry_in(conn)  # retries scheduled by any process
        if due_in is not None:
            self.retry_at(time.monotonic() + due_in)
