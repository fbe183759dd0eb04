"""final on PostgreSQL, across processes, against a real server (never a mock).

Worker and producer processes are ``tests/pgchild.py`` children; every run
they start is appended to a file, so the parent counts runs across
processes.  Two ``JobQueue`` objects in this process stand in for two
processes where only the database is shared anyway (each has its own
connections and its own lease owner).  Leases are short here (about a
second) so that expiry is quick; waits poll the database on deadlines.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from jobqueue.final import (
    Config,
    DuplicateJobError,
    Job,
    JobQueue,
    Priority,
    QueueFull,
    Status,
)
from jobqueue.lab.pgcluster import PgCluster
from jobqueue.vocabulary import PersistenceError
from tests.child import STARTUP, ChildProcess
from tests.helpers import WAIT, Gate

LEASE = 1.0


class PgChild(ChildProcess):
    """A ``tests.pgchild`` process."""

    def __init__(self, tmp_path: Path, *args: object) -> None:
        super().__init__(tmp_path, "tests.pgchild", *args)

    def expect(self, wanted: str, timeout: float = STARTUP) -> None:
        """Read lines until ``wanted``; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while (line := self.readline(deadline - time.monotonic())) != wanted:
            assert line is not None, f"the child never said {wanted!r}; saw {seen[-3:]}"
            seen.append(line)

    def expect_prefix(self, prefix: str, timeout: float = STARTUP) -> str:
        """The next line that starts with ``prefix``; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.readline(deadline - time.monotonic())
            assert line is not None, f"the child never said {prefix!r}..."
            if line.startswith(prefix):
                return line

    def stop(self) -> None:
        """Close its stdin (a graceful close()), and wait for it to end."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(WAIT)
        self._cleanup()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(WAIT)
        self._cleanup()

    def _cleanup(self) -> None:
        self._close_pipes()


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Callable[..., PgChild]]:
    """Starts ``tests.pgchild`` processes; kills whichever are left at the end."""
    started: list[PgChild] = []

    def start(*args: object) -> PgChild:
        child = PgChild(tmp_path, *args)
        started.append(child)
        return child

    yield start
    for child in started:
        if child.proc.poll() is None:
            child.kill()


def runs(done: Path) -> list[tuple[int, str]]:
    """(pid, job id) of every run started, from the children's file."""
    if not done.exists():
        return []
    return [
        (int(pid), job_id)
        for pid, job_id in (line.split() for line in done.read_text().splitlines())
    ]


