"""Every SQL statement the PostgreSQL queue runs, one method each.

``Store`` is the seam between the queue's threads and the database: its
methods are its contract, and none of them holds a lock of the queue.  Each
takes the connection to run on, because each thread of the queue owns one
(psycopg connections serialize their users).

The claim token: a claim sets ``lease_owner`` to the claiming queue's uuid
and adds one to ``attempts``, so (``seq``, ``lease_owner``, ``attempts``)
names one claim of one job.  Every write that ends a run (completed,
retrying, failed, released) carries the token in its ``WHERE``: a worker
whose lease expired, and whose job another process claimed since, matches no
row, so it cannot overwrite the newer run's state.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from jobqueue.final.postgres.schema import LIVE
from jobqueue.vocabulary import DuplicateJobError, Job, Priority, Status

__all__ = ["CHANNEL", "Claim", "Conn", "Store", "connect"]

logger = logging.getLogger(__name__)

Conn = psycopg.Connection[tuple[Any, ...]]

#: The NOTIFY channel; the payload is the queue name.  One channel for every
#: queue keeps LISTEN simple; a worker woken for another queue claims nothing.
CHANNEL = "jobqueue"

_FINISHED = ("completed", "failed")


def connect(url: str, *, synchronous_commit: bool = True) -> Conn:
    """An autocommit connection.  ``synchronous_commit=False`` for writes a crash may lose:
    claims and completions, whose loss only means a re-run (at least once)."""
    conn = psycopg.connect(url, autocommit=True)
    if not synchronous_commit:
        conn.execute("SET synchronous_commit = off")
    return conn


@dataclass(frozen=True, slots=True)
class Claim:
    """One claimed run of a job: the job as the handler sees it, and the claim token."""

    seq: int
    attempt: int  # 1 on the first run; with seq and the owner, the claim token
    job: Job  # job.attempts = runs before this one


class Store:
    """The SQL of one queue (``queue``), as run by one ``JobQueue`` (``owner``)."""

    __slots__ = ("owner", "queue")

    def __init__(self, queue: str) -> None:
        self.queue = queue
        self.owner = uuid.uuid4()  # this JobQueue's claims, in lease_owner

    # -- producers ----------------------------------------------------------------

    def enqueue(self, conn: Conn, job: Job, queue_size: int) -> bool:
        """Insert ``job`` and commit; False if its priority already has ``queue_size``
        queued jobs.  ``DuplicateJobError`` if its id is live in any process.

        The advisory lock makes the count and the insert one step for every
        producer of this (queue, priority), wherever it runs; the count is a
        statement of its own so that it sees the commits of the lock's
        previous holders.  The NOTIFY is delivered at commit, so a woken
        worker finds the row.
        """
        try:
            with conn.transaction():
                conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtext(%s), %s)",
                    (self.queue, int(job.priority)),
                )
                row = conn.execute(
                    """
                    INSERT INTO jobqueue_jobs
                        (queue, id, priority, payload, handler, created, state, attempts)
                    SELECT %(q)s, %(id)s, %(p)s, %(payload)s, %(handler)s, %(created)s,
                           'queued', %(attempts)s
                    WHERE (SELECT count(*) FROM (
                               SELECT 1 FROM jobqueue_jobs
                               WHERE queue = %(q)s AND state = 'queued' AND priority = %(p)s
                               LIMIT %(size)s) AS waiting) < %(size)s
                    RETURNING pg_notify(%(channel)s, %(q)s)::text
                    """,
                    {
                        "q": self.queue,
                        "id": job.id,
                        "p": int(job.priority),
                        "payload": job.payload,
                        "handler": job.handler,
                        "created": job.created,
                        "attempts": job.attempts,
                        "size": queue_size,
                        "channel": CHANNEL,
                    },
                ).fetchone()
            return row is not None
        except psycopg.errors.UniqueViolation:
            state = self.status(conn, job.id, history=0)
            shown = state.value if state is not None else "live"
            raise DuplicateJobError(
                f"cannot enqueue job {job.id!r}: it is still {shown} in queue {self.queue!r}"
            ) from None

    # -- the fetcher -------------------------------------------------------------

    def waiting(self, conn: Conn) -> list[int]:
        """For each priority, 1 if a job of it is queued, else 0: what the picker needs."""
        row = conn.execute(
            """
            SELECT EXISTS (SELECT 1 FROM jobqueue_jobs
                           WHERE queue = %(q)s AND state = 'queued' AND priority = 0),
                   EXISTS (SELECT 1 FROM jobqueue_jobs
                           WHERE queue = %(q)s AND state = 'queued' AND priority = 1),
                   EXISTS (SELECT 1 FROM jobqueue_jobs
                           WHERE queue = %(q)s AND state = 'queued' AND priority = 2)
            """,
            {"q": self.queue},
        ).fetchone()
        assert row is not None
        return [int(bool(flag)) for flag in row]

    def claim(self, conn: Conn, wanted: Sequence[int], lease: float) -> list[Claim]:
        """Claim up to ``wanted[p]`` queued jobs of each priority, oldest first.

        ``FOR UPDATE SKIP LOCKED``: rows another process is claiming right now
        are passed over, not waited for, so claimers never queue behind each
        other.  The claim counts as an attempt (River's rule): a job whose run
        kills its process is not claimed forever.
        """
        rows = conn.execute(
            """
            WITH p0 AS (SELECT seq FROM jobqueue_jobs
                        WHERE queue = %(q)s AND state = 'queued' AND priority = 0
                        ORDER BY seq LIMIT %(n0)s FOR UPDATE SKIP LOCKED),
                 p1 AS (SELECT seq FROM jobqueue_jobs
                        WHERE queue = %(q)s AND state = 'queued' AND priority = 1
                        ORDER BY seq LIMIT %(n1)s FOR UPDATE SKIP LOCKED),
                 p2 AS (SELECT seq FROM jobqueue_jobs
                        WHERE queue = %(q)s AND state = 'queued' AND priority = 2
                        ORDER BY seq LIMIT %(n2)s FOR UPDATE SKIP LOCKED)
            UPDATE jobqueue_jobs j
            SET state = 'processing', attempts = j.attempts + 1, lease_owner = %(owner)s,
                lease_until = now() + %(lease)s * interval '1 second'
            FROM (SELECT seq FROM p0 UNION ALL SELECT seq FROM p1
                  UNION ALL SELECT seq FROM p2) AS picked
            WHERE j.seq = picked.seq
            RETURNING j.seq, j.attempts, j.id, j.priority, j.payload, j.handler, j.created
            """,
            {
                "q": self.queue,
                "n0": wanted[0],
                "n1": wanted[1],
                "n2": wanted[2],
                "owner": self.owner,
                "lease": lease,
            },
        ).fetchall()
        claims = [
            Claim(
                seq=seq,
                attempt=attempt,
                job=Job(
                    id=job_id,
                    priority=Priority(priority),
                    payload=bytes(payload),
                    attempts=attempt - 1,
                    created=created,
                    handler=handler,
                ),
            )
            for seq, attempt, job_id, priority, payload, handler, created in rows
        ]
        claims.sort(key=lambda c: c.seq)
        return claims

    def release(self, conn: Conn, claims: Iterable[Claim]) -> int:
        """Give claimed, never started jobs back to the queue, their attempt undone."""
        seqs, attempts = _tokens(claims)
        if not seqs:
            return 0
        cur = conn.execute(
            """
            UPDATE jobqueue_jobs j
            SET state = 'queued', attempts = j.attempts - 1, lease_owner = NULL,
                lease_until = NULL
            FROM unnest(%(seqs)s::bigint[], %(attempts)s::integer[]) AS c(seq, attempt)
            WHERE j.seq = c.seq AND j.attempts = c.attempt AND j.lease_owner = %(owner)s
              AND j.state = 'processing'
            RETURNING pg_notify(%(channel)s, %(q)s)::text
            """,
            {
                "seqs": seqs,
                "attempts": attempts,
                "owner": self.owner,
                "channel": CHANNEL,
                "q": self.queue,
            },
        )
        return cur.rowcount

    # -- the writer ---------------------------------------------------------------

    def completed(self, conn: Conn, claims: Iterable[Claim]) -> int:
        """Mark a batch of runs completed, in one transaction; returns how many applied.

        A run whose claim is no longer ours (its lease expired and the job was
        re-queued or re-claimed) is skipped: at least once, never overwritten.
        """
        seqs, attempts = _tokens(claims)
        if not seqs:
            return 0
        applied = conn.execute(
            """
            UPDATE jobqueue_jobs j
            SET state = 'completed', lease_owner = NULL, lease_until = NULL, finished_at = now()
            FROM unnest(%(seqs)s::bigint[], %(attempts)s::integer[]) AS c(seq, attempt)
            WHERE j.seq = c.seq AND j.attempts = c.attempt AND j.lease_owner = %(owner)s
              AND j.state = 'processing'
            """,
            {"seqs": seqs, "attempts": attempts, "owner": self.owner},
        ).rowcount
        if applied < len(seqs):
            logger.warning(
                "queue %r: %d completions came after their lease was lost; "
                "those jobs run again (at least once)",
                self.queue,
                len(seqs) - applied,
            )
        return applied

    def retrying(self, conn: Conn, claim: Claim, delay: float, error: str) -> bool:
        """Schedule the next attempt of a failed run in ``delay`` seconds."""
        row = conn.execute(
            """
            WITH j AS (
                UPDATE jobqueue_jobs
                SET state = 'retrying', run_after = now() + %(delay)s * interval '1 second',
                    lease_owner = NULL, lease_until = NULL, error = %(error)s
                WHERE seq = %(seq)s AND attempts = %(attempt)s AND lease_owner = %(owner)s
                  AND state = 'processing'
                RETURNING priority
            )
            UPDATE jobqueue_counts c SET retried = c.retried + 1
            FROM j WHERE c.queue = %(q)s AND c.priority = j.priority
            RETURNING 1
            """,
            {
                "delay": delay,
                "error": error,
                "seq": claim.seq,
                "attempt": claim.attempt,
                "owner": self.owner,
                "q": self.queue,
            },
        ).fetchone()
        return row is not None

    def failed(self, conn: Conn, claim: Claim, error: str) -> bool:
        """Mark a run failed for good: its retries are spent."""
        cur = conn.execute(
            """
            UPDATE jobqueue_jobs
            SET state = 'failed', lease_owner = NULL, lease_until = NULL,
                error = %(error)s, finished_at = now()
            WHERE seq = %(seq)s AND attempts = %(attempt)s AND lease_owner = %(owner)s
              AND state = 'processing'
            """,
            {"error": error, "seq": claim.seq, "attempt": claim.attempt, "owner": self.owner},
        )
        return cur.rowcount == 1

    # -- readers ------------------------------------------------------------------

    def status(self, conn: Conn, job_id: str, history: int) -> Status | None:
        """The live state of ``job_id``, else its newest finished state if it is among
        the newest ``history`` finished jobs of the queue, else None."""
        row = conn.execute(
            """
            SELECT coalesce(
                (SELECT state FROM jobqueue_jobs
                 WHERE queue = %(q)s AND id = %(id)s AND state = ANY(%(live)s)),
                (SELECT f.state FROM jobqueue_jobs f
                 WHERE f.queue = %(q)s AND f.id = %(id)s AND f.state = ANY(%(finished)s)
                   AND (SELECT count(*) FROM (
                            SELECT 1 FROM jobqueue_jobs n
                            WHERE n.queue = %(q)s AND n.state = ANY(%(finished)s)
                              AND n.seq > f.seq
                            LIMIT %(h)s) AS newer) < %(h)s
                 ORDER BY f.seq DESC LIMIT 1))
            """,
            {
                "q": self.queue,
                "id": job_id,
                "live": list(LIVE),
                "finished": list(_FINISHED),
                "h": history,
            },
        ).fetchone()
        return None if row is None or row[0] is None else Status(row[0])

    def unfinished(self, conn: Conn) -> bool:
        """True while any job of the queue is queued, processing or retrying, anywhere."""
        row = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM jobqueue_jobs WHERE queue = %s AND state = ANY(%s))",
            (self.queue, list(LIVE)),
        ).fetchone()
        return bool(row is not None and row[0])

    def counts(self, conn: Conn) -> list[dict[str, int]]:
        """Per priority: queued, retrying, processing, completed, failed, retried.

        One statement, so one snapshot: the numbers agree with each other.
        """
        rows = conn.execute(
            """
            SELECT c.priority, coalesce(j.queued, 0), coalesce(j.retrying, 0),
                   coalesce(j.processing, 0), c.completed + coalesce(j.completed, 0),
                   c.failed + coalesce(j.failed, 0), c.retried
            FROM jobqueue_counts c
            LEFT JOIN LATERAL (
                SELECT count(*) FILTER (WHERE state = 'queued') AS queued,
                       count(*) FILTER (WHERE state = 'retrying') AS retrying,
                       count(*) FILTER (WHERE state = 'processing') AS processing,
                       count(*) FILTER (WHERE state = 'completed') AS completed,
                       count(*) FILTER (WHERE state = 'failed') AS failed
                FROM jobqueue_jobs WHERE queue = c.queue AND priority = c.priority
            ) AS j ON true
            WHERE c.queue = %s ORDER BY c.priority
            """,
            (self.queue,),
        ).fetchall()
        keys = ("queued", "retrying", "processing", "completed", "failed", "retried")
        return [dict(zip(keys, (int(v) for v in row[1:]), strict=True)) for row in rows]

    # -- maintenance (leases.py) --------------------------------------------------

    def renew(self, conn: Conn, lease: float) -> int:
        """Extend every lease this queue holds, in one UPDATE: the heartbeat."""
        cur = conn.execute(
            """
            UPDATE jobqueue_jobs SET lease_until = now() + %(lease)s * interval '1 second'
            WHERE queue = %(q)s AND state = 'processing' AND lease_owner = %(owner)s
            """,
            {"lease": lease, "q": self.queue, "owner": self.owner},
        )
        return cur.rowcount

    def reap(self, conn: Conn, max_attempts: int) -> tuple[int, int]:
        """Take back the jobs whose lease expired: (re-queued, failed for good).

        Their holder died, or lost the database for longer than the lease.  A
        job that has had ``max_attempts`` claims fails instead of running
        again: the claim that expired was an attempt.
        """
        with conn.transaction():
            rows = conn.execute(
                """
                WITH expired AS (
                    SELECT seq FROM jobqueue_jobs
                    WHERE queue = %(q)s AND state = 'processing' AND lease_until < now()
                    FOR UPDATE SKIP LOCKED
                )
                UPDATE jobqueue_jobs j
                SET state = CASE WHEN j.attempts >= %(max)s THEN 'failed' ELSE 'queued' END,
                    finished_at = CASE WHEN j.attempts >= %(max)s THEN now() END,
                    error = 'lease expired: its worker died or lost the database',
                    lease_owner = NULL, lease_until = NULL
                FROM expired WHERE j.seq = expired.seq
                RETURNING j.priority, j.state
                """,
                {"q": self.queue, "max": max_attempts},
            ).fetchall()
            requeued = [p for p, state in rows if state == "queued"]
            failed = sum(state == "failed" for _, state in rows)
            self._count(conn, retried=requeued)
            if requeued:
                conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, self.queue))
        return len(requeued), failed

    def promote_due(self, conn: Conn) -> int:
        """Move the retries whose backoff is over back to queued, and wake the workers."""
        cur = conn.execute(
            """
            UPDATE jobqueue_jobs SET state = 'queued', run_after = NULL
            WHERE queue = %(q)s AND state = 'retrying' AND run_after <= now()
            RETURNING pg_notify(%(channel)s, %(q)s)::text
            """,
            {"q": self.queue, "channel": CHANNEL},
        )
        return cur.rowcount

    def next_retry_in(self, conn: Conn) -> float | None:
        """Seconds until the earliest retry of the queue is due, or None."""
        row = conn.execute(
            "SELECT extract(epoch FROM min(run_after) - now()) FROM jobqueue_jobs"
            " WHERE queue = %s AND state = 'retrying'",
            (self.queue,),
        ).fetchone()
        return None if row is None or row[0] is None else max(0.0, float(row[0]))

    def prune(self, conn: Conn, history: int) -> int:
        """Delete the finished rows beyond the newest ``history``, keeping their counts."""
        with conn.transaction():
            rows = conn.execute(
                """
                WITH cutoff AS (
                    SELECT seq FROM jobqueue_jobs
                    WHERE queue = %(q)s AND state IN ('completed', 'failed')
                    ORDER BY seq DESC OFFSET %(h)s LIMIT 1
                ), gone AS (
                    DELETE FROM jobqueue_jobs j USING cutoff
                    WHERE j.queue = %(q)s AND j.state IN ('completed', 'failed')
                      AND j.seq <= cutoff.seq
                    RETURNING j.priority, j.state
                )
                SELECT priority, state FROM gone
                """,
                {"q": self.queue, "h": history},
            ).fetchall()
            self._count(
                conn,
                completed=[p for p, s in rows if s == "completed"],
                failed=[p for p, s in rows if s == "failed"],
            )
        return len(rows)

    def _count(self, conn: Conn, **columns: list[int]) -> None:
        """Add one to counter ``name`` per priority listed in ``columns[name]``.

        One UPDATE per priority, in ascending priority: the lock order every
        transaction keeps, so two of them never deadlock on these rows.
        """
        for p in Priority:
            deltas = {name: ps.count(p) for name, ps in columns.items() if p in ps}
            if deltas:
                assignments = ", ".join(f"{name} = {name} + %s" for name in deltas)
                conn.execute(
                    f"UPDATE jobqueue_counts SET {assignments} WHERE queue = %s AND priority = %s",
                    (*deltas.values(), self.queue, int(p)),
                )


def _tokens(claims: Iterable[Claim]) -> tuple[list[int], list[int]]:
    seqs: list[int] = []
    attempts: list[int] = []
    for claim in claims:
        seqs.append(claim.seq)
        attempts.append(claim.attempt)
    return seqs, attempts
