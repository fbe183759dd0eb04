"""What a handler knows and what a caller holds: current_job(), submit(), cancel(),
delayed jobs and PermanentFailure.  ``final`` has them; ``naive`` and
``improved`` say which stage does.  Restarts and kills: ``test_job_api_restart.py``.
"""

from __future__ import annotations

import concurrent.futures
import math
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import CancelledError, Future
from types import ModuleType

import pytest

from jobqueue import improved, naive
from jobqueue.final import (
    Config,
    Job,
    JobContext,
    JobQueue,
    PermanentFailure,
    QueueClosed,
    Status,
    current_job,
)
from jobqueue.vocabulary import MAX_CREATED
from tests.helpers import WAIT, Gate, Harness, Recorder

FAR = 3600.0  # "an hour ahead": a delayed job that never comes due in a test


def queue(made: list[JobQueue], **config: object) -> JobQueue:
    q = JobQueue(Config(**config))  # type: ignore[arg-type]
    made.append(q)
    return q


# -- the stages without it -------------------------------------------------------------


@pytest.mark.parametrize("stage", [naive, improved], ids=["naive", "improved"])
def test_naive_and_improved_name_the_stage_that_has_the_job_api(stage: ModuleType) -> None:
    ran: list[bytes] = []
    with stage.JobQueue(stage.Config(handler=ran.append)) as q:
        with pytest.raises(NotImplementedError, match=r"jobqueue\.final"):
            q.submit(stage.Job(id="a"))
        with pytest.raises(NotImplementedError, match=r"jobqueue\.final"):
            q.cancel("a")
        with pytest.raises(NotImplementedError, match=r"run_at.*jobqueue\.final"):
            q.enqueue(stage.Job(id="b", run_at=time.time()))
        with pytest.raises(NotImplementedError, match=r"run_at.*jobqueue\.final"):
            q.enqueue_many([stage.Job(id="c"), stage.Job(id="d", run_at=time.time())])
        assert q.join(timeout=WAIT)
    assert ran == []  # none of them was accepted, the batch's plain job neither


def test_permanent_failure_fails_the_job_at_once_in_every_stage(harness: Harness) -> None:
    def handler(payload: bytes) -> None:
        recorder(payload)
        raise harness.stage.PermanentFailure("404: no such hook")

    recorder = Recorder()
    q = harness.queue(handler=handler, max_retries=3, retry_base_delay=0.0)
    q.enqueue(harness.job("hook"))
    assert q.join(timeout=WAIT)
    assert recorder.runs == [b"hook"]  # no retry, though three were allowed


# -- current_job() ---------------------------------------------------------------------


def test_current_job_tells_the_handler_its_job_attempt_and_queue(queues: list[JobQueue]) -> None:
    seen: list[JobContext | None] = []

    def handler(payload: bytes) -> None:
        ctx = current_job()
        seen.append(ctx)
        if ctx is not None and ctx.attempt == 1:
            raise RuntimeError("the first run fails")

    q = queue(queues, handler=handler, max_retries=1, retry_base_delay=0.0)
    job = Job(id="mail-7", payload=b"to: a@b.c")
    q.enqueue(job)
    assert q.join(timeout=WAIT)
    assert [(c.job.id, c.job.payload, c.attempt) for c in seen if c] == [
        ("mail-7", b"to: a@b.c", 1),
        ("mail-7", b"to: a@b.c", 2),
    ]
    assert all(c is not None and c.queue is q for c in seen)
    assert current_job() is None  # outside a handler


def test_current_job_is_none_in_a_thread_a_handler_starts(queues: list[JobQueue]) -> None:
    inner: list[JobContext | None] = []

    def handler(payload: bytes) -> None:
        t = threading.Thread(target=lambda: inner.append(current_job()))
        t.start()
        t.join(WAIT)

    q = queue(queues, handler=handler)
    q.enqueue(Job(id="a"))
    assert q.join(timeout=WAIT)
    assert inner == [None]  # a new thread starts with an empty context


