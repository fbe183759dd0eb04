"""The SQL of producers, claims and run outcomes, one method each
(the maintenance statements are in chores.py, the operator's in operations.py).

``Store`` is the seam between the queue's threads and the database: its
methods are its contract, and none of them holds a lock of the queue.  Each
takes the connection to run on, because each thread of the queue owns one
(psycopg connections serialize their users).

The claim token: a claim sets ``lease_owner`` to the claiming queue's uuid
and adds one to ``attempts``, so (``seq``, ``lease_owner``, ``attempts``)
names one claim of one job.  Every write that ends a run (completed,
retrying, failed, released) carries the token in its ``WHERE``: a worker
whose lease expired, and whose job another process claimed since, matches no
row, so it cannot overwrite the newer run's state.  ``lease_owner`` is set
only while a job is PROCESSING (every write that ends a claim clears it), so
the token implies the state, and the batched writes (completions, renewals,
releases) leave ``state = 'processing'`` out of their ``WHERE``: with it, the
planner probes the leased index, which holds a dead entry for every claim
ended since the last vacuum, and walked thousands of them per batch.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from jobqueue.vocabulary import DuplicateJobError, Job, Priority, Status

__all__ = ["CHANNEL", "Claim", "Conn", "Store", "connect", "tokens"]

logger = logging.getLogger(__name__)

Conn = psycopg.Connection[tuple[Any, ...]]

#: The NOTIFY channel; the payload is the queue name.  One channel for every
#: queue keeps LISTEN simple; a worker woken for another queue claims nothing.
CHANNEL = "jobqueue"


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
    waited: float = 0.0  # seconds queued before this claim, by the server's clock


# One job's INSERT; the caller adds its FROM (the room) or WHERE (the count).
_INSERT_ONE = """
    INSERT INTO jobqueue_jobs
        (queue, id, priority, payload, handler, created, state, attempts, run_after)
    SELECT %(q)s, %(id)s, %(p)s, %(payload)s, %(handler)s, %(created)s,
           CASE WHEN to_timestamp(%(run_at)s) > now() THEN 'scheduled' ELSE 'queued' END,
           %(attempts)s, to_timestamp(%(run_at)s)
"""


# The queued jobs of priority %(p)s, counted up to %(size)s: the exact bound (schema.py).
_QUEUED_UP_TO = """
    (SELECT count(*) FROM (
        SELECT 1 FROM jobqueue_jobs
        WHERE queue = %(q)s AND state = 'queued' AND priority = %(p)s
        LIMIT %(size)s) AS waiting)
