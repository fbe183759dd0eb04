"""Priorities and starvation: the order in which waiting jobs run.

Each test holds the only worker with a gate, queues jobs behind it, then opens
the gate, so the order the worker picks them in is the order the queue chose.
"""

from __future__ import annotations

import pytest

from tests.helpers import WAIT, Harness, Recorder


def run_in_order(harness: Harness, jobs: list[tuple[str, str]], **config: object) -> list[bytes]:
    """Queue ``jobs`` (id, priority) behind a held worker; return the order they ran in."""
    gate, recorder = harness.gate(), Recorder()
    q = harness.queue(num_workers=1, handler=recorder, queue_size=1000, **config)
    q.enqueue_with_handler(harness.job("held", "HIGH"), gate)
    gate.wait_entered()
    for job_id, priority in jobs:
        q.enqueue(harness.job(job_id, priority))
    gate.open()
    assert q.join(timeout=WAIT)
    return recorder.runs


@pytest.mark.gap("priorities")
def test_high_runs_before_medium_before_low(harness: Harness) -> None:
    order = run_in_order(harness, [("low", "LOW"), ("medium", "MEDIUM"), ("high", "HIGH")])
    assert order == [b"high", b"medium", b"low"]


def test_equal_priorities_run_in_arrival_order(harness: Harness) -> None:
    jobs = [(f"m{i}", "MEDIUM") for i in range(20)]
    assert run_in_order(harness, jobs) == [f"m{i}".encode() for i in range(20)]


@pytest.mark.gap("no_starvation")
def test_low_runs_within_fairness_tokens_under_a_high_flood(harness: Harness) -> None:
    # The LOW job waits first; 100 HIGH jobs arrive after it.
    flood = [(f"h{i}", "HIGH") for i in range(100)]
    order = run_in_order(harness, [("low", "LOW"), *flood], fairness_tokens=10)
    assert order.index(b"low") <= 10, f"LOW ran after {order.index(b'low')} HIGH jobs"


@pytest.mark.gap("no_starvation")
def test_medium_and_low_both_run_under_a_high_flood(harness: Harness) -> None:
    flood = [(f"h{i}", "HIGH") for i in range(100)]
    order = run_in_order(harness, [("medium", "MEDIUM"), ("low", "LOW"), *flood])
    # The default is 10 tokens: each lower priority is owed a turn after 10
    # HIGH jobs; when both are owed at once, one of them waits one more job.
    assert order.index(b"medium") <= 11
    assert order.index(b"low") <= 12


@pytest.mark.gap("no_starvation")
def test_low_runs_under_a_flood_of_high_and_medium(harness: Harness) -> None:
    flood = [(f"{p[0]}{i}", p) for i in range(50) for p in ("HIGH", "MEDIUM")]
    order = run_in_order(harness, [("low", "LOW"), *flood], fairness_tokens=5)
    assert order.index(b"low") <= 6