def eventually(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    """Poll ``predicate`` (a database or file read) until true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def queue(url: str, name: str, **config: Any) -> Any:
    config.setdefault("lease_timeout", LEASE)
    return JobQueue(Config(postgres_url=url, queue_name=name, **config))


# -- many processes, one queue ------------------------------------------------------


@pytest.mark.timeout(240)
def test_two_worker_processes_and_a_producer_share_5000_jobs(
    pg_url: str, pg_queue_name: str, tmp_path: Path, children: Callable[..., PgChild]
) -> None:
    done = tmp_path / "done.txt"
    workers = [children("work", pg_url, pg_queue_name, done, 4, 5.0) for _ in range(2)]
    for worker in workers:
        worker.expect("ready")
    producer = children("produce", pg_url, pg_queue_name, 5000, "job")
    producer.expect("produced", timeout=180)
    with queue(pg_url, pg_queue_name, num_workers=0) as watcher:
        assert watcher.join(timeout=120)
        m = watcher.metrics()
    for worker in workers:
        worker.stop()
    counts = Counter(job_id for _, job_id in runs(done))
    assert len(counts) == 5000  # none lost
    assert set(counts.values()) == {1}  # none run twice
    assert (m.completed, m.failed, m.queued, m.processing) == (5000, 0, 0, 0)
    by_pid = Counter(pid for pid, _ in runs(done))
    print(f"runs per worker process: {sorted(by_pid.values())}")


@pytest.mark.timeout(120)
def test_a_worker_killed_mid_job_has_its_job_run_elsewhere(
    pg_url: str, pg_queue_name: str, tmp_path: Path, children: Callable[..., PgChild]
) -> None:
    done = tmp_path / "done.txt"
    victim = children("work", pg_url, pg_queue_name, done, 1, LEASE, "hang")
    victim.expect("ready")
    with queue(pg_url, pg_queue_name, num_workers=0) as producer:
        producer.enqueue(Job(id="doomed-run", payload=b"doomed-run", handler="record"))
        victim.expect("start doomed-run")
        assert producer.status("doomed-run") is Status.PROCESSING
        victim.kill()  # kill -9, mid-job: its lease stops being renewed
        rescuer = children("work", pg_url, pg_queue_name, done, 2, LEASE)
        rescuer.expect("ready")
        assert producer.join(timeout=WAIT + 5 * LEASE)
        assert producer.status("doomed-run") is Status.COMPLETED
        m = producer.metrics()
        rescuer.stop()
    pids = [pid for pid, job_id in runs(done) if job_id == "doomed-run"]
    assert pids == [victim.proc.pid, rescuer.proc.pid]  # once in each: nothing lost
    assert (m.completed, m.retried) == (1, 1)  # the expired lease counted as a retry
    print("kills=1 jobs_lost=0 reruns=1")


@pytest.mark.timeout(120)
def test_an_expired_lease_uses_an_attempt(
    pg_url: str, pg_queue_name: str, tmp_path: Path, children: Callable[..., PgChild]
) -> None:
    # The rule: a claim is an attempt.  With max_retries=0 a job whose worker
    # died has had its one attempt: it fails, it does not run again (a job that
    # kills its process every time cannot loop forever).
    done = tmp_path / "done.txt"
    victim = children("work", pg_url, pg_queue_name, done, 1, LEASE, "hang")
    victim.expect("ready")
    recorded: list[bytes] = []
    with queue(pg_url, pg_queue_name, num_workers=0, max_retries=0) as producer:
        producer.enqueue(Job(id="poison", payload=b"poison", handler="record"))
        victim.expect("start poison")
        victim.kill()
        survivor = queue(
            pg_url,
            pg_queue_name,
            num_workers=1,
            max_retries=0,
            handlers={"record": recorded.append},
        )
        with survivor:
            assert survivor.join(timeout=WAIT + 5 * LEASE)
            assert survivor.status("poison") is Status.FAILED
            assert survivor.metrics().failed == 1
    assert recorded == []


@pytest.mark.timeout(180)
def test_kill_9_again_and_again_loses_no_job(
    pg_url: str, pg_queue_name: str, tmp_path: Path, children: Callable[..., PgChild]
) -> None:
    done = tmp_path / "done.txt"
    jobs, kills = 600, 3
    steady = children("work", pg_url, pg_queue_name, done, 1, LEASE, "slow")
    with queue(pg_url, pg_queue_name, num_workers=0, queue_size=jobs) as producer:
        for kill in range(kills):
            victim = children("work", pg_url, pg_queue_name, done, 2, LEASE, "slow")
            victim.expect("ready")
            # This round's jobs arrive while the victim works: it gets its share.
            for n in range(jobs // kills):
                job_id = f"r{kill}-{n}"
                producer.enqueue(Job(id=job_id, payload=job_id.encode(), handler="record"))
            for _ in range(5):  # mid-stream: it has claimed, run and completed jobs
                victim.expect_prefix("start ")
            victim.kill()  # kill -9 while its workers run jobs
        assert producer.join(timeout=WAIT + 10 * LEASE + jobs * 0.02)
        m = producer.metrics()
    steady.stop()
    counts = Counter(job_id for _, job_id in runs(done))
    assert len(counts) == jobs  # none lost
    assert m.completed == jobs
    reruns = sum(n - 1 for n in counts.values())
    # A job runs again only after its lease expired: the reaper counted that as
    # a retry.  (An expired claim that never started counts, but is no re-run.)
    assert reruns <= m.retried
    print(f"kills={kills} jobs_lost=0 reruns={reruns} expired_leases={m.retried}")


def processing_ids(url: str, queue_name: str) -> set[str]:
    """The ids of the queue's PROCESSING rows: claimed, by any process, dead or alive."""
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT id FROM jobqueue_jobs WHERE queue = %s AND state = 'processing'",
            (queue_name,),
        ).fetchall()
    return {str(row[0]) for row in rows}


