"""final's newer calls on PostgreSQL: enqueue_many, PermanentFailure, current_job, dead
letters, wait age, pause; and the calls that say plainly they are not there yet.

Two ``JobQueue`` objects in this process stand in for two processes: they
share only the database (each has its own connections and lease owner).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import wait
from typing import Any

import psycopg
import pytest

from jobqueue.final import (
    Config,
    DuplicateJobError,
    Job,
    JobContext,
    JobQueue,
    PermanentFailure,
    Priority,
    QueueClosed,
    QueueFull,
    Status,
    current_job,
)
from jobqueue.final.postgres import schema
from jobqueue.final.postgres.watch import JobFailedElsewhere
from tests.helpers import WAIT, Gate

pytestmark = pytest.mark.timeout(60)


def queue(url: str, name: str, **config: Any) -> Any:
    config.setdefault("lease_timeout", 5.0)
    return JobQueue(Config(postgres_url=url, queue_name=name, **config))


def eventually(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    """Poll ``predicate`` (a database read) until true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


# -- enqueue_many -------------------------------------------------------------------


def test_a_batch_with_an_id_live_in_another_process_inserts_nothing(
    pg_url: str, pg_queue_name: str
) -> None:
    with (
        queue(pg_url, pg_queue_name, num_workers=0) as web,
        queue(pg_url, pg_queue_name, num_workers=0) as other,
    ):
        web.enqueue(Job(id="b"))
        with pytest.raises(DuplicateJobError, match=r"'b'.*queued.*nothing was enqueued"):
            other.enqueue_many([Job(id="a"), Job(id="b"), Job(id="c")])
        assert (web.status("a"), web.status("c"), web.metrics().queued) == (None, None, 1)
        with pytest.raises(DuplicateJobError, match="twice"):
            other.enqueue_many([Job(id="d"), Job(id="d")])
        other.enqueue_many([Job(id="a"), Job(id="c", priority=Priority.HIGH)])
        assert web.status("a") is web.status("c") is Status.QUEUED


def test_a_batch_runs_everything_in_its_order(pg_url: str, pg_queue_name: str) -> None:
    ran: list[bytes] = []
    with queue(pg_url, pg_queue_name, num_workers=0) as web:
        web.enqueue_many(Job(id=f"j{i}", payload=b"%d" % i) for i in range(50))
    with queue(pg_url, pg_queue_name, num_workers=1, handler=ran.append) as worker:
        assert worker.join(timeout=WAIT)
        assert worker.metrics().completed == 50
    assert ran == [b"%d" % i for i in range(50)]  # FIFO within the batch


def test_a_batch_waits_for_room_for_all_of_it(pg_url: str, pg_queue_name: str) -> None:
    with queue(pg_url, pg_queue_name, num_workers=0, queue_size=3) as web:
        with pytest.raises(ValueError, match="queue_size=3"):
            web.enqueue_many([Job(id=f"big{i}") for i in range(4)])
        web.enqueue(Job(id="first"))
        web.enqueue(Job(id="second"))
        with pytest.raises(QueueFull, match="a batch of 2 jobs"):
            web.enqueue_many([Job(id="x"), Job(id="y")], timeout=0.1)
        assert (web.status("x"), web.status("y"), web.metrics().queued) == (None, None, 2)
        web.enqueue_many([Job(id="x"), Job(id="y", priority=Priority.LOW)], timeout=0.1)
        assert web.metrics().queued == 4


# -- the handler's side: PermanentFailure, current_job --------------------------------


def test_a_permanent_failure_is_not_retried(pg_url: str, pg_queue_name: str) -> None:
    runs: list[bytes] = []

    def gone(payload: bytes) -> None:
        runs.append(payload)
        raise PermanentFailure("404 from the webhook")

    with queue(pg_url, pg_queue_name, max_retries=3, handler=gone) as q:
        q.enqueue(Job(id="p"))
        assert q.join(timeout=WAIT)
        assert (q.status("p"), q.metrics().retried, len(runs)) == (Status.FAILED, 0, 1)
        assert "404 from the webhook" in q.dead()[0].error


