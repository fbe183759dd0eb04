"""The tables, created on first open and versioned so that a later release can migrate.

One row per accepted job: ``jobqueue_jobs`` holds every job of every queue,
live or finished, told apart by ``state`` (the values of
:class:`~jobqueue.vocabulary.Status`).  A job id may come back after it
finished, so ``id`` is unique only among the live rows of a queue: that is
the partial unique index which turns a duplicate enqueue from any process
into a unique violation.  ``(enqueued_at, seq)`` orders the jobs of a
priority FIFO, and ``(finished_at, seq)`` the history.  Neither is the
primary key on purpose: ordered by ``seq`` alone, the planner may walk the
primary key through every finished row to find the first queued one (it
does, with statistics taken while the backlog was fresh), and a claim would
cost as much as the history is long.

``jobqueue_counts`` holds one row per (queue, priority): ``completed`` and
``failed`` count the finished jobs whose rows were pruned (the history keeps
``status_history`` of them), so the totals survive pruning; ``retried``
counts retries scheduled, as in the in-process queue.  A transaction that
changes several of these rows changes them in ascending priority: one lock
order for all, so no two can deadlock.

``queue_size`` bounds the *queued* jobs of a priority, as in the in-process
queue (a retry, or a job taken back from a dead worker, re-enters past the
bound: it was accepted already).  It is strict across processes, and cheap
while the queue is far from full: ``jobqueue_counts.queued_at_most`` is an
upper bound of the queued jobs of its (queue, priority), or at least
``queue_size``.  Every transaction that makes a job QUEUED (an enqueue, a
release, a reaped lease, a due retry, a requeue) adds to it; claims and
cancels, which take jobs out, leave it alone.  An enqueue adds one to it in
the statement that inserts, if it is below ``queue_size``: one round trip,
no count.  Once it reaches ``queue_size`` an enqueue counts the queued rows
(up to ``queue_size``, in the ready index) and writes the count back, so the
bound is exact again.  The counter row's lock orders the producers of a
(queue, priority), wherever they run: their enqueues serialize for the length
of their commit (an fsync with ``synchronous_commit=on``).  A transaction
that locks counter rows and job rows takes the counter rows first, in
ascending priority: an enqueue holds its counter row while its insert may
wait on the index entry of a live job of the same id, so the transaction
changing that job must not be waiting for the counter row.

Creation is serialized by a transaction-level advisory lock, so processes
that open the same database at once cannot race on ``CREATE``.
"""

from __future__ import annotations

import psycopg

__all__ = ["SCHEMA_VERSION", "ensure_schema"]

#: The version this code writes and reads.  Bump it, and add a step to
#: ``_MIGRATIONS``, for every change to the tables.
SCHEMA_VERSION = 3

# pg_advisory_xact_lock key: any fixed 64-bit number; this one spells "jobqueue".
_DDL_LOCK = 0x6A6F627175657565

_V1 = """
CREATE TABLE jobqueue_jobs (
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue       text NOT NULL,
    id          text NOT NULL,
    priority    smallint NOT NULL CHECK (priority BETWEEN 0 AND 2),
    payload     bytea NOT NULL,
    handler     text,
    created     double precision NOT NULL,
    state       text NOT NULL CHECK (state IN
                    ('queued', 'processing', 'retrying', 'completed', 'failed')),
    attempts    integer NOT NULL DEFAULT 0,   -- runs claimed, this one included
    enqueued_at timestamptz NOT NULL DEFAULT now(),  -- FIFO order: when it was last queued
    run_after   timestamptz,                  -- retrying: when it may run again
    lease_owner uuid,                         -- processing: the queue that holds it
    lease_until timestamptz,                  -- processing: when the lease expires
    error       text,                         -- the last failure
    finished_at timestamptz
);
CREATE UNIQUE INDEX jobqueue_jobs_live_id ON jobqueue_jobs (queue, id)
    WHERE state IN ('queued', 'processing', 'retrying');
CREATE INDEX jobqueue_jobs_ready ON jobqueue_jobs (queue, priority, enqueued_at, seq)
    WHERE state = 'queued';
CREATE INDEX jobqueue_jobs_leased ON jobqueue_jobs (queue, lease_until)
    WHERE state = 'processing';
CREATE INDEX jobqueue_jobs_retrying ON jobqueue_jobs (queue, run_after)
    WHERE state = 'retrying';
CREATE INDEX jobqueue_jobs_finished ON jobqueue_jobs (queue, finished_at, seq)
    WHERE state IN ('completed', 'failed');
CREATE INDEX jobqueue_jobs_finished_id ON jobqueue_jobs (queue, id)
    WHERE state IN ('completed', 'failed');
CREATE TABLE jobqueue_counts (
    queue      text NOT NULL,
    priority   smallint NOT NULL,
    completed  bigint NOT NULL DEFAULT 0,
    failed     bigint NOT NULL DEFAULT 0,
    retried    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, priority)
);
"""

