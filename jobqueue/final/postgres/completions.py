"""The completion writer: many finished runs, one transaction.

One commit per job caps a queue at the commits the server can do.  Workers
hand their completions to this thread and go on to the next job; the thread
writes whatever has piled up while it wrote the previous batch (a group
commit, with no timer: an idle writer writes a lone completion at once).

Completions are written with ``synchronous_commit = off``: a server crash may
lose the last fraction of a second of them, and a lost completion only means
the job runs again once its lease expires (at least once).  Retries and
failures are not batched: the worker writes them itself, durably, before it
takes its next job, so attempts are never undercounted.
"""

from __future__ import annotations

import logging
import threading
import time

import psycopg

from jobqueue.final.postgres.connections import Link
from jobqueue.final.postgres.store import Claim, Store

__all__ = ["CompletionWriter"]

logger = logging.getLogger(__name__)

_ATTEMPTS = 20  # tries of one batch while the server is unreachable
_RETRY_DELAY = 0.25  # seconds between them


class CompletionWriter(threading.Thread):
    """Writes completed runs in batches until ``stop()``, then writes what is left."""

    def __init__(self, store: Store, url: str) -> None:
        super().__init__(name=f"jobqueue-pg-completions-{store.queue}", daemon=True)
        self._store = store
        self._link = Link(url, synchronous_commit=False)
        self._pending: list[Claim] = []
        # Waiters: this thread.  Notified by add() (first pending item) and stop().
        self._has_work = threading.Condition()
        self._stopping = False
        self.written = 0  # completions applied (tests and logs)

    def add(self, claim: Claim) -> None:
        """Queue a completed run for the next batch.  Never blocks on the database."""
        with self._has_work:
            self._pending.append(claim)
            if len(self._pending) == 1:
                self._has_work.notify()

    def stop(self) -> None:
        """Write what is pending, then end the thread (the caller joins it)."""
        with self._has_work:
            self._stopping = True
            self._has_work.notify()

    def run(self) -> None:
        try:
            while True:
                with self._has_work:
                    while not self._pending and not self._stopping:
                        self._has_work.wait()
                    batch, self._pending = self._pending, []
                    last = self._stopping and not batch
                if last:
                    return
                self._write(batch)
        finally:
            self._link.close()

    def _write(self, batch: list[Claim]) -> None:
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                self.written += self._store.completed(self._link.get(), batch)
                return
            except psycopg.Error as exc:
                self._link.broken()
                if attempt == _ATTEMPTS:
                    logger.error(
                        "queue %r: could not record %d completions (%s); "
                        "they run again after their leases expire",
                        self._store.queue,
                        len(batch),
                        exc,
                    )
                    return
                time.sleep(_RETRY_DELAY)  # the server is restarting: wait for it