# -- submit() --------------------------------------------------------------------------


def test_submit_resolves_to_the_return_value_once_the_status_is_final(
    queues: list[JobQueue],
) -> None:
    q = queue(queues, handler=lambda payload: payload.upper())
    future = q.submit(Job(id="a", payload=b"hello"))
    assert future.result(timeout=WAIT) == b"HELLO"
    assert q.status("a") is Status.COMPLETED


def test_submit_resolves_to_the_last_error_once_retries_are_spent(
    queues: list[JobQueue],
) -> None:
    runs = 0

    def handler(payload: bytes) -> None:
        nonlocal runs
        runs += 1
        raise RuntimeError(f"run {runs}")

    q = queue(queues, handler=handler, max_retries=2, retry_base_delay=0.0)
    future = q.submit(Job(id="a"))
    with pytest.raises(RuntimeError, match="run 3"):
        future.result(timeout=WAIT)
    assert q.status("a") is Status.FAILED


def test_a_permanent_failure_resolves_the_future_at_once(queues: list[JobQueue]) -> None:
    recorder = Recorder()

    def handler(payload: bytes) -> None:
        recorder(payload)
        raise PermanentFailure("400: bad payload")

    q = queue(queues, handler=handler, max_retries=5, retry_base_delay=0.0)
    with pytest.raises(PermanentFailure, match="400"):
        q.submit(Job(id="a")).result(timeout=WAIT)
    assert q.status("a") is Status.FAILED
    assert recorder.runs == [b""]


def test_a_future_callback_may_call_the_queue(queues: list[JobQueue]) -> None:
    statuses: list[Status | None] = []
    called = threading.Event()
    gate = Gate()
    q = queue(queues, handler=gate)
    future = q.submit(Job(id="a"))

    def callback(f: Future[object]) -> None:
        statuses.append(q.status("a"))  # run by the worker, outside the mutex: no deadlock
        called.set()

    future.add_done_callback(callback)  # before the job ends: the worker runs it
    gate.open()
    assert called.wait(WAIT)
    assert statuses == [Status.COMPLETED]


def test_submit_refuses_what_enqueue_refuses(queues: list[JobQueue]) -> None:
    q = queue(queues, handler=lambda payload: None)
    with pytest.raises(TypeError, match="job must be a Job"):
        q.submit("a")  # type: ignore[arg-type]
    gate = Gate()
    q2 = queue(queues, handler=gate, num_workers=1)
    q2.submit(Job(id="a"))
    gate.wait_entered()
    with pytest.raises(ValueError, match="still processing"):
        q2.submit(Job(id="a"))
    gate.open()


def test_close_resolves_the_futures_of_jobs_it_leaves(queues: list[JobQueue]) -> None:
    gate = Gate()
    q = queue(queues, handler=gate, num_workers=1, shutdown_timeout=WAIT)
    running = q.submit(Job(id="running"))
    gate.wait_entered()
    left = q.submit(Job(id="left"))
    later = q.submit(Job(id="later", run_at=time.time() + FAR))
    closer = threading.Thread(target=q.close)
    closer.start()
    with pytest.raises(QueueClosed, match="'left'"):
        left.result(timeout=WAIT)
    with pytest.raises(QueueClosed, match="'later'"):
        later.result(timeout=WAIT)
    gate.open()
    closer.join(WAIT)
    assert running.result(timeout=WAIT) is None


# -- cancel() --------------------------------------------------------------------------


def test_cancel_a_queued_job(queues: list[JobQueue]) -> None:
    gate, recorder = Gate(), Recorder()
    q = queue(queues, handler=recorder, num_workers=1)
    q.enqueue_with_handler(Job(id="held"), gate)
    gate.wait_entered()
    q.enqueue(Job(id="x", payload=b"x"))
    assert q.cancel("x") is True
    assert q.status("x") is Status.CANCELLED
    assert q.cancel("x") is False  # finished
    assert q.cancel("held") is False  # running: not interrupted
    assert q.cancel("nobody") is False
    gate.open()
    assert q.join(timeout=WAIT)
    assert recorder.runs == []
    q.enqueue(Job(id="x", payload=b"again"))  # the id is free again
    assert q.join(timeout=WAIT)
    assert recorder.runs == [b"again"]