@pytest.mark.timeout(180)
def test_jobs_claimed_ahead_by_a_killed_process_run_elsewhere(
    pg_url: str, pg_queue_name: str, tmp_path: Path, children: Callable[..., PgChild]
) -> None:
    # From a deep backlog of short jobs, a worker process claims jobs ahead of
    # its workers (ahead.py).  Killed, it never starts them: they must run
    # elsewhere once their leases expire, each exactly once.
    done = tmp_path / "done.txt"
    jobs = 300
    with queue(pg_url, pg_queue_name, num_workers=0, queue_size=jobs) as producer:
        producer.enqueue_many(
            Job(id=f"a{n}", payload=f"a{n}".encode(), handler="record") for n in range(jobs)
        )
        ahead: set[str] = set()
        for _ in range(5):  # a kill may fall where nothing is claimed ahead: again, then
            victim = children("work", pg_url, pg_queue_name, done, 1, LEASE, "slow")
            victim.expect("ready")
            for _ in range(20):  # its runs teach it that the jobs are short
                victim.expect_prefix("start ")
            for _ in range(20):
                # Look with the victim frozen: right after a start, its next claim
                # ahead is often still in flight, and a kill timed by the start line
                # would keep landing in that window.
                victim.proc.send_signal(signal.SIGSTOP)
                started = {job_id for _, job_id in runs(done)}  # by it or earlier victims
                ahead = processing_ids(pg_url, pg_queue_name) - started
                if ahead:
                    break
                victim.proc.send_signal(signal.SIGCONT)
                victim.expect_prefix("start ")
            victim.kill()
            if ahead:
                break
        assert ahead, "no kill found a job claimed ahead"
        assert all(producer.status(job_id) is Status.PROCESSING for job_id in ahead)
        rescuer = children("work", pg_url, pg_queue_name, done, 2, LEASE)
        rescuer.expect("ready")
        assert producer.join(timeout=WAIT + 10 * LEASE)
        assert all(producer.status(job_id) is Status.COMPLETED for job_id in ahead)
        m = producer.metrics()
        rescuer.stop()
    counts = Counter(job_id for _, job_id in runs(done))
    assert len(counts) == jobs  # none lost
    assert m.completed == jobs
    assert all(counts[job_id] == 1 for job_id in ahead)  # never started before: once
    print(f"claimed ahead when killed: {len(ahead)}; all ran once, elsewhere")


@pytest.mark.timeout(120)
def test_jobs_taken_back_from_a_dead_process_count_against_the_bound(
    pg_url: str, pg_queue_name: str, tmp_path: Path, children: Callable[..., PgChild]
) -> None:
    # The bound is checked against a counter (schema.py); a job that comes back
    # to QUEUED (here: reaped from a dead process) must count in it, or an
    # enqueue would pass the bound without counting.
    done = tmp_path / "done.txt"
    victim = children("work", pg_url, pg_queue_name, done, 2, LEASE, "hang")
    victim.expect("ready")
    with queue(pg_url, pg_queue_name, num_workers=0, queue_size=2) as producer:
        for job_id in ("a", "b"):
            producer.enqueue(Job(id=job_id, payload=job_id.encode(), handler="record"))
        victim.expect_prefix("start ")
        victim.expect_prefix("start ")
        victim.kill()
        producer.enqueue(Job(id="c", payload=b"c", handler="record"))  # none queued: room
        # A process that reaps but claims nothing: paused.
        with queue(pg_url, pg_queue_name, num_workers=1, handlers={"record": print}) as reaper:
            reaper.pause()
            eventually(lambda: producer.metrics().queued == 3, timeout=WAIT + 5 * LEASE)
            with pytest.raises(QueueFull):
                producer.enqueue(Job(id="d", handler="record"), timeout=0.05)
            assert producer.status("d") is None


@pytest.mark.timeout(60)
def test_a_job_longer_than_its_lease_runs_once(pg_url: str, pg_queue_name: str) -> None:
    lease = 1.0  # renewed every third of it: a stall of 2/3 s on a loaded machine is still fine
    started: list[str] = []
    long_enough = threading.Event()

    def long_job(payload: bytes) -> None:
        started.append("busy")
        long_enough.wait(2.5 * lease)  # the job outlives its first lease, twice over

    handlers = {"long": long_job}
    with (
        queue(pg_url, pg_queue_name, num_workers=1, lease_timeout=lease, handlers=handlers) as a,
        queue(pg_url, pg_queue_name, num_workers=2, lease_timeout=lease, handlers=handlers) as b,
    ):
        a.enqueue(Job(id="long", handler="long"))
        assert a.join(timeout=WAIT)
        assert b.status("long") is Status.COMPLETED
        assert (b.metrics().retried, len(started)) == (0, 1)


