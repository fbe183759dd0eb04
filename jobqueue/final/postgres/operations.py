"""The SQL of the operator's calls: cancel, submit()'s polls, dead letters.

Like store.py and chores.py, each method takes the connection to run on and
holds no lock of the queue.
"""

from __future__ import annotations

from typing import Any

import psycopg

from jobqueue.final.postgres.store import CHANNEL, Conn, Store

__all__ = ["Operations"]


class Operations:
    """The operator statements of one queue, for the ``JobQueue`` that owns ``store``."""

    __slots__ = ("_store",)

    def __init__(self, store: Store) -> None:
        self._store = store

    @property
    def queue(self) -> str:
        return self._store.queue

    def cancel(self, conn: Conn, job_id: str) -> bool:
        """Mark ``job_id`` cancelled if it is queued, scheduled or retrying; False if it
        is processing, finished or unknown.

        One conditional UPDATE, safe against a claim of the same job in another
        process: both lock the row.  If the claim holds it, the cancel waits,
        then re-checks its WHERE against the claimed row (``processing``:
        no match, the job runs); if the cancel holds it, the claim's
        ``SKIP LOCKED`` passes over it, and finds it cancelled after.
        """
        cur = conn.execute(
            """
            UPDATE jobqueue_jobs
            SET state = 'cancelled', finished_at = now(), run_after = NULL
            WHERE queue = %(q)s AND id = %(id)s AND state IN ('queued', 'scheduled', 'retrying')
            """,
            {"q": self._store.queue, "id": job_id},
        )
        return cur.rowcount == 1

    def final_states(self, conn: Conn, ids: list[str]) -> list[tuple[str, str, str | None]]:
        """(id, state, error) of each of ``ids`` whose job is finished and not live
        again: what ``submit()``'s futures wait for (watch.py)."""
        rows = conn.execute(
            """
            SELECT id, state, error FROM (
                SELECT DISTINCT ON (id) id, state, error FROM jobqueue_jobs
                WHERE queue = %(q)s AND id = ANY(%(ids)s)
                ORDER BY id, state IN ('queued', 'scheduled', 'processing', 'retrying') DESC,
                         finished_at DESC, seq DESC) AS newest
            WHERE state IN ('completed', 'failed', 'cancelled')
            """,
            {"q": self._store.queue, "ids": ids},
        ).fetchall()
        return [(str(i), str(state), error) for i, state, error in rows]

    def dead(self, conn: Conn, limit: int, history: int) -> list[tuple[Any, ...]]:
        """The failed jobs among the newest ``history`` finished ones, newest first, up to
        ``limit``: each a row (id, priority, payload, handler, created, attempts, error,
        failed_at as epoch seconds).  An id that is live again, or whose newest finished
        run completed, is not dead."""
        rows = conn.execute(
            """
            WITH recent AS (
                SELECT seq, id, state, priority, payload, handler, created, attempts, error,
                       finished_at
                FROM jobqueue_jobs
                WHERE queue = %(q)s AND state IN ('completed', 'failed', 'cancelled')
                ORDER BY finished_at DESC, seq DESC LIMIT %(h)s),
            newest AS (
                SELECT DISTINCT ON (id) * FROM recent ORDER BY id, finished_at DESC, seq DESC)
            SELECT n.id, n.priority, n.payload, n.handler, n.created, n.attempts,
                   coalesce(n.error, ''), extract(epoch FROM n.finished_at)::float8
            FROM newest n
            WHERE n.state = 'failed'
              AND NOT EXISTS (SELECT 1 FROM jobqueue_jobs l
                              WHERE l.queue = %(q)s AND l.id = n.id
                                AND l.state IN ('queued', 'scheduled', 'processing', 'retrying'))
            ORDER BY n.finished_at DESC, n.seq DESC LIMIT %(limit)s
            """,
            {"q": self._store.queue, "h": history, "limit": limit},
        ).fetchall()
        return list(rows)

    def requeue(self, conn: Conn, job_id: str, history: int) -> bool:
        """Queue the dead job ``job_id`` again, its attempts reset; False if it is not
        dead (not failed among the newest ``history``, or live again).

        One conditional UPDATE of the failed row (``state = 'failed'`` in its
        WHERE): of two processes requeueing it at once, one updates the row and
        the other matches nothing.  An id live again trips the live-id index.
        """
        dead = self.dead(conn, history, history)
        if not any(row[0] == job_id for row in dead):
            return False
        priority = next(row[1] for row in dead if row[0] == job_id)
        try:
            with conn.transaction():
                # First the counter row: see Store.retrying.
                self._store.lock_counts(conn, [priority])
                row = self._requeue(conn, job_id)
        except psycopg.errors.UniqueViolation:  # enqueued anew meanwhile: live, not dead
            return False
        return row is not None

    def _requeue(self, conn: Conn, job_id: str) -> tuple[Any, ...] | None:
        """The UPDATE of ``requeue``: a row if it moved the failed row to QUEUED.
        The failed total keeps counting it (in jobqueue_counts), as in-process."""
        return conn.execute(
            """
            WITH j AS (
                UPDATE jobqueue_jobs
                SET state = 'queued', attempts = 0, enqueued_at = now(), run_after = NULL,
                    error = NULL, finished_at = NULL
                WHERE seq = (SELECT seq FROM jobqueue_jobs
                             WHERE queue = %(q)s AND id = %(id)s AND state = 'failed'
                             ORDER BY finished_at DESC, seq DESC LIMIT 1)
                  AND state = 'failed'
                RETURNING priority)
            UPDATE jobqueue_counts c
            SET failed = c.failed + 1, queued_at_most = c.queued_at_most + 1
            FROM j WHERE c.queue = %(q)s AND c.priority = j.priority
            RETURNING pg_notify(%(channel)s, %(q)s)::text
            """,
            {"q": self._store.queue, "id": job_id, "channel": CHANNEL},
        ).fetchone()