# Version 2: delayed jobs (``run_at``: state 'scheduled', due at ``run_after``,
# live) and cancelled jobs (state 'cancelled', finished, in the history).
_V2 = """
ALTER TABLE jobqueue_jobs DROP CONSTRAINT jobqueue_jobs_state_check;
ALTER TABLE jobqueue_jobs ADD CONSTRAINT jobqueue_jobs_state_check CHECK (state IN
    ('queued', 'scheduled', 'processing', 'retrying', 'completed', 'failed', 'cancelled'));
DROP INDEX jobqueue_jobs_live_id;
CREATE UNIQUE INDEX jobqueue_jobs_live_id ON jobqueue_jobs (queue, id)
    WHERE state IN ('queued', 'scheduled', 'processing', 'retrying');
DROP INDEX jobqueue_jobs_retrying;
CREATE INDEX jobqueue_jobs_due ON jobqueue_jobs (queue, run_after)
    WHERE state IN ('retrying', 'scheduled');
DROP INDEX jobqueue_jobs_finished;
CREATE INDEX jobqueue_jobs_finished ON jobqueue_jobs (queue, finished_at, seq)
    WHERE state IN ('completed', 'failed', 'cancelled');
DROP INDEX jobqueue_jobs_finished_id;
CREATE INDEX jobqueue_jobs_finished_id ON jobqueue_jobs (queue, id)
    WHERE state IN ('completed', 'failed', 'cancelled');
"""

# Version 3: ``queued_at_most``, the enqueue's cheap bound (above), from the
# queued rows as they are.
_V3 = """
ALTER TABLE jobqueue_counts ADD COLUMN queued_at_most bigint NOT NULL DEFAULT 0;
UPDATE jobqueue_counts c SET queued_at_most = (
    SELECT count(*) FROM jobqueue_jobs j
    WHERE j.queue = c.queue AND j.priority = c.priority AND j.state = 'queued');
"""

# version reached -> the DDL that reaches it from the one before.
_MIGRATIONS = {1: _V1, 2: _V2, 3: _V3}


def ensure_schema(conn: psycopg.Connection[tuple[object, ...]], queue: str) -> None:
    """Create or migrate the tables, and the counter rows of ``queue``.  Idempotent.

    ``conn`` must be in autocommit mode; this runs one transaction, unless
    everything is there already (the common open: two reads, no lock).
    Refuses (``RuntimeError``) a database that a newer release has migrated
    past us.
    """
    if _ready(conn, queue):
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS jobqueue_schema ("
            " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        row = conn.execute("SELECT coalesce(max(version), 0) FROM jobqueue_schema").fetchone()
        current = int(row[0]) if row is not None else 0  # type: ignore[call-overload]
        if current > SCHEMA_VERSION:
            raise RuntimeError(
                f"postgres_url: the jobqueue tables are at schema version {current}, "
                f"newer than this release understands ({SCHEMA_VERSION}); upgrade jobqueue"
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            conn.execute(_MIGRATIONS[version].encode())
            conn.execute("INSERT INTO jobqueue_schema (version) VALUES (%s)", (version,))
        # A queue's counter rows may come after its jobs (a version 1 database):
        # queued_at_most starts from the queued rows, as the bound requires.
        conn.execute(
            """
            INSERT INTO jobqueue_counts (queue, priority, queued_at_most)
            SELECT %(q)s, p, (SELECT count(*) FROM jobqueue_jobs
                              WHERE queue = %(q)s AND priority = p AND state = 'queued')
            FROM generate_series(0, 2) AS p
            WHERE NOT EXISTS (SELECT 1 FROM jobqueue_counts WHERE queue = %(q)s AND priority = p)
            ON CONFLICT DO NOTHING
            """,
            {"q": queue},
        )


def _ready(conn: psycopg.Connection[tuple[object, ...]], queue: str) -> bool:
    """True if the tables are at ``SCHEMA_VERSION`` and ``queue`` has its counter rows."""
    row = conn.execute(
        "SELECT to_regclass('jobqueue_schema') IS NOT NULL"
        " AND to_regclass('jobqueue_counts') IS NOT NULL"
    ).fetchone()
    if row is None or not row[0]:
        return False
    row = conn.execute(
        "SELECT (SELECT max(version) FROM jobqueue_schema),"
        " (SELECT count(*) FROM jobqueue_counts WHERE queue = %s)",
        (queue,),
    ).fetchone()
    return row is not None and tuple(row) == (SCHEMA_VERSION, 3)
