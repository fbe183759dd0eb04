"""Cancellation and delayed jobs survive restarts, compaction and ``kill -9`` (``final``).

The kill: ``jobqueue/lab/scenarios/crash_child.py api``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from jobqueue.final import Config, Job, JobQueue, PersistenceError, Status
from jobqueue.final.log.replay import read_log
from tests.child import STARTUP
from tests.helpers import WAIT, Gate, Recorder
from tests.logutil import opened
from tests.test_log_crash import Child

FAR = 3600.0


def test_a_cancelled_job_does_not_run_after_a_restart(tmp_path: Path) -> None:
    log, gate, recorder = tmp_path / "jobs.log", Gate(), Recorder()
    config = Config(persist_path=log, handler=recorder, handlers={"gate": gate}, num_workers=1)
    with JobQueue(config) as q:
        q.enqueue(Job(id="held", handler="gate"))
        gate.wait_entered()
        q.enqueue(Job(id="x", payload=b"x"))
        assert q.cancel("x") is True
        gate.open()
    with JobQueue(config) as q:
        assert q.status("x") is Status.CANCELLED
        assert q.cancel("x") is False
        assert q.join(timeout=WAIT)
    assert recorder.runs == []


def test_a_cancellation_the_log_cannot_record_leaves_the_job_queued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate, recorder = Gate(), Recorder()
    config = Config(
        persist_path=tmp_path / "jobs.log",
        handler=recorder,
        handlers={"gate": gate},
        num_workers=1,
    )
    with JobQueue(config) as q:
        q.enqueue(Job(id="held", handler="gate"))
        gate.wait_entered()
        future = q.submit(Job(id="x", payload=b"x"))

        def disk_full(job_id: str) -> None:
            raise PersistenceError(f"cannot write the cancellation of {job_id!r}: disk full")

        monkeypatch.setattr(q._storage, "cancelled", disk_full)
        with pytest.raises(PersistenceError, match="disk full"):
            q.cancel("x")
        assert q.status("x") is Status.QUEUED  # put back: it still runs
        gate.open()
        assert future.result(timeout=WAIT) is None
    assert recorder.runs == [b"x"]


def test_a_delayed_job_survives_a_restart_with_its_time_intact(tmp_path: Path) -> None:
    log, recorder = tmp_path / "jobs.log", Recorder()
    config = Config(persist_path=log, handler=recorder)
    run_at = time.time() + FAR
    with JobQueue(config) as q:
        q.enqueue(Job(id="later", payload=b"later", run_at=run_at))
    assert read_log(log).state.live["later"].job.run_at == run_at
    with JobQueue(config) as q:
        assert q.status("later") is Status.SCHEDULED
        assert q.join(timeout=0) is False  # still waiting for its time
        assert q.cancel("later") is True
    with JobQueue(config) as q:
        assert q.status("later") is Status.CANCELLED
        assert q.join(timeout=WAIT)
    assert recorder.runs == []


def test_a_delayed_job_whose_time_passed_while_down_runs_after_the_restart(
    tmp_path: Path,
) -> None:
    log, recorder = tmp_path / "jobs.log", Recorder()
    with opened(log) as (joblog, _):
        joblog.enqueued(Job(id="due", payload=b"due", run_at=time.time() - 5.0))
    with JobQueue(Config(persist_path=log, handler=recorder)) as q:
        assert q.join(timeout=WAIT)
        assert q.status("due") is Status.COMPLETED
    assert recorder.runs == [b"due"]


def test_compaction_keeps_cancellations_and_run_at(tmp_path: Path) -> None:
    log = tmp_path / "jobs.log"
    run_at = time.time() + FAR
    with opened(log, compact_min_bytes=1 << 30) as (joblog, _):
        joblog.enqueued(Job(id="gone"))
        joblog.cancelled("gone")
        joblog.enqueued(Job(id="later", run_at=run_at))
        for i in range(50):  # dead weight for the compaction to drop
            joblog.enqueued(Job(id=f"d{i}", payload=b"x" * 100))
            joblog.completed(f"d{i}")
        before = joblog.size
        joblog.compact()
        assert joblog.size < before
    state = read_log(log).state
    assert state.history["gone"].status is Status.CANCELLED
    assert state.live["later"].job.run_at == run_at
    with JobQueue(Config(persist_path=log, handler=lambda payload: None)) as q:
        assert q.status("gone") is Status.CANCELLED
        assert q.status("later") is Status.SCHEDULED
        assert q.cancel("later")


@pytest.mark.timeout(120)
def test_kill_9_keeps_cancellations_and_scheduled_jobs(tmp_path: Path) -> None:
    log = tmp_path / "jobs.log"
    child = Child(tmp_path, "api", log)
    try:
        seen = child.read_until(lambda line: line == "ready", STARTUP)
    finally:
        seen += child.kill()
    assert "cancelled gone" in seen
    (run_at,) = [float(line.split()[-1]) for line in seen if line.startswith("scheduled later")]
    recorder = Recorder()
    with JobQueue(Config(persist_path=log, handler=recorder, num_workers=1)) as q:
        assert q.status("gone") is Status.CANCELLED
        assert q.status("later") is Status.SCHEDULED
        assert recorder.wait_for(1)  # "held" was running at the kill: it runs again
        assert q.cancel("later") is True
        assert q.join(timeout=WAIT)
    assert recorder.runs == [b"held"]
    assert read_log(log).state.history["later"].status is Status.CANCELLED
    assert run_at > time.time()  # what the child scheduled was still ahead