def test_future_cancel_cancels_the_job_only_before_it_runs(queues: list[JobQueue]) -> None:
    gate = Gate()
    q = queue(queues, handler=gate, num_workers=1)
    running = q.submit(Job(id="running"))
    gate.wait_entered()
    queued = q.submit(Job(id="queued"))
    assert queued.cancel() is True
    assert queued.cancelled()
    assert queued.cancel() is True  # already cancelled: as concurrent.futures says
    assert q.status("queued") is Status.CANCELLED
    with pytest.raises(CancelledError):
        queued.result(timeout=0)
    done, _ = concurrent.futures.wait([queued], timeout=WAIT)  # counted as done, at once
    assert done == {queued}
    assert running.cancel() is False
    gate.open()
    assert running.result(timeout=WAIT) is None
    assert running.cancel() is False  # finished


def test_cancel_a_job_waiting_to_retry(queues: list[JobQueue]) -> None:
    marker = threading.Event()

    def handler(payload: bytes) -> None:
        if payload == b"marker":
            marker.set()
            return
        raise RuntimeError("fails, retried in an hour")

    q = queue(queues, handler=handler, num_workers=1, retry_base_delay=FAR, retry_max_delay=FAR)
    future = q.submit(Job(id="flaky"))
    q.enqueue(Job(id="marker", payload=b"marker"))
    # One worker: it takes "marker" only after it has put "flaky" in the retry heap.
    assert marker.wait(WAIT)
    assert q.status("flaky") is Status.RETRYING
    assert q.cancel("flaky") is True
    assert future.cancelled()
    assert q.metrics().retrying == 0
    assert q.join(timeout=WAIT)  # nothing left to wait for
    assert q.status("flaky") is Status.CANCELLED


def test_cancel_refuses_an_id_that_is_no_str(queues: list[JobQueue]) -> None:
    q = queue(queues, handler=lambda payload: None)
    with pytest.raises(TypeError, match="job_id must be a str"):
        q.cancel(7)  # type: ignore[arg-type]


