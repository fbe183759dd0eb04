"""enqueue_many: a batch is accepted whole or not at all, in every stage."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from jobqueue.final import Job, PersistenceError
from jobqueue.final.storage import Storage, StoredJob
from tests.helpers import WAIT, Gate, Harness, Recorder
from tests.logutil import opened, recovered
from tests.test_log_faults import EIO, FaultyDisk


def held_queue(harness: Harness, size: int = 3) -> tuple[Any, Gate, Recorder]:
    """One worker held by a gate on job 'held', and room for ``size`` MEDIUM jobs."""
    gate, recorder = harness.gate(), Recorder()

    def handler(payload: bytes) -> None:
        if payload == b"held":
            gate(payload)
        recorder(payload)

    q = harness.queue(num_workers=1, queue_size=size, handler=handler)
    q.enqueue(harness.job("held"))
    gate.wait_entered()
    return q, gate, recorder


def test_every_job_of_a_batch_runs(harness: Harness) -> None:
    recorder = Recorder()
    q = harness.queue(handler=recorder)
    q.enqueue_many(harness.job(f"b{i}", payload=bytes([i])) for i in range(20))
    assert q.join(timeout=WAIT)
    assert sorted(recorder.runs) == [bytes([i]) for i in range(20)]


def test_an_empty_batch_accepts_nothing(harness: Harness) -> None:
    recorder = Recorder()
    q = harness.queue(handler=recorder)
    q.enqueue_many([])
    assert q.join(timeout=WAIT)
    assert recorder.runs == []


def test_a_bad_job_anywhere_in_the_batch_accepts_none(harness: Harness) -> None:
    q, gate, recorder = held_queue(harness)
    with pytest.raises(TypeError, match="job must be a Job"):
        q.enqueue_many([harness.job("first"), b"not a job"])
    gate.open()
    assert q.join(timeout=WAIT)
    assert recorder.runs == [b"held"]


def test_enqueue_many_after_close_raises_queue_closed(harness: Harness) -> None:
    q = harness.queue(handler=Recorder())
    q.close()
    with pytest.raises(harness.stage.QueueClosed, match=r"2 jobs.*closed"):
        q.enqueue_many([harness.job("a"), harness.job("b")])


@pytest.mark.gap("status")
def test_an_id_twice_in_the_batch_accepts_none(harness: Harness) -> None:
    q, gate, recorder = held_queue(harness)
    batch = [harness.job("x"), harness.job("y"), harness.job("x")]
    with pytest.raises(harness.stage.DuplicateJobError, match=r"'x'.*twice"):
        q.enqueue_many(batch)
    gate.open()
    assert q.join(timeout=WAIT)
    assert recorder.runs == [b"held"]


@pytest.mark.gap("status")
def test_an_id_still_live_accepts_none_of_the_batch(harness: Harness) -> None:
    q, gate, recorder = held_queue(harness)
    with pytest.raises(harness.stage.DuplicateJobError, match=r"'held'.*processing"):
        q.enqueue_many([harness.job("new"), harness.job("held")])
    # 'new' was given back: it can be enqueued now, and runs once.
    q.enqueue(harness.job("new"))
    gate.open()
    assert q.join(timeout=WAIT)
    assert recorder.runs == [b"held", b"new"]


@pytest.mark.gap("backpressure")
def test_a_priority_share_larger_than_queue_size_is_a_value_error(harness: Harness) -> None:
    q = harness.queue(queue_size=2, handler=Recorder())
    batch = [harness.job("h", "HIGH"), *(harness.job(f"l{i}", "LOW") for i in range(3))]
    with pytest.raises(ValueError, match=r"3 LOW jobs.*queue_size=2"):
        q.enqueue_many(batch)


@pytest.mark.gap("backpressure")
def test_a_batch_without_room_for_all_of_it_times_out_and_accepts_none(
    harness: Harness,
) -> None:
    q, gate, recorder = held_queue(harness, size=3)
    q.enqueue(harness.job("w1"))
    q.enqueue(harness.job("w2"))  # one MEDIUM slot left: room for one job, not two
    with pytest.raises(harness.stage.QueueFull, match="batch of 2 jobs"):
        q.enqueue_many([harness.job("a"), harness.job("b")], timeout=0.05)
    gate.open()
    assert q.join(timeout=WAIT)
    assert sorted(recorder.runs) == [b"held", b"w1", b"w2"]


@pytest.mark.gap("backpressure")
def test_a_blocked_batch_goes_in_whole_once_there_is_room(harness: Harness) -> None:
    q, gate, recorder = held_queue(harness, size=2)
    q.enqueue(harness.job("w1"))
    q.enqueue(harness.job("w2"))  # MEDIUM is full
    returned = threading.Event()

    def produce() -> None:
        q.enqueue_many([harness.job("a"), harness.job("b")], timeout=WAIT)
        returned.set()

    producer = threading.Thread(target=produce)
    producer.start()
    assert not returned.wait(0.1), "enqueue_many returned while the queue was full"
    gate.open()  # the worker drains w1 and w2, which frees both slots
    assert returned.wait(WAIT)
    producer.join(WAIT)
    assert q.join(timeout=WAIT)
    assert sorted(recorder.runs) == [b"a", b"b", b"held", b"w1", b"w2"]


@pytest.mark.gap("backpressure")
def test_close_wakes_a_blocked_batch_with_queue_closed(harness: Harness) -> None:
    q, _, _ = held_queue(harness, size=1)
    q.enqueue(harness.job("w1"))  # MEDIUM is full
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            q.enqueue_many([harness.job("a")], timeout=WAIT)
        except BaseException as exc:
            errors.append(exc)

    producer = threading.Thread(target=produce)
    producer.start()
    q.close()  # whether the producer waits already or not, it finds the queue closed
    producer.join(WAIT)
    assert not producer.is_alive()
    assert [type(e) for e in errors] == [harness.stage.QueueClosed]


@pytest.mark.gap("persistence")
def test_a_batch_survives_a_restart(harness: Harness, tmp_path: Path) -> None:
    path = str(tmp_path / "jobs.log")
    gate = harness.gate()
    first = harness.queue(persist_path=path, handler=gate, num_workers=1, shutdown_timeout=0.05)
    first.enqueue_many([harness.job("a"), harness.job("b", "HIGH")])
    gate.wait_entered()
    first.close()
    gate.open()
    recorder = Recorder()
    q = harness.queue(persist_path=path, handler=recorder)
    assert q.join(timeout=WAIT)
    # Both ran again: 'a' was queued, 'b' in flight when the log closed (at least once).
    assert sorted(recorder.runs) == [b"a", b"b"]


def test_the_log_writes_a_batch_with_one_fsync(tmp_path: Path) -> None:
    path, disk = tmp_path / "jobs.log", FaultyDisk()
    with opened(path, fsync="always", ops=disk) as (log, _):
        before = disk.fsyncs
        log.enqueued_many([Job(id=f"j{i}") for i in range(50)])
        assert disk.fsyncs == before + 1
    assert sorted(s.job.id for s in recovered(path)) == sorted(f"j{i}" for i in range(50))


def test_a_batch_the_disk_refuses_is_not_in_the_log(tmp_path: Path) -> None:
    path, disk = tmp_path / "jobs.log", FaultyDisk()
    with opened(path, ops=disk) as (log, _):
        log.enqueued(Job(id="before"))
        disk.short_writes = 1  # half the batch reaches the file, then the write fails
        disk.write_error = EIO
        with pytest.raises(PersistenceError):
            log.enqueued_many([Job(id=f"j{i}") for i in range(50)])
        disk.write_error = None
    assert [s.job.id for s in recovered(path)] == ["before"]


@pytest.mark.gap("priorities")
def test_a_mixed_batch_runs_high_first(harness: Harness) -> None:
    q, gate, recorder = held_queue(harness)
    q.enqueue_many([harness.job("low", "LOW"), harness.job("high", "HIGH")])
    gate.open()
    assert q.join(timeout=WAIT)
    assert recorder.runs == [b"held", b"high", b"low"]


def test_a_storage_without_a_batch_call_records_the_jobs_one_by_one() -> None:
    class OneByOne(Storage):  # no enqueued_many of its own: Storage's default
        def __init__(self) -> None:
            self.seen: list[str] = []

        def recover(self) -> list[StoredJob]:
            return []

        def enqueued(self, job: Job) -> None:
            self.seen.append(job.id)

        def started(self, job_id: str, attempt: int) -> None:
            pass

        def retrying(self, job_id: str, attempts: int, retry_at: float, error: str) -> None:
            pass

        def completed(self, job_id: str) -> None:
            pass

        def failed(self, job: Job, attempts: int, error: str, failed_at: float) -> None:
            pass

        def requeued(self, job: Job) -> None:
            pass

        def cancelled(self, job_id: str) -> None:
            pass

        def close(self) -> None:
            pass

    store = OneByOne()
    store.enqueued_many([Job(id="a"), Job(id="b")])
    assert store.seen == ["a", "b"]
