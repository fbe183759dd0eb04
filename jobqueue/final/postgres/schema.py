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
bound: it was accepted already).  It is strict across processes: an enqueue
takes a transaction-level advisory lock on (queue, priority), then counts the
queued rows, up to ``queue_size``, in the ready index.  The cost: enqueues of
one priority serialize for the length of their commit (an fsync with
``synchronous_commit=on``), and each counts up to ``queue_size`` index
entries.  Without the lock, concurrent producers could overshoot the bound.

Creation is serialized by a transaction-level advisory lock, so processes
that open the same database at once cannot race on ``CREATE``.
"""

from __future__ import annotations

import psycopg

__all__ = ["SCHEMA_VERSION", "ensure_schema"]

#: The version this code writes and reads.  Bump it, and add a step to
#: ``_MIGRATIONS``, for every change to the tables.
SCHEMA_VERSION = 1

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

# version reached -> the DDL that reaches it from the one before.
_MIGRATIONS = {1: _V1}


def ensure_schema(conn: psycopg.Connection[tuple[object, ...]], queue: str) -> None:
    """Create or migrate the tables, and the counter rows of ``queue``.  Idempotent.

    ``conn`` must be in autocommit mode; this runs one transaction.  Refuses
    (``RuntimeError``) a database that a newer release has migrated past us.
    """
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
        conn.execute(
            "INSERT INTO jobqueue_counts (queue, priority)"
            " SELECT %s, p FROM generate_series(0, 2) AS p ON CONFLICT DO NOTHING",
            (queue,),
        )