@pytest.fixture
def switching() -> Iterator[None]:
    """Thread switches every 10 µs, not 5 ms: the races below then really interleave."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(before)


def spin(n: int) -> None:
    """Burn a little CPU, more for a larger ``n``: it sweeps the cancel across the race."""
    for _ in range(n):
        pass


@pytest.mark.timeout(60)
@pytest.mark.usefixtures("switching")
def test_cancel_against_start_either_wins_never_both(queues: list[JobQueue]) -> None:
    recorder = Recorder()
    q = queue(queues, handler=recorder, num_workers=1)
    outcomes = {True: 0, False: 0}
    for i in range(200):
        gate = Gate()
        q.enqueue_with_handler(Job(id=f"hold{i}"), gate)
        gate.wait_entered()
        job_id = f"j{i}"
        future = q.submit(Job(id=job_id, payload=job_id.encode()))
        gate.open()  # the worker now takes the job, as we cancel it
        spin(i * 30)
        won = future.cancel() if i % 2 else q.cancel(job_id)
        outcomes[won] += 1
        _assert_cancelled_or_completed(q, future, job_id, won)
    assert q.join(timeout=WAIT)
    ran = {run.decode() for run in recorder.runs}
    assert len(recorder.runs) == len(ran) == outcomes[False]
    assert all(q.status(r) is Status.COMPLETED for r in ran)


@pytest.mark.timeout(60)
@pytest.mark.usefixtures("switching")
def test_cancel_against_retry_either_wins_never_both(queues: list[JobQueue]) -> None:
    runs: dict[str, int] = {}
    failed_once = threading.Event()

    def handler(payload: bytes) -> None:
        job_id = payload.decode()
        runs[job_id] = runs.get(job_id, 0) + 1
        if runs[job_id] == 1:
            failed_once.set()
            raise RuntimeError("first run fails; retried at once")

    q = queue(queues, handler=handler, num_workers=1, max_retries=1, retry_base_delay=0.0002)
    for i in range(100):
        job_id = f"r{i}"
        failed_once.clear()
        future = q.submit(Job(id=job_id, payload=job_id.encode()))
        assert failed_once.wait(WAIT)
        spin(i * 60)
        # Now it is finishing its first run, waiting to retry, queued, or running again.
        _assert_cancelled_or_completed(q, future, job_id, q.cancel(job_id))
        assert q.join(timeout=WAIT)
        assert runs[job_id] == (1 if future.cancelled() else 2)


# -- delayed jobs ----------------------------------------------------------------------


def test_a_delayed_job_is_scheduled_and_holds_no_worker(queues: list[JobQueue]) -> None:
    recorder = Recorder()
    q = queue(queues, handler=recorder, num_workers=1)
    q.enqueue(Job(id="later", payload=b"later", run_at=time.time() + FAR))
    assert q.status("later") is Status.SCHEDULED
    q.enqueue(Job(id="now", payload=b"now"))
    assert recorder.wait_for(1)  # the one worker is free for it
    assert recorder.runs == [b"now"]
    assert q.status("later") is Status.SCHEDULED
    assert q.metrics().retrying == 0  # a delayed job is no retry
    assert q.join(timeout=0) is False  # it is accepted, and not finished
    assert q.cancel("later") is True
    assert q.join(timeout=WAIT)


def test_a_job_scheduled_for_the_year_9999_does_not_kill_the_workers(
    queues: list[JobQueue],
) -> None:
    recorder = Recorder()
    q = queue(queues, handler=recorder, num_workers=1)
    q.enqueue(Job(id="far", run_at=MAX_CREATED))  # past threading.TIMEOUT_MAX from now
    q.enqueue(Job(id="a", payload=b"a"))
    assert recorder.wait_for(1)  # after it, the worker waits for "far": a wait too long
    q.enqueue(Job(id="b", payload=b"b"))  # for threading, unless cut to TIMEOUT_MAX
    assert recorder.wait_for(2)  # the worker lived
    assert q.cancel("far") is True
    assert q.join(timeout=WAIT)


def test_a_delayed_job_does_not_start_before_run_at(queues: list[JobQueue]) -> None:
    started: list[float] = []
    q = queue(queues, handler=lambda payload: started.append(time.time()))
    run_at = time.time() + 0.2
    future = q.submit(Job(id="soon", run_at=run_at))
    assert future.result(timeout=WAIT) is None
    assert started[0] >= run_at


def test_a_run_at_in_the_past_runs_at_once(queues: list[JobQueue]) -> None:
    q = queue(queues, handler=lambda payload: "ran")
    assert q.submit(Job(id="late", run_at=time.time() - FAR)).result(timeout=WAIT) == "ran"


@pytest.mark.parametrize(
    ("value", "error"),
    [(math.nan, ValueError), (math.inf, ValueError), (-1.0, ValueError), ("soon", TypeError)],
    ids=["nan", "inf", "negative", "str"],
)
def test_run_at_is_checked_and_named(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="run_at"):
        Job(id="a", run_at=value)  # type: ignore[arg-type]


def _assert_cancelled_or_completed(
    q: JobQueue, future: Future[object], job_id: str, cancelled: bool
) -> None:
    """A cancel that raced a run: it won (the job never ran) or lost (it completed)."""
    if cancelled:
        assert future.cancelled()
        assert q.status(job_id) is Status.CANCELLED
    else:
        assert future.result(timeout=WAIT) is None
        assert q.status(job_id) is Status.COMPLETED