@pytest.mark.timeout(60)
def test_the_retry_budget_holds_across_processes(pg_url: str, pg_queue_name: str) -> None:
    runs_by_queue: list[Counter[bytes]] = [Counter(), Counter()]

    def failing(which: int) -> Callable[[bytes], None]:
        def handler(payload: bytes) -> None:
            runs_by_queue[which][payload] += 1
            raise RuntimeError("always fails")

        return handler

    common: dict[str, Any] = {"num_workers": 2, "max_retries": 3, "retry_base_delay": 0.01}
    with (
        queue(pg_url, pg_queue_name, handlers={"fail": failing(0)}, **common) as a,
        queue(pg_url, pg_queue_name, handlers={"fail": failing(1)}, **common) as b,
    ):
        for i in range(20):
            a.enqueue(Job(id=f"f{i}", payload=f"f{i}".encode(), handler="fail"))
        assert b.join(timeout=WAIT)
        m = b.metrics()
    total = runs_by_queue[0] + runs_by_queue[1]
    assert set(total.values()) == {4}  # 1 + max_retries, in all processes together
    assert (m.failed, m.retried, m.completed) == (20, 60, 0)


@pytest.mark.timeout(60)
def test_duplicates_and_status_are_shared(pg_url: str, pg_queue_name: str) -> None:
    gate = Gate()
    with (
        queue(pg_url, pg_queue_name, num_workers=0) as web,
        queue(pg_url, pg_queue_name, num_workers=1, handlers={"gate": gate}) as worker,
    ):
        web.enqueue(Job(id="once", handler="gate"))
        with pytest.raises(DuplicateJobError, match=r"'once'"):
            worker.enqueue(Job(id="once", handler="gate"))
        gate.wait_entered()
        assert web.status("once") is Status.PROCESSING
        with pytest.raises(DuplicateJobError, match=r"'once'.*processing"):
            web.enqueue(Job(id="once", handler="gate"))
        gate.open()
        assert web.join(timeout=WAIT)
        assert worker.status("once") is Status.COMPLETED
        web.enqueue(Job(id="once", handler="gate"))  # finished: the id is free again
        assert web.join(timeout=WAIT)
        assert web.metrics().completed == 2
        assert web.status("never-seen") is None


@pytest.mark.timeout(60)
def test_pruned_history_keeps_the_totals(pg_url: str, pg_queue_name: str) -> None:
    import psycopg

    def rows() -> int:
        with psycopg.connect(pg_url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM jobqueue_jobs WHERE queue = %s", (pg_queue_name,)
            ).fetchone()
            return int(row[0]) if row else -1

    fail = {"ok": lambda payload: None, "bad": _raise}
    with queue(pg_url, pg_queue_name, status_history=2, max_retries=0, handlers=fail) as q:
        for i in range(8):
            q.enqueue(Job(id=f"ok{i}", handler="ok"))
        q.enqueue(Job(id="bad", handler="bad"))
        assert q.join(timeout=WAIT)
        q.enqueue(Job(id="last", handler="ok"))
        assert q.join(timeout=WAIT)
        eventually(lambda: rows() == 2)  # maintenance pruned the rest
        m = q.metrics()
        assert (m.completed, m.failed) == (9, 1)
        assert q.status("last") is Status.COMPLETED
        assert q.status("ok0") is None


def _raise(payload: bytes) -> None:
    raise RuntimeError("fails")


@pytest.mark.timeout(60)
def test_a_producer_only_process_runs_nothing(pg_url: str, pg_queue_name: str) -> None:
    with queue(pg_url, pg_queue_name, num_workers=0) as web:
        web.enqueue(Job(id="later", handler="not-known-here"))
        assert not web.join(timeout=0.2)
        assert web.status("later") is Status.QUEUED
    ran: list[bytes] = []
    with queue(pg_url, pg_queue_name, handlers={"not-known-here": ran.append}) as worker:
        assert worker.join(timeout=WAIT)  # queued jobs stayed in the database
    assert ran == [b""]


