"""Status by id, duplicate ids, and the bounded memory of finished jobs."""

from __future__ import annotations

import threading

import pytest

from tests.helpers import WAIT, Harness, Recorder


@pytest.mark.gap("status")
def test_status_follows_the_lifecycle(harness: Harness) -> None:
    S = harness.stage.Status
    gate = harness.gate()
    attempts = 0
    retried = threading.Event()

    def handler(payload: bytes) -> None:
        nonlocal attempts
        attempts += 1
        if payload == b"flaky" and attempts == 1:
            raise RuntimeError("first run fails")
        if payload == b"flaky":
            retried.set()
        gate(payload)

    q = harness.queue(num_workers=1, handler=handler, max_retries=1, retry_base_delay=0.3)
    q.enqueue(harness.job("flaky"))
    q.enqueue(harness.job("second"))
    gate.wait_entered()  # "second" runs while "flaky" waits out its backoff
    assert q.status("flaky") is S.RETRYING
    assert q.status("second") is S.PROCESSING
    gate.open()
    assert retried.wait(WAIT)
    assert q.join(timeout=WAIT)
    assert q.status("flaky") is S.COMPLETED
    assert q.status("second") is S.COMPLETED


@pytest.mark.gap("status")
def test_status_of_queued_and_failed_jobs(harness: Harness) -> None:
    S = harness.stage.Status
    gate = harness.gate()
    q = harness.queue(num_workers=1, handler=Recorder(fail=lambda p: True), max_retries=0)
    q.enqueue_with_handler(harness.job("held"), gate)
    gate.wait_entered()
    q.enqueue(harness.job("doomed"))
    assert q.status("doomed") is S.QUEUED
    gate.open()
    assert q.join(timeout=WAIT)
    assert q.status("doomed") is S.FAILED


@pytest.mark.gap("status")
def test_status_of_an_unknown_id_is_none(harness: Harness) -> None:
    q = harness.queue(handler=Recorder())
    assert q.status("never-seen") is None


@pytest.mark.gap("status")
def test_a_live_id_cannot_be_enqueued_twice(harness: Harness) -> None:
    gate = harness.gate()
    q = harness.queue(num_workers=1, handler=gate)
    q.enqueue(harness.job("once"))
    gate.wait_entered()
    with pytest.raises(harness.stage.DuplicateJobError, match=r"'once'.*processing") as info:
        q.enqueue(harness.job("once"))
    assert isinstance(info.value, ValueError)
    gate.open()
    assert q.join(timeout=WAIT)
    q.enqueue(harness.job("once"))  # finished: the id is free again
    assert q.join(timeout=WAIT)


@pytest.mark.gap("status")
def test_finished_statuses_are_remembered_up_to_status_history(harness: Harness) -> None:
    S = harness.stage.Status
    q = harness.queue(handler=Recorder(), status_history=3)
    for i in range(10):
        q.enqueue(harness.job(f"j{i}"))
        assert q.join(timeout=WAIT)
    assert [q.status(f"j{i}") for i in range(10)] == [None] * 7 + [S.COMPLETED] * 3