def test_current_job_gives_the_claims_attempt(pg_url: str, pg_queue_name: str) -> None:
    seen: list[JobContext | None] = []

    def flaky(payload: bytes) -> None:
        seen.append(current_job())
        if len(seen) == 1:
            raise RuntimeError("first run fails")

    with queue(pg_url, pg_queue_name, max_retries=1, retry_base_delay=0.01, handler=flaky) as q:
        q.enqueue(Job(id="c", payload=b"body"))
        assert q.join(timeout=WAIT)
        assert current_job() is None  # outside a handler
    first, second = seen
    assert first is not None
    assert second is not None
    assert (first.job.id, first.job.payload, first.attempt) == ("c", b"body", 1)
    assert (second.attempt, second.queue) == (2, q)


# -- dead letters -----------------------------------------------------------------------


def test_dead_jobs_are_listed_and_requeued_by_any_process(pg_url: str, pg_queue_name: str) -> None:
    healed = threading.Event()

    def handler(payload: bytes) -> None:
        if not healed.is_set():
            raise RuntimeError(f"cannot handle {payload!r}")

    with (
        queue(pg_url, pg_queue_name, max_retries=0, handler=handler) as worker,
        queue(pg_url, pg_queue_name, num_workers=0) as ops,
    ):
        worker.enqueue(Job(id="old", payload=b"one"))
        assert worker.join(timeout=WAIT)
        worker.enqueue(Job(id="new", payload=b"two", priority=Priority.HIGH))
        assert worker.join(timeout=WAIT)
        dead = ops.dead()
        assert [(d.job.id, d.job.payload, d.attempts) for d in dead] == [
            ("new", b"two", 1),
            ("old", b"one", 1),
        ]
        assert dead[0].job.priority is Priority.HIGH
        assert "b'two'" in dead[0].error
        assert dead[0].failed_at >= dead[1].failed_at
        assert [d.job.id for d in ops.dead(limit=1)] == ["new"]
        with pytest.raises(ValueError, match="limit"):
            ops.dead(-1)

        healed.set()
        assert ops.requeue("old") is True
        assert worker.requeue("old") is False  # live again: not dead
        assert ops.requeue("never-seen") is False
        assert worker.join(timeout=WAIT)
        assert ops.status("old") is Status.COMPLETED
        assert [d.job.id for d in ops.dead()] == ["new"]
        assert ops.metrics().failed == 2  # the total counts the failure that happened


# -- wait age and pause -------------------------------------------------------------------


def test_wait_age_of_queued_jobs_and_of_the_jobs_claimed(pg_url: str, pg_queue_name: str) -> None:
    gate = Gate()
    with queue(pg_url, pg_queue_name, num_workers=1, handlers={"gate": gate}) as q:
        q.enqueue(Job(id="held", handler="gate"))
        gate.wait_entered()
        q.enqueue(Job(id="waits", handler="gate"))
        eventually(lambda: q.metrics().by_priority[Priority.MEDIUM].oldest_wait > 0)
        assert q.metrics().by_priority[Priority.HIGH].oldest_wait == 0.0
        gate.open()
        assert q.join(timeout=WAIT)
        medium = q.metrics().by_priority[Priority.MEDIUM]
        assert medium.oldest_wait == 0.0  # none waits now
        assert medium.wait_p99 > 0.0  # "waits" waited for the held job at least
        assert medium.wait_p50 <= medium.wait_p99


def test_a_paused_priority_is_not_claimed_by_this_process(pg_url: str, pg_queue_name: str) -> None:
    ran: list[bytes] = []
    with queue(pg_url, pg_queue_name, num_workers=1, handler=ran.append) as q:
        q.pause(Priority.HIGH)
        assert q.metrics().paused == frozenset({Priority.HIGH})
        q.enqueue(Job(id="h", priority=Priority.HIGH, payload=b"h"))
        q.enqueue(Job(id="l", priority=Priority.LOW, payload=b"l"))
        eventually(lambda: q.status("l") is Status.COMPLETED)
        assert q.status("h") is Status.QUEUED
        q.resume()
        assert q.join(timeout=WAIT)
        assert (ran, q.metrics().paused) == ([b"l", b"h"], frozenset())


