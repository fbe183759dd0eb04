"""Enqueue, run, join, close: the life every stage gets right."""

from __future__ import annotations

import pytest

from tests.helpers import WAIT, Harness, Recorder


def test_enqueued_job_runs_with_its_payload(harness: Harness) -> None:
    recorder = Recorder()
    q = harness.queue(handler=recorder)
    q.enqueue(harness.job("a1", payload=b"\x00hello\xff"))
    assert q.join(timeout=WAIT)
    assert recorder.runs == [b"\x00hello\xff"]


def test_enqueue_with_handler_overrides_the_default(harness: Harness) -> None:
    default, special = Recorder(), Recorder()
    q = harness.queue(handler=default)
    q.enqueue_with_handler(harness.job("a1"), special)
    q.enqueue(harness.job("a2"))
    assert q.join(timeout=WAIT)
    assert special.runs == [b"a1"]
    assert default.runs == [b"a2"]


def test_job_defaults(harness: Harness) -> None:
    job = harness.stage.Job(id="x")
    assert job.priority is harness.stage.Priority.MEDIUM
    assert job.payload == b""


def test_a_failing_handler_does_not_kill_its_worker(harness: Harness) -> None:
    recorder = Recorder(fail=lambda payload: payload == b"bad")
    q = harness.queue(num_workers=1, handler=recorder, max_retries=0)
    q.enqueue(harness.job("bad"))
    q.enqueue(harness.job("good"))
    assert q.join(timeout=WAIT)
    assert recorder.runs == [b"bad", b"good"]


def test_join_times_out_while_a_job_runs(harness: Harness) -> None:
    gate = harness.gate()
    q = harness.queue(handler=gate)
    q.enqueue(harness.job("held"))
    gate.wait_entered()
    assert q.join(timeout=0.01) is False
    gate.open()
    assert q.join(timeout=WAIT) is True


def test_join_on_an_idle_queue_returns_at_once(harness: Harness) -> None:
    q = harness.queue(handler=Recorder())
    assert q.join(timeout=0) is True


def test_context_manager_closes_the_queue(harness: Harness) -> None:
    recorder = Recorder()
    with harness.stage.JobQueue(harness.stage.Config(handler=recorder)) as q:
        q.enqueue(harness.job("a1"))
        assert q.join(timeout=WAIT)
    with pytest.raises(harness.stage.QueueClosed):
        q.enqueue(harness.job("a2"))


def test_enqueue_after_close_raises_queue_closed(harness: Harness) -> None:
    q = harness.queue(handler=Recorder())
    q.close()
    with pytest.raises(harness.stage.QueueClosed, match=r"'late'.*closed"):
        q.enqueue(harness.job("late"))
    with pytest.raises(harness.stage.JobQueueError):
        q.enqueue(harness.job("late"))


def test_close_is_idempotent(harness: Harness) -> None:
    q = harness.queue(handler=Recorder())
    q.close()
    q.close()


def test_close_starts_no_new_job(harness: Harness) -> None:
    gate, recorder = harness.gate(), Recorder()
    q = harness.queue(num_workers=1, handler=recorder)
    q.enqueue_with_handler(harness.job("held"), gate)
    gate.wait_entered()
    for i in range(5):
        q.enqueue(harness.job(f"waiting-{i}"))
    gate.open()
    q.close()
    assert recorder.runs == []
