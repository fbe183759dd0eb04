"""Retry with exponential backoff."""

from __future__ import annotations

import threading

import pytest

from tests.helpers import WAIT, Harness, Recorder


def fails_times(n: int, only: bytes | None = None) -> Recorder:
    """A handler that fails its first ``n`` runs of each payload (or of ``only``)."""
    seen: dict[bytes, int] = {}
    lock = threading.Lock()

    def fail(payload: bytes) -> bool:
        if only is not None and payload != only:
            return False
        with lock:
            seen[payload] = seen.get(payload, 0) + 1
            return seen[payload] <= n

    return Recorder(fail=fail)


@pytest.mark.gap("retry")
def test_a_failed_job_is_retried_until_it_succeeds(harness: Harness) -> None:
    recorder = fails_times(2)
    q = harness.queue(handler=recorder, max_retries=3, retry_base_delay=0.01)
    q.enqueue(harness.job("flaky"))
    assert q.join(timeout=WAIT)
    assert recorder.runs == [b"flaky"] * 3


@pytest.mark.gap("retry")
def test_backoff_doubles_between_attempts(harness: Harness) -> None:
    base = 0.05
    recorder = fails_times(99)
    q = harness.queue(handler=recorder, max_retries=3, retry_base_delay=base)
    q.enqueue(harness.job("doomed"))
    assert q.join(timeout=WAIT)
    gaps = [b - a for a, b in zip(recorder.times, recorder.times[1:], strict=False)]
    expected = [base, 2 * base, 4 * base]
    assert len(gaps) == 3
    for gap, want in zip(gaps, expected, strict=True):
        # Never early; late by scheduling noise only (generous: the machine is shared).
        assert want * 0.95 <= gap <= want + 0.5, f"gaps {gaps}, expected {expected}"


@pytest.mark.gap("retry")
def test_backoff_is_capped_by_retry_max_delay(harness: Harness) -> None:
    recorder = fails_times(99)
    q = harness.queue(handler=recorder, max_retries=4, retry_base_delay=0.02, retry_max_delay=0.04)
    q.enqueue(harness.job("capped"))
    assert q.join(timeout=WAIT)
    gaps = [b - a for a, b in zip(recorder.times, recorder.times[1:], strict=False)]
    assert all(gap <= 0.04 + 0.5 for gap in gaps)
    assert gaps[-1] >= 0.04 * 0.95


@pytest.mark.gap("retry")
def test_retries_stop_after_max_retries(harness: Harness) -> None:
    recorder = fails_times(99)
    q = harness.queue(handler=recorder, max_retries=2, retry_base_delay=0.001)
    q.enqueue(harness.job("doomed"))
    assert q.join(timeout=WAIT)
    assert recorder.runs == [b"doomed"] * 3  # the first run and 2 retries


@pytest.mark.gap("retry")
def test_a_job_waiting_to_retry_does_not_hold_a_worker(harness: Harness) -> None:
    # One worker.  While "slow-retry" waits out a long backoff, "other" runs.
    recorder = fails_times(1, only=b"slow-retry")
    q = harness.queue(num_workers=1, handler=recorder, max_retries=1, retry_base_delay=0.5)
    q.enqueue(harness.job("slow-retry"))
    assert recorder.wait_for(1)
    q.enqueue(harness.job("other"))
    assert q.join(timeout=WAIT)
    assert recorder.runs == [b"slow-retry", b"other", b"slow-retry"]


def test_max_retries_zero_runs_once(harness: Harness) -> None:
    recorder = fails_times(99)
    q = harness.queue(handler=recorder, max_retries=0)
    q.enqueue(harness.job("once"))
    assert q.join(timeout=WAIT)
    assert recorder.runs == [b"once"]
