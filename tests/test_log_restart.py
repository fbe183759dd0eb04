"""A ``final`` queue restarting from its log: handlers by name, retry state, history."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from jobqueue.final import Config, Job, JobQueue, PersistenceError, Status
from tests.helpers import WAIT, Recorder
from tests.logutil import opened


def test_a_job_finds_its_named_handler_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "jobs.log"
    with opened(path) as (log, _):
        log.enqueued(Job(id="mail", payload=b"hi", handler="send"))
        log.enqueued(Job(id="plain", payload=b"yo"))
    send, default = Recorder(), Recorder()
    config = Config(persist_path=path, handler=default, handlers={"send": send})
    with JobQueue(config) as q:
        assert q.join(timeout=WAIT)
    assert send.runs == [b"hi"]
    assert default.runs == [b"yo"]


def test_a_job_whose_handler_is_gone_stops_the_queue_from_opening(tmp_path: Path) -> None:
    path = tmp_path / "jobs.log"
    with opened(path) as (log, _):
        log.enqueued(Job(id="mail", handler="send"))
    before = path.read_bytes()
    with pytest.raises(PersistenceError, match=r"cannot run.*'send'.*not in Config.handlers"):
        JobQueue(Config(persist_path=path, handler=Recorder()))
    assert path.read_bytes() == before  # never dropped in silence
    send = Recorder()
    with JobQueue(Config(persist_path=path, handlers={"send": send})) as q:  # lock released
        assert q.join(timeout=WAIT)
    assert send.runs == [b""]


def test_a_durable_queue_refuses_a_handler_it_could_not_find_again(tmp_path: Path) -> None:
    with JobQueue(Config(persist_path=tmp_path / "jobs.log", handler=Recorder())) as q:
        with pytest.raises(ValueError, match="handler: job 'x' would not survive a restart"):
            q.enqueue_with_handler(Job(id="x"), lambda payload: None)
        assert q.status("x") is None


def test_a_retry_that_fell_due_during_the_downtime_runs_at_once(tmp_path: Path) -> None:
    path = tmp_path / "jobs.log"
    with opened(path) as (log, _):
        log.enqueued(Job(id="late", payload=b"late"))
        log.retrying("late", 1, time.time() - 5, "RuntimeError('down')")
    recorder = Recorder()
    # A whole new backoff would take a minute: only what was left of it is waited.
    config = Config(persist_path=path, handler=recorder, retry_base_delay=60, max_retries=1)
    with JobQueue(config) as q:
        assert q.join(timeout=WAIT)
        assert q.status("late") is Status.COMPLETED
    assert recorder.runs == [b"late"]


def test_a_run_in_flight_at_a_crash_does_not_use_up_an_attempt(tmp_path: Path) -> None:
    path = tmp_path / "jobs.log"
    with opened(path) as (log, _):
        log.enqueued(Job(id="crashed", payload=b"crashed"))
        log.started("crashed", 1)  # writes nothing; and then the process died
    recorder = Recorder(fail=lambda payload: True)
    config = Config(persist_path=path, handler=recorder, max_retries=1, retry_base_delay=0.01)
    with JobQueue(config) as q:
        assert q.join(timeout=WAIT)
        assert q.status("crashed") is Status.FAILED
    assert recorder.runs == [b"crashed", b"crashed"]  # the first run and its one retry


def test_the_remembered_history_is_bounded_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "jobs.log"
    config = Config(persist_path=path, handler=Recorder(), status_history=3)
    with JobQueue(config) as q:
        for i in range(10):
            q.enqueue(Job(id=f"j{i}"))
        assert q.join(timeout=WAIT)
    with JobQueue(config) as q:
        assert [q.status(f"j{i}") for i in range(10)] == [None] * 7 + [Status.COMPLETED] * 3