def test_pause_gives_back_the_jobs_claimed_ahead(pg_url: str, pg_queue_name: str) -> None:
    # A deep backlog of short jobs: the fetcher claims ahead of its workers
    # (ahead.py), and, the jobs taking a little while, holds them ready.
    # After pause(), no job starts here but those a worker had already
    # taken: the ones claimed ahead go back to the queue, QUEUED.
    jobs, workers = 1000, 2
    started: list[bytes] = []
    lock = threading.Lock()
    busy = threading.Event()  # never set: a short wait stands for the job's work

    def record(payload: bytes) -> None:
        with lock:
            started.append(payload)
        busy.wait(0.002)

    with queue(pg_url, pg_queue_name, num_workers=workers, queue_size=jobs, handler=record) as q:
        q.enqueue_many(Job(id=f"j{n}", payload=b"%d" % n) for n in range(jobs))
        eventually(lambda: len(started) >= 50)
        q.pause()
        at_pause = len(started)
        eventually(lambda: q.metrics().processing == 0)
        m = q.metrics()
        assert len(started) - at_pause <= workers  # taken by a worker before pause() returned
        assert (m.queued, m.completed) == (jobs - len(started), len(started))


# -- run_at, cancel ----------------------------------------------------------------------


def test_a_delayed_job_is_scheduled_until_due_then_runs(pg_url: str, pg_queue_name: str) -> None:
    ran: list[bytes] = []
    with (
        queue(pg_url, pg_queue_name, num_workers=0) as web,
        queue(pg_url, pg_queue_name, num_workers=1, handler=ran.append) as worker,
    ):
        web.enqueue(Job(id="later", payload=b"later", run_at=time.time() + 3600))
        web.enqueue_many([Job(id="soon", payload=b"soon", run_at=time.time() + 0.2)])
        web.enqueue(Job(id="past", payload=b"past", run_at=time.time() - 60))  # due: queued
        assert web.status("later") is Status.SCHEDULED
        eventually(lambda: web.status("soon") is Status.COMPLETED)
        assert web.status("past") is Status.COMPLETED
        assert worker.status("later") is Status.SCHEDULED  # and not queued
        assert not worker.join(timeout=0.05)  # a delayed job is unfinished
        with pytest.raises(DuplicateJobError, match="scheduled"):
            worker.enqueue(Job(id="later"))
        assert worker.cancel("later") is True
        assert worker.join(timeout=WAIT)
        assert web.status("later") is Status.CANCELLED
    assert sorted(ran) == [b"past", b"soon"]


def test_cancel_queued_and_retrying_jobs_but_not_a_running_one(
    pg_url: str, pg_queue_name: str
) -> None:
    gate = Gate()

    def fails(payload: bytes) -> None:
        raise RuntimeError("retry me")

    handlers = {"gate": gate, "fails": fails}
    with (
        queue(pg_url, pg_queue_name, num_workers=0) as web,
        queue(
            pg_url,
            pg_queue_name,
            num_workers=1,
            max_retries=1,
            retry_base_delay=60,
            handlers=handlers,
        ) as worker,
    ):
        web.enqueue(Job(id="retry", handler="fails"))
        eventually(lambda: web.status("retry") is Status.RETRYING)
        web.enqueue(Job(id="runs", handler="gate"))
        gate.wait_entered()
        web.enqueue(Job(id="waits", handler="gate"))
        assert web.cancel("runs") is False  # processing: it runs to its end
        assert web.cancel("waits") is True
        assert web.cancel("waits") is False  # finished now
        assert web.cancel("retry") is True
        assert web.cancel("never-seen") is False
        with pytest.raises(TypeError, match="job_id"):
            web.cancel(7)
        gate.open()
        assert worker.join(timeout=WAIT)
        statuses = [web.status(i) for i in ("retry", "runs", "waits")]
        assert statuses == [Status.CANCELLED, Status.COMPLETED, Status.CANCELLED]
        assert web.metrics().completed == 1
        web.enqueue(Job(id="waits", handler="gate"))  # a cancelled id is free again
        assert worker.join(timeout=WAIT)
        assert web.metrics().completed == 2


