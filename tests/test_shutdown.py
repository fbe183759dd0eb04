"""Graceful shutdown: close() waits for the jobs in flight, within shutdown_timeout."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.helpers import WAIT, Harness, Recorder


@pytest.mark.gap("graceful_shutdown")
def test_close_waits_for_in_flight_jobs(harness: Harness) -> None:
    gate = harness.gate()
    finished = threading.Event()

    def handler(payload: bytes) -> None:
        gate(payload)
        finished.set()

    q = harness.queue(num_workers=2, handler=handler)
    q.enqueue(harness.job("a"))
    q.enqueue(harness.job("b"))
    gate.wait_entered(2)
    # Open the gate a little later, from another thread; close() must not
    # return before the two handlers it lets go have finished.
    opener = threading.Timer(0.3, gate.open)
    opener.start()
    try:
        q.close()
        assert finished.is_set(), "close() returned with jobs in flight"
    finally:
        opener.join(WAIT)


@pytest.mark.gap("graceful_shutdown")
def test_close_gives_up_after_shutdown_timeout(harness: Harness) -> None:
    gate = harness.gate()
    q = harness.queue(num_workers=1, handler=gate, shutdown_timeout=0.2)
    q.enqueue(harness.job("stuck"))
    gate.wait_entered()
    started = time.monotonic()
    q.close()
    waited = time.monotonic() - started
    assert 0.2 * 0.95 <= waited < WAIT, f"close() waited {waited:.3f}s"


def test_close_from_inside_a_handler_does_not_deadlock(harness: Harness) -> None:
    done = threading.Event()
    q = None

    def closer(payload: bytes) -> None:
        assert q is not None
        q.close()
        done.set()

    q = harness.queue(num_workers=1, handler=closer, shutdown_timeout=1.0)
    q.enqueue(harness.job("closer"))
    assert done.wait(WAIT)


def test_a_handler_that_closes_a_durable_queue_has_its_outcome_logged(tmp_path: Path) -> None:
    from jobqueue.final import Config, Job, JobQueue, Status

    path = tmp_path / "jobs.log"
    closed = threading.Event()
    q: JobQueue | None = None

    def closer(payload: bytes) -> None:
        assert q is not None
        q.close()
        closed.set()

    q = JobQueue(Config(num_workers=2, handler=closer, persist_path=path))
    q.enqueue(Job(id="closer"))
    assert closed.wait(WAIT)
    q.close()  # idempotent; returns once the worker has written the outcome and gone
    reran = Recorder()
    with JobQueue(Config(handler=reran, persist_path=path)) as again:
        assert again.status("closer") is Status.COMPLETED
        assert again.join(WAIT)
    assert reran.runs == [], "the job ran again after a clean restart"