@pytest.mark.timeout(120)
def test_several_processes_create_the_schema_at_once(
    pg_cluster: PgCluster, tmp_path: Path, children: Callable[..., PgChild]
) -> None:
    import psycopg

    dbname = f"schema_race_{os.getpid()}"
    with psycopg.connect(pg_cluster.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {dbname}")
    url = pg_cluster.url_for(dbname)
    openers = [children("open", url, f"q{i % 2}") for i in range(4)]
    for opener in openers:
        opener.expect("opened")
        opener.proc.wait(WAIT)
    assert [opener.proc.returncode for opener in openers] == [0, 0, 0, 0]
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT version FROM jobqueue_schema").fetchall() == [(1,), (2,), (3,)]
        assert conn.execute("SELECT count(*) FROM jobqueue_counts").fetchone() == (6,)


# -- the server crashes ---------------------------------------------------------------


@pytest.mark.timeout(180)
def test_a_server_crash_keeps_every_acknowledged_enqueue(pg_cluster: PgCluster) -> None:
    cluster = PgCluster()  # its own: crashing the shared one would disturb nothing, but be rude
    ran: list[bytes] = []
    lock = threading.Lock()

    def record(payload: bytes) -> None:
        with lock:
            ran.append(payload)

    acked: list[str] = []
    refused: list[BaseException] = []
    with cluster, queue(cluster.url, "crash", num_workers=2, handlers={"r": record}) as q:
        stop = threading.Event()

        def produce() -> None:
            for n in range(100_000):
                if stop.is_set():
                    return
                try:
                    q.enqueue(Job(id=f"c{n}", payload=f"c{n}".encode(), handler="r"))
                except PersistenceError as exc:
                    refused.append(exc)  # the server is down: refused, not acknowledged
                    continue
                with lock:
                    acked.append(f"c{n}")

        producer = threading.Thread(target=produce)
        producer.start()
        eventually(lambda: len(acked) >= 200)
        cluster.crash()  # pg_ctl stop -m immediate: no checkpoint, recovery replays the WAL
        eventually(lambda: len(refused) >= 1)
        cluster.start()
        before = len(acked)
        eventually(lambda: len(acked) >= before + 50)  # the queue recovers by itself
        stop.set()
        producer.join(WAIT)
        assert q.join(timeout=WAIT + 10 * LEASE)
        with lock:
            missing = set(acked) - {p.decode() for p in ran}
        assert not missing, f"{len(missing)} acknowledged enqueues lost, e.g. {sorted(missing)[:3]}"
        assert all(
            q.status(job_id) is Status.COMPLETED for job_id in acked[:: max(1, len(acked) // 50)]
        )


# -- configuration ---------------------------------------------------------------------


def test_postgres_url_and_persist_path_are_exclusive() -> None:
    with pytest.raises(ValueError, match=r"persist_path and postgres_url"):
        Config(postgres_url="postgresql:///x", persist_path="jobs.log")


def test_num_workers_zero_needs_postgres_url() -> None:
    with pytest.raises(ValueError, match=r"num_workers.*postgres_url"):
        Config(num_workers=0)
    assert Config(num_workers=0, postgres_url="postgresql:///x").num_workers == 0


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("lease_timeout", 0, ValueError),
        ("lease_timeout", "30", TypeError),
        ("queue_name", "", ValueError),
        ("queue_name", 3, TypeError),
        ("postgres_url", "", ValueError),
        ("postgres_url", b"postgresql:///x", TypeError),
    ],
)
def test_bad_postgres_settings_name_the_field(field: str, value: object, error: type) -> None:
    with pytest.raises(error, match=field):
        Config(**{"postgres_url": "postgresql:///x", field: value})  # type: ignore[arg-type]


def test_a_shared_queue_refuses_an_unnamed_handler(pg_url: str, pg_queue_name: str) -> None:
    with (
        queue(pg_url, pg_queue_name, num_workers=1, handlers={"r": print}) as q,
        pytest.raises(ValueError, match=r"handler.*Config.handlers"),
    ):
        q.enqueue_with_handler(Job(id="x"), lambda payload: None)


def test_an_unreachable_server_is_a_persistence_error(tmp_path: Path) -> None:
    url = f"postgresql://postgres@/postgres?host={tmp_path}&port=1"
    with pytest.raises(PersistenceError, match="unreachable"):
        JobQueue(Config(postgres_url=url))


def test_the_priority_enum_is_stored_as_is(pg_url: str, pg_queue_name: str) -> None:
    got: list[bytes] = []
    with queue(pg_url, pg_queue_name, num_workers=1, handlers={"r": got.append}) as q:
        q.enqueue(Job(id="low", priority=Priority.LOW, payload=b"\x00\xff", handler="r"))
        assert q.join(timeout=WAIT)
        assert q.metrics().by_priority[Priority.LOW].completed == 1
    assert got == [b"\x00\xff"]