@pytest.mark.timeout(120)
def test_cancel_against_claims_in_another_process_runs_or_cancels_each_job_once(
    pg_url: str, pg_queue_name: str
) -> None:
    ids = [f"j{i}" for i in range(300)]
    ran: list[str] = []
    lock = threading.Lock()

    def record(payload: bytes) -> None:
        with lock:
            ran.append(payload.decode())

    with queue(pg_url, pg_queue_name, num_workers=0, queue_size=len(ids)) as canceller:
        canceller.enqueue_many(Job(id=i, payload=i.encode()) for i in ids)
        with queue(pg_url, pg_queue_name, num_workers=4, handler=record) as worker:
            # Both race through the same ids from the start: claims take the
            # oldest first, the canceller sweeps oldest first too.
            cancelled = [i for i in ids if canceller.cancel(i)]
            assert worker.join(timeout=WAIT)
    assert sorted(ran + cancelled) == sorted(ids)  # each job ran or was cancelled, once
    assert not set(ran) & set(cancelled)


# -- submit ------------------------------------------------------------------------------


def test_submit_resolves_by_the_row_wherever_the_job_runs(pg_url: str, pg_queue_name: str) -> None:
    def double(payload: bytes) -> bytes:
        if payload == b"bad":
            raise PermanentFailure("cannot double that")
        return payload * 2

    handlers = {"double": double}
    with (
        queue(pg_url, pg_queue_name, num_workers=1, handlers=handlers) as here,
        queue(pg_url, pg_queue_name, num_workers=0, handlers=handlers) as web,
    ):
        assert here.submit(Job(id="a", payload=b"ab", handler="double")).result(WAIT) == b"abab"
        with pytest.raises(PermanentFailure, match="cannot double"):
            here.submit(Job(id="b", payload=b"bad", handler="double")).result(WAIT)
        # web runs nothing: "here" runs them, so web's futures follow the rows.
        assert web.submit(Job(id="c", payload=b"x", handler="double")).result(WAIT) is None
        assert web.status("c") is Status.COMPLETED
        with pytest.raises(JobFailedElsewhere, match=r"'d'.*cannot double"):
            web.submit(Job(id="d", payload=b"bad", handler="double")).result(WAIT)
        later = web.submit(Job(id="e", handler="double", run_at=time.time() + 3600))
        assert later.cancel() is True
        assert later.cancelled()
        other = web.submit(Job(id="f", handler="double", run_at=time.time() + 3600))
        assert here.cancel("f") is True  # cancelled by another process: the row says so
        assert wait([other], timeout=WAIT).done == {other}
        assert other.cancelled()
        web.submit(Job(id="a2", handler="double", run_at=time.time() + 3600))
        with pytest.raises(DuplicateJobError):
            web.submit(Job(id="a2", handler="double"))
        left = web.submit(Job(id="g", handler="double", run_at=time.time() + 3600))
    with pytest.raises(QueueClosed, match="'g'"):
        left.result(WAIT)
    with pytest.raises(QueueClosed):
        web.submit(Job(id="h"))


def test_a_version_1_database_is_migrated_and_keeps_its_jobs(
    pg_url: str, pg_queue_name: str
) -> None:
    db = f"v1_{pg_queue_name}"
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{db}"')
    url = pg_url.replace("/postgres?", f"/{db}?", 1)
    assert url != pg_url
    with psycopg.connect(url, autocommit=True) as conn:  # as a version 1 release left it
        conn.execute(
            "CREATE TABLE jobqueue_schema (version integer PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute(schema._V1.encode())
        conn.execute("INSERT INTO jobqueue_schema (version) VALUES (1)")
        conn.execute(
            "INSERT INTO jobqueue_jobs (queue, id, priority, payload, created, state)"
            " VALUES (%s, 'old', 1, 'old', 0, 'queued')",
            (pg_queue_name,),
        )
    ran: list[bytes] = []
    with queue(url, pg_queue_name, num_workers=1, handler=ran.append) as q:
        assert q.join(timeout=WAIT)
        q.enqueue(Job(id="later", run_at=time.time() + 3600))
        assert q.status("later") is Status.SCHEDULED
        assert q.cancel("later") is True
    assert ran == [b"old"]
