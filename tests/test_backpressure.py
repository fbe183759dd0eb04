"""Backpressure: a full queue makes enqueue wait, or fail after its timeout."""

from __future__ import annotations

import queue
import threading
from typing import Any

import pytest

from tests.helpers import WAIT, Gate, Harness, Recorder


def full_queue(harness: Harness, size: int = 2) -> tuple[Any, Gate]:
    """One held worker and ``size`` MEDIUM jobs waiting behind it: MEDIUM is full."""
    gate = harness.gate()
    q = harness.queue(num_workers=1, queue_size=size, handler=gate)
    q.enqueue(harness.job("held"))
    gate.wait_entered()
    for i in range(size):
        q.enqueue(harness.job(f"waiting-{i}"))
    return q, gate


@pytest.mark.gap("backpressure")
def test_enqueue_on_a_full_queue_times_out_with_queue_full(harness: Harness) -> None:
    q, _ = full_queue(harness)
    with pytest.raises(harness.stage.QueueFull, match=r"'overflow'.*MEDIUM.*full") as info:
        q.enqueue(harness.job("overflow"), timeout=0.05)
    assert isinstance(info.value, queue.Full)


@pytest.mark.gap("backpressure")
def test_blocked_enqueue_resumes_when_space_frees(harness: Harness) -> None:
    q, gate = full_queue(harness)
    returned = threading.Event()

    def produce() -> None:
        q.enqueue(harness.job("patient"), timeout=WAIT)
        returned.set()

    producer = threading.Thread(target=produce)
    producer.start()
    # Blocked: it cannot return while the queue stays full.
    assert not returned.wait(0.1), "enqueue returned while the queue was full"
    gate.open()  # the worker takes the next job, which frees a slot
    assert returned.wait(WAIT)
    producer.join(WAIT)
    assert q.join(timeout=WAIT)


def test_a_full_priority_does_not_block_another(harness: Harness) -> None:
    q, _ = full_queue(harness)
    q.enqueue(harness.job("urgent", "HIGH"), timeout=WAIT)  # HIGH has its own room


@pytest.mark.gap("backpressure")
def test_close_wakes_a_blocked_producer_with_queue_closed(harness: Harness) -> None:
    q, gate = full_queue(harness)
    errors: list[BaseException] = []
    blocked = threading.Thread(target=lambda: _capture(errors, q, harness.job("blocked")))
    blocked.start()
    blocked.join(0.1)
    assert blocked.is_alive(), "enqueue did not block on a full queue"
    closer = threading.Thread(target=q.close)
    closer.start()
    blocked.join(WAIT)
    gate.open()
    closer.join(WAIT)
    assert [type(e) for e in errors] == [harness.stage.QueueClosed]


def _capture(errors: list[BaseException], q: Any, job: Any) -> None:
    try:
        q.enqueue(job, timeout=WAIT)
    except Exception as exc:
        errors.append(exc)


def test_zero_timeout_on_a_queue_with_room_succeeds(harness: Harness) -> None:
    recorder = Recorder()
    q = harness.queue(handler=recorder)
    q.enqueue(harness.job("now"), timeout=0)
    assert q.join(timeout=WAIT)
    assert recorder.runs == [b"now"]