"""


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

        The bound (schema.py): one statement, one round trip, while the
        priority's ``queued_at_most`` is below ``queue_size``; it adds one to
        it, and its row lock orders the producers of this (queue, priority),
        wherever they run (a second one waits, then checks the bound on the
        row the first committed).  When it is not below, the exact count
        decides (``_enqueue_counted``).  The NOTIFY is delivered at commit, so
        a woken worker finds the row.
        """
        params = {
            "q": self.queue,
            "id": job.id,
            "p": int(job.priority),
            "payload": job.payload,
            "handler": job.handler,
            "created": job.created,
            "attempts": job.attempts,
            "run_at": job.run_at,
            "size": queue_size,
            "channel": CHANNEL,
        }
        try:
            cur = conn.execute(
                """
                WITH room AS (
                    UPDATE jobqueue_counts SET queued_at_most = queued_at_most + 1
                    WHERE queue = %(q)s AND priority = %(p)s AND queued_at_most < %(size)s
                    RETURNING 1)
                """
                + _INSERT_ONE
                + " FROM room RETURNING pg_notify(%(channel)s, %(q)s)::text",
                params,
            )
            if cur.fetchone() is not None:
                return True
            return self._enqueue_counted(conn, params)
        except psycopg.errors.UniqueViolation:
            state = self.status(conn, job.id, history=0)
            shown = state.value if state is not None else "live"
            raise DuplicateJobError(
                f"cannot enqueue job {job.id!r}: it is still {shown} in queue {self.queue!r}"
            ) from None

    def _enqueue_counted(self, conn: Conn, params: dict[str, Any]) -> bool:
        """``enqueue`` when ``queued_at_most`` has reached the bound: count.

        The counter row locked first, the count is a statement of its own
        after the lock, so it sees every commit of the lock's previous
        holders; ``queued_at_most`` becomes the count (with the job, if it
        fits).  A full queue inserts nothing.  Pipelined: BEGIN, lock, insert,
        update and COMMIT go in one round trip.
        """
        with conn.pipeline(), conn.transaction():
            self.lock_counts(conn, [params["p"]])
            cur = conn.execute(
                _INSERT_ONE
                + " WHERE "
                + _QUEUED_UP_TO
                + " < %(size)s RETURNING pg_notify(%(channel)s, %(q)s)::text",
                params,
            )
            # The count again, up to the bound, the insert included (the
            # inserting statement's snapshot cannot see its own row).
            conn.execute(
                "UPDATE jobqueue_counts SET queued_at_most = "
                + _QUEUED_UP_TO
                + " WHERE queue = %(q)s AND priority = %(p)s",
                params,
            )
        return cur.fetchone() is not None

    def lock_counts(self, conn: Conn, priorities: Iterable[int]) -> dict[int, int]:
        """Lock the counter rows of ``priorities``, in ascending priority (schema.py: the
        one lock order), before a transaction moves jobs into QUEUED; return their
        ``queued_at_most``, by priority.  In a transaction."""
        rows = conn.execute(
            "SELECT priority, queued_at_most FROM jobqueue_counts"
            " WHERE queue = %s AND priority = ANY(%s) ORDER BY priority FOR UPDATE",
            (self.queue, sorted({int(p) for p in priorities})),
        ).fetchall()
        return {int(p): int(n) for p, n in rows}

    def add_counts(self, conn: Conn, **columns: list[int]) -> None:
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

    def _set_queued_at_most(self, conn: Conn, priority: int, value: int) -> None:
        conn.execute(
            "UPDATE jobqueue_counts SET queued_at_most = %s WHERE queue = %s AND priority = %s",
            (value, self.queue, priority),
        )

    def enqueue_many(
        self, conn: Conn, jobs: Sequence[Job], shares: Sequence[int], size: int
    ) -> bool:
        """Insert every job of ``jobs`` in one transaction, all or none; False, nothing
        inserted, if a priority lacks room for its ``shares[p]`` jobs.
        ``DuplicateJobError`` (nothing inserted) if an id is live in any process.

        As ``enqueue``: the counter row of each priority in the batch, locked
        in ascending priority (one lock order for every producer, so two
        batches cannot deadlock), then ``queued_at_most`` checked, and where
        it says no, the exact count.  One multi-row INSERT from arrays, one
        commit, one NOTIFY.
        """
        used = [p for p, n in enumerate(shares) if n]
        try:
            with conn.transaction():
                at_most = self.lock_counts(conn, used)
                for p in used:
                    if at_most.get(p, size) + shares[p] <= size:
                        continue
                    row = conn.execute(
                        "SELECT " + _QUEUED_UP_TO, {"q": self.queue, "p": p, "size": size}
                    ).fetchone()
                    assert row is not None
                    at_most[p] = int(row[0])
                    if at_most[p] + shares[p] > size:
                        self._set_queued_at_most(conn, p, at_most[p])
                        return False  # commits the refreshed bound, and no job
                conn.execute(
                    """
                    INSERT INTO jobqueue_jobs
                        (queue, id, priority, payload, handler, created, state, attempts,
                         run_after)
                    SELECT %(q)s, b.id, b.priority, b.payload, b.handler, b.created,
                           CASE WHEN to_timestamp(b.run_at) > now() THEN 'scheduled'
                                ELSE 'queued' END,
                           b.attempts, to_timestamp(b.run_at)
                    FROM unnest(%(ids)s::text[], %(ps)s::smallint[], %(payloads)s::bytea[],
                                %(handlers)s::text[], %(created)s::double precision[],
                                %(attempts)s::integer[], %(run_at)s::double precision[])
                         WITH ORDINALITY AS b(id, priority, payload, handler, created,
                                              attempts, run_at, n)
                    ORDER BY b.n  -- FIFO within the batch: seq follows the list
                    """,
                    {
                        "q": self.queue,
                        "ids": [job.id for job in jobs],
                        "ps": [int(job.priority) for job in jobs],
                        "payloads": [job.payload for job in jobs],
                        "handlers": [job.handler for job in jobs],
                        "created": [job.created for job in jobs],
                        "attempts": [job.attempts for job in jobs],
                        "run_at": [job.run_at for job in jobs],
                    },
                )
                for p in used:
                    self._set_queued_at_most(conn, p, at_most.get(p, 0) + shares[p])
                conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, self.queue))
            return True
        except psycopg.errors.UniqueViolation:
            live = conn.execute(
                "SELECT id, state FROM jobqueue_jobs WHERE queue = %s AND id = ANY(%s)"
                " AND state IN ('queued', 'scheduled', 'processing', 'retrying') LIMIT 1",
                (self.queue, [job.id for job in jobs]),
            ).fetchone()
            shown = f"{live[0]!r}: it is still {live[1]}" if live else "an id: it is still live"
            raise DuplicateJobError(
                f"cannot enqueue a batch of {len(jobs)} jobs into queue {self.queue!r}: "
                f"job {shown}; nothing was enqueued"
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

    def claim(
        self, conn: Conn, wanted: Sequence[int], lease: float, deep: int = 1
    ) -> tuple[list[Claim], list[int], list[int]]:
        """Claim up to ``wanted[p]`` queued jobs of each priority, oldest first; and,
        as they are after the claim, from the same statement: ``waiting()``, and
        for each priority 1 if at least ``deep`` of its jobs are still queued
        (a deep backlog, where the fetcher claims ahead: queue.py), else 0.

        ``FOR UPDATE SKIP LOCKED``: rows another process is claiming right now
        are passed over, not waited for, so claimers never queue behind each
        other.  The claim counts as an attempt (River's rule): a job whose run
        kills its process is not claimed forever.  The count rows (``seq = -1
        - p``, in ``attempts`` the queued jobs of priority p, counted up to
        ``wanted[p] + deep``: one walk of the ready index tells both whether a
        job is left beyond the ones just claimed and whether ``deep`` are)
        save the next claim a round trip.  Their ORDER BY keeps the planner on
        the ready index: with stale statistics, a plain EXISTS walked the heap
        past every finished row.  (The statement's snapshot predates its
        UPDATE: the counts include the jobs it claims.)
        """
        rows = conn.execute(
            """
            WITH p0 AS (SELECT seq FROM jobqueue_jobs
                        WHERE queue = %(q)s AND state = 'queued' AND priority = 0
                        ORDER BY enqueued_at, seq LIMIT %(n0)s FOR UPDATE SKIP LOCKED),
                 p1 AS (SELECT seq FROM jobqueue_jobs
                        WHERE queue = %(q)s AND state = 'queued' AND priority = 1
                        ORDER BY enqueued_at, seq LIMIT %(n1)s FOR UPDATE SKIP LOCKED),
                 p2 AS (SELECT seq FROM jobqueue_jobs
                        WHERE queue = %(q)s AND state = 'queued' AND priority = 2
                        ORDER BY enqueued_at, seq LIMIT %(n2)s FOR UPDATE SKIP LOCKED),
                 claimed AS (
                    UPDATE jobqueue_jobs j
                    SET state = 'processing', attempts = j.attempts + 1,
                        lease_owner = %(owner)s,
                        lease_until = now() + %(lease)s * interval '1 second'
                    -- = ANY(ARRAY(..)), not a join: a generic plan (psycopg prepares
                    -- repeated statements) cannot see the LIMITs, expects a thousand
                    -- rows, and would hash-join the whole table.
                    WHERE j.seq = ANY (ARRAY (SELECT seq FROM p0 UNION ALL SELECT seq FROM p1
                                              UNION ALL SELECT seq FROM p2))
                    RETURNING j.seq, j.attempts, j.id, j.priority, j.payload, j.handler,
                              j.created,
                              extract(epoch FROM now() - j.enqueued_at)::float8 AS waited)
            SELECT seq, attempts, id, priority, payload, handler, created, waited FROM claimed
            UNION ALL
            SELECT -1, (SELECT count(*) FROM (
                           SELECT 1 FROM jobqueue_jobs
                           WHERE queue = %(q)s AND state = 'queued' AND priority = 0
                           ORDER BY enqueued_at, seq LIMIT %(d0)s) AS w0)::integer,
                   NULL, NULL, NULL, NULL, NULL, NULL
            UNION ALL
            SELECT -2, (SELECT count(*) FROM (
                           SELECT 1 FROM jobqueue_jobs
                           WHERE queue = %(q)s AND state = 'queued' AND priority = 1
                           ORDER BY enqueued_at, seq LIMIT %(d1)s) AS w1)::integer,
                   NULL, NULL, NULL, NULL, NULL, NULL
            UNION ALL
            SELECT -3, (SELECT count(*) FROM (
                           SELECT 1 FROM jobqueue_jobs
                           WHERE queue = %(q)s AND state = 'queued' AND priority = 2
                           ORDER BY enqueued_at, seq LIMIT %(d2)s) AS w2)::integer,
                   NULL, NULL, NULL, NULL, NULL, NULL
            """,
            {
                "q": self.queue,
                "n0": wanted[0],
                "n1": wanted[1],
                "n2": wanted[2],
                "d0": wanted[0] + deep,
                "d1": wanted[1] + deep,
                "d2": wanted[2] + deep,
                "owner": self.owner,
                "lease": lease,
            },
        ).fetchall()
        claims: list[Claim] = []
        flags = [0] * len(Priority)
        deeps = [0] * len(Priority)
        for seq, attempt, job_id, priority, payload, handler, created, waited in rows:
            if seq < 0:  # a count row: -1 - p, and up to wanted[p] + deep of p's queued jobs
                p = -1 - seq
                flags[p] = int(attempt > wanted[p])
                deeps[p] = int(attempt >= wanted[p] + deep)
                continue
            job = Job(
                id=job_id,
                priority=Priority(priority),
                payload=bytes(payload),
                attempts=attempt - 1,
                created=created,
                handler=handler,
            )
            claims.append(Claim(seq=seq, attempt=attempt, job=job, waited=max(0.0, waited)))
        claims.sort(key=lambda c: c.seq)
        return claims, flags, deeps

    def release(self, conn: Conn, claims: Iterable[Claim]) -> int:
        """Give claimed, never started jobs back to the queue, their attempt undone."""
        claims = list(claims)
        seqs, attempts = tokens(claims)
        if not seqs:
            return 0
        with conn.transaction():
            self.lock_counts(conn, (claim.job.priority for claim in claims))
            rows = conn.execute(
                """
                UPDATE jobqueue_jobs j
                SET state = 'queued', attempts = j.attempts - 1, lease_owner = NULL,
                    lease_until = NULL
                FROM unnest(%(seqs)s::bigint[], %(attempts)s::integer[]) AS c(seq, attempt)
                WHERE j.seq = ANY(%(seqs)s)  -- lets the planner probe the primary key
                  AND j.seq = c.seq AND j.attempts = c.attempt AND j.lease_owner = %(owner)s
                RETURNING j.priority, pg_notify(%(channel)s, %(q)s)::text
                """,
                {
                    "seqs": seqs,
                    "attempts": attempts,
                    "owner": self.owner,
                    "channel": CHANNEL,
                    "q": self.queue,
                },
            ).fetchall()
            self.add_counts(conn, queued_at_most=[int(row[0]) for row in rows])
        return len(rows)

    # -- the writer ---------------------------------------------------------------

    def completed(self, conn: Conn, claims: Iterable[Claim]) -> int:
        """Mark a batch of runs completed, in one transaction; returns how many applied.

        A run whose claim is no longer ours (its lease expired and the job was
        re-queued or re-claimed) is skipped: at least once, never overwritten.
        """
        seqs, attempts = tokens(claims)
        if not seqs:
            return 0
        applied = conn.execute(
            """
            UPDATE jobqueue_jobs j
            SET state = 'completed', lease_owner = NULL, lease_until = NULL, finished_at = now()
            FROM unnest(%(seqs)s::bigint[], %(attempts)s::integer[]) AS c(seq, attempt)
            WHERE j.seq = ANY(%(seqs)s)  -- lets the planner probe the primary key
              AND j.seq = c.seq AND j.attempts = c.attempt AND j.lease_owner = %(owner)s
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
        """Schedule the next attempt of a failed run in ``delay`` seconds.

        The counter row is locked first, as in every transaction that takes
        it and a job's row (schema.py): else an enqueue of this job's id,
        holding the counter row and waiting on the id's index entry, and this,
        holding the job's row and waiting on the counter row, would deadlock.
        """
        with conn.pipeline(), conn.transaction():
            self.lock_counts(conn, [claim.job.priority])
            cur = conn.execute(
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
            )
        return cur.fetchone() is not None

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
                 WHERE queue = %(q)s AND id = %(id)s
                   AND state IN ('queued', 'scheduled', 'processing', 'retrying')),
                (SELECT f.state FROM jobqueue_jobs f
                 WHERE f.queue = %(q)s AND f.id = %(id)s
                   AND f.state IN ('completed', 'failed', 'cancelled')
                   AND (SELECT count(*) FROM (
                            SELECT 1 FROM jobqueue_jobs n
                            WHERE n.queue = %(q)s
                              AND n.state IN ('completed', 'failed', 'cancelled')
                              AND (n.finished_at, n.seq) > (f.finished_at, f.seq)
                            LIMIT %(h)s) AS newer) < %(h)s
                 ORDER BY f.finished_at DESC, f.seq DESC LIMIT 1))
            """,
            {"q": self.queue, "id": job_id, "h": history},
        ).fetchone()
        return None if row is None or row[0] is None else Status(row[0])

    def unfinished(self, conn: Conn) -> bool:
        """True while any job of the queue is queued, processing or retrying, anywhere."""
        row = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM jobqueue_jobs WHERE queue = %s"
            " AND state IN ('queued', 'scheduled', 'processing', 'retrying'))",
            (self.queue,),
        ).fetchone()
        return bool(row is not None and row[0])

    def counts(self, conn: Conn) -> list[dict[str, Any]]:
        """Per priority: queued, retrying, processing, completed, failed, retried, and
        oldest_wait (seconds the oldest queued job has waited, by the server's clock).

        One statement, so one snapshot: the numbers agree with each other.
        """
        rows = conn.execute(
            """
            SELECT c.priority, coalesce(j.queued, 0), coalesce(j.retrying, 0),
                   coalesce(j.processing, 0), c.completed + coalesce(j.completed, 0),
                   c.failed + coalesce(j.failed, 0), c.retried, coalesce(j.oldest_wait, 0.0)
            FROM jobqueue_counts c
            LEFT JOIN LATERAL (
                SELECT count(*) FILTER (WHERE state = 'queued') AS queued,
                       count(*) FILTER (WHERE state = 'retrying') AS retrying,
                       count(*) FILTER (WHERE state = 'processing') AS processing,
                       count(*) FILTER (WHERE state = 'completed') AS completed,
                       count(*) FILTER (WHERE state = 'failed') AS failed,
                       extract(epoch FROM now() - min(enqueued_at)
                               FILTER (WHERE state = 'queued'))::float8 AS oldest_wait
                FROM jobqueue_jobs WHERE queue = c.queue AND priority = c.priority
            ) AS j ON true
            WHERE c.queue = %s ORDER BY c.priority
            """,
            (self.queue,),
        ).fetchall()
        keys = ("queued", "retrying", "processing", "completed", "failed", "retried")
        return [
            {**dict(zip(keys, (int(v) for v in row[1:7]), strict=True)), "oldest_wait": row[7]}
            for row in rows
        ]


def tokens(claims: Iterable[Claim]) -> tuple[list[int], list[int]]:
    """The claim tokens of ``claims``, as two arrays for ``unnest``: (seqs, attempts)."""
    seqs: list[int] = []
    attempts: list[int] = []
    for claim in claims:
        seqs.append(claim.seq)
        attempts.append(claim.attempt)
    return seqs, attempts
