"""The SQL of the chores no enqueue triggers: leases, due retries, pruning.

Run by the maintenance thread (leases.py, where the lease rule is stated).
Like store.py, each method takes the connection to run on and holds no lock
of the queue.
"""

from __future__ import annotations

from collections.abc import Iterable

from jobqueue.final.postgres.store import CHANNEL, Claim, Conn, Store, tokens
from jobqueue.vocabulary import Priority

__all__ = ["Chores"]


class Chores:
    """The maintenance statements of one queue, for the ``JobQueue`` that owns ``store``."""

    __slots__ = ("_store",)

    def __init__(self, store: Store) -> None:
        self._store = store

    def renew(self, conn: Conn, claims: Iterable[Claim], lease: float) -> int:
        """Extend the leases of ``claims`` (the runs this queue holds), in one UPDATE.

        Only the runs the caller names: a claim whose completion the server
        lost in a crash is still ours in the table, but nobody runs it, so
        its lease must run out for the job to run again.  No state in the
        ``WHERE``: the token implies it (store.py says why it is left out).
        """
        seqs, attempts = tokens(claims)
        if not seqs:
            return 0
        cur = conn.execute(
            """
            UPDATE jobqueue_jobs j SET lease_until = now() + %(lease)s * interval '1 second'
            FROM unnest(%(seqs)s::bigint[], %(attempts)s::integer[]) AS c(seq, attempt)
            WHERE j.seq = ANY(%(seqs)s)  -- lets the planner probe the primary key
              AND j.seq = c.seq AND j.attempts = c.attempt AND j.lease_owner = %(owner)s
            """,
            {"lease": lease, "seqs": seqs, "attempts": attempts, "owner": self._store.owner},
        )
        return cur.rowcount

    def reap(self, conn: Conn, max_attempts: int) -> tuple[int, int]:
        """Take back the jobs whose lease expired: (re-queued, failed for good).

        Their holder died, or lost the database for longer than the lease.  A
        job that has had ``max_attempts`` claims fails instead of running
        again: the claim that expired was an attempt.
        """
        if not self._any(conn, "state = 'processing' AND lease_until < now()"):
            return 0, 0  # the common case: no lock taken, nothing written
        with conn.transaction():
            self._store.lock_counts(conn, Priority)  # first: see Store.retrying
            rows = conn.execute(
                """
                WITH expired AS (
                    SELECT seq FROM jobqueue_jobs
                    WHERE queue = %(q)s AND state = 'processing' AND lease_until < now()
                    FOR UPDATE SKIP LOCKED
                )
                UPDATE jobqueue_jobs j
                SET state = CASE WHEN j.attempts >= %(max)s THEN 'failed' ELSE 'queued' END,
                    enqueued_at = now(),
                    finished_at = CASE WHEN j.attempts >= %(max)s THEN now() END,
                    error = 'lease expired: its worker died or lost the database',
                    lease_owner = NULL, lease_until = NULL
                FROM expired WHERE j.seq = expired.seq
                RETURNING j.priority, j.state
                """,
                {"q": self._store.queue, "max": max_attempts},
            ).fetchall()
            requeued = [p for p, state in rows if state == "queued"]
            failed = sum(state == "failed" for _, state in rows)
            self._store.add_counts(conn, retried=requeued, queued_at_most=requeued)
            if requeued:
                conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, self._store.queue))
        return len(requeued), failed

    def promote_due(self, conn: Conn) -> int:
        """Queue the retries whose backoff is over and the delayed jobs now due; wake workers."""
        if not self._any(conn, "state IN ('retrying', 'scheduled') AND run_after <= now()"):
            return 0  # the common case: no lock taken, nothing written
        with conn.transaction():
            self._store.lock_counts(conn, Priority)  # first: see Store.retrying
            rows = conn.execute(
                """
                UPDATE jobqueue_jobs
                -- a delayed job has waited since it was due: its wait age counts from then
                SET enqueued_at = CASE WHEN state = 'scheduled' THEN run_after ELSE now() END,
                    state = 'queued', run_after = NULL
                WHERE queue = %(q)s AND state IN ('retrying', 'scheduled') AND run_after <= now()
                RETURNING priority, pg_notify(%(channel)s, %(q)s)::text
                """,
                {"q": self._store.queue, "channel": CHANNEL},
            ).fetchall()
            self._store.add_counts(conn, queued_at_most=[p for p, _ in rows])
        return len(rows)

    def _any(self, conn: Conn, condition: str) -> bool:
        """Whether a job of the queue matches ``condition`` (a constant SQL text)."""
        row = conn.execute(
            f"SELECT EXISTS (SELECT 1 FROM jobqueue_jobs WHERE queue = %s AND {condition})",
            (self._store.queue,),
        ).fetchone()
        return bool(row is not None and row[0])

    def next_retry_in(self, conn: Conn) -> float | None:
        """Seconds until the earliest retry or delayed job of the queue is due, or None."""
        row = conn.execute(
            "SELECT extract(epoch FROM min(run_after) - now()) FROM jobqueue_jobs"
            " WHERE queue = %s AND state IN ('retrying', 'scheduled')",
            (self._store.queue,),
        ).fetchone()
        return None if row is None or row[0] is None else max(0.0, float(row[0]))

    def prune(self, conn: Conn, history: int) -> int:
        """Delete the finished rows beyond the newest ``history``, keeping their counts.

        Two statements: the cutoff first, as a value.  As a CTE joined to the
        DELETE, the planner (expecting one row) ran it once per deleted row.
        """
        cutoff = conn.execute(
            """
            SELECT finished_at, seq FROM jobqueue_jobs
            WHERE queue = %(q)s AND state IN ('completed', 'failed', 'cancelled')
            ORDER BY finished_at DESC, seq DESC OFFSET %(h)s LIMIT 1
            """,
            {"q": self._store.queue, "h": history},
        ).fetchone()
        if cutoff is None:
            return 0
        with conn.transaction():
            rows = conn.execute(
                """
                DELETE FROM jobqueue_jobs
                WHERE queue = %(q)s AND state IN ('completed', 'failed', 'cancelled')
                  AND (finished_at, seq) <= (%(at)s, %(seq)s)
                RETURNING priority, state
                """,
                {"q": self._store.queue, "at": cutoff[0], "seq": cutoff[1]},
            ).fetchall()
            self._store.add_counts(
                conn,
                completed=[p for p, s in rows if s == "completed"],
                failed=[p for p, s in rows if s == "failed"],
            )
        return len(rows)
