"""Metrics: exact counters, a consistent snapshot, per priority in final."""

from __future__ import annotations

import threading

import pytest

from tests.helpers import WAIT, Harness, Recorder

PRODUCERS = 8
PER_PRODUCER = 500


@pytest.mark.gap("metrics")
def test_counters_are_exact_under_concurrent_producers(harness: Harness) -> None:
    # Every 10th job always fails; max_retries=1, so each of those runs twice.
    recorder = Recorder(fail=lambda payload: payload.endswith(b"0"))
    q = harness.queue(
        num_workers=4, queue_size=50, handler=recorder, max_retries=1, retry_base_delay=0.001
    )

    def produce(p: int) -> None:
        for i in range(PER_PRODUCER):
            q.enqueue(harness.job(f"p{p}-{i}"), timeout=WAIT)

    producers = [threading.Thread(target=produce, args=(p,)) for p in range(PRODUCERS)]
    for t in producers:
        t.start()
    for t in producers:
        t.join(WAIT)
    assert q.join(timeout=WAIT * 3)
    total = PRODUCERS * PER_PRODUCER
    failing = PRODUCERS * (PER_PRODUCER // 10)
    m = q.metrics()
    assert (m.queued, m.retrying, m.processing) == (0, 0, 0)
    assert m.completed == total - failing
    assert m.failed == failing
    assert m.retried == failing
    assert len(recorder.runs) == total + failing


@pytest.mark.gap("metrics")
def test_snapshot_counts_jobs_in_flight_and_waiting(harness: Harness) -> None:
    gate = harness.gate()
    q = harness.queue(num_workers=2, handler=gate)
    for i in range(5):
        q.enqueue(harness.job(f"j{i}"))
    gate.wait_entered(2)
    m = q.metrics()
    assert (m.queued, m.processing, m.completed, m.failed) == (3, 2, 0, 0)
    gate.open()
    assert q.join(timeout=WAIT)
    m = q.metrics()
    assert (m.queued, m.processing, m.completed) == (0, 0, 5)


@pytest.mark.gap("metrics")
def test_snapshot_is_frozen(harness: Harness) -> None:
    q = harness.queue(handler=Recorder())
    m = q.metrics()
    with pytest.raises(AttributeError):
        m.completed = 99


@pytest.mark.gap("metrics_per_priority")
def test_counters_per_priority(harness: Harness) -> None:
    recorder = Recorder(fail=lambda payload: payload == b"bad")
    q = harness.queue(handler=recorder, max_retries=0)
    for job_id, priority in [("h1", "HIGH"), ("h2", "HIGH"), ("bad", "LOW"), ("m1", "MEDIUM")]:
        q.enqueue(harness.job(job_id, priority))
    assert q.join(timeout=WAIT)
    by = q.metrics().by_priority
    P = harness.stage.Priority
    assert (by[P.HIGH].completed, by[P.MEDIUM].completed, by[P.LOW].completed) == (2, 1, 0)
    assert (by[P.HIGH].failed, by[P.MEDIUM].failed, by[P.LOW].failed) == (0, 0, 1)


@pytest.mark.gap("metrics_per_priority")
def test_worker_utilization(harness: Harness) -> None:
    gate = harness.gate()
    q = harness.queue(num_workers=2, handler=gate)
    assert q.metrics().utilization == 0.0
    q.enqueue(harness.job("busy"))
    gate.wait_entered()
    m = q.metrics()
    assert (m.workers, m.busy_workers) == (2, 1)
    assert 0.0 < m.utilization <= 0.5  # one of two workers busy, at most since start
    gate.open()
    assert q.join(timeout=WAIT)
    assert q.metrics().busy_workers == 0


def test_a_final_snapshot_prints_readably() -> None:
    from jobqueue import final

    with final.JobQueue(final.Config(num_workers=2, handler=lambda payload: None)) as q:
        for i in range(3):
            q.enqueue(final.Job(id=f"j{i}", priority=final.Priority.HIGH))
        assert q.join(10)
        q.pause(final.Priority.LOW)
        text = str(q.metrics())
    lines = text.splitlines()
    assert lines[0].startswith("jobs: 0 queued, 0 retrying, 0 processing; 3 completed, 0 failed")
    assert lines[1].startswith("workers: 0 of 2 busy;")
    assert lines[1].endswith("paused: LOW")
    assert [line.split()[0] for line in lines[2:]] == ["HIGH", "MEDIUM", "LOW"]
    assert "3 completed" in lines[2]
