"""Operating ``final``: wait age, pause and resume, structured logs, Prometheus, signals."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobqueue.final import Config, Job, JobQueue, Priority, QueueFull, Status
from jobqueue.final.log.replay import read_log
from jobqueue.final.waits import WaitTimes
from jobqueue.lab.cli import main
from tests.helpers import WAIT, Gate, Recorder

HIGH, MEDIUM, LOW = Priority.HIGH, Priority.MEDIUM, Priority.LOW


def make(queues: list[JobQueue], **config: object) -> JobQueue:
    q = JobQueue(Config(**config))  # type: ignore[arg-type]
    queues.append(q)
    return q


def job(job_id: str, priority: Priority = MEDIUM, **fields: object) -> Job:
    return Job(id=job_id, priority=priority, payload=job_id.encode(), **fields)  # type: ignore[arg-type]


# -- wait age --------------------------------------------------------------------------


def test_oldest_wait_is_the_age_of_the_oldest_queued_job(queues: list[JobQueue]) -> None:
    q = make(queues, handler=Recorder())
    q.pause()
    q.enqueue(job("a", LOW))
    q.enqueue(job("b", LOW))
    first = q.metrics().by_priority[LOW].oldest_wait
    second = q.metrics().by_priority[LOW].oldest_wait
    assert 0.0 < first <= second  # it grows while the job waits
    assert q.metrics().by_priority[HIGH].oldest_wait == 0.0  # none waits
    q.resume()
    assert q.join(timeout=WAIT)
    assert q.metrics().by_priority[LOW].oldest_wait == 0.0


def test_wait_percentiles_cover_the_jobs_started(queues: list[JobQueue]) -> None:
    q = make(queues, handler=Recorder())
    assert q.metrics().by_priority[HIGH].wait_p50 == 0.0  # before any job
    for n in range(50):
        q.enqueue(job(f"j{n}", HIGH))
    assert q.join(timeout=WAIT)
    high = q.metrics().by_priority[HIGH]
    assert 0.0 < high.wait_p50 <= high.wait_p99
    assert q.metrics().by_priority[LOW].wait_p99 == 0.0


def test_wait_percentiles_of_known_waits() -> None:
    waits = WaitTimes()
    waits.recent[LOW].extend(float(n) for n in range(1, 101))
    assert waits.percentiles(LOW) == (50.0, 99.0)
    waits.recent[LOW].extend([0.0] * 5000)  # a bounded window: only the recent count
    assert waits.percentiles(LOW) == (0.0, 0.0)


def test_a_restarted_queue_counts_the_wait_from_when_the_job_was_created(
    queues: list[JobQueue], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "jobs.log")
    q = make(queues, handler=Recorder(), persist_path=path)
    q.pause()
    q.enqueue(job("old", LOW, created=time.time() - 3600))
    q.close()
    assert main(["inspect", path]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "oldest wait │ - │ - │ 3600s" in out or "oldest wait │ - │ - │ 3601s" in out
    again = make(queues, handler=Recorder(), persist_path=path)  # not paused: pause is not kept
    assert again.join(timeout=WAIT)
    assert again.metrics().by_priority[LOW].wait_p50 >= 3600


# -- pause and resume -------------------------------------------------------------------


def test_a_paused_priority_starts_no_job_while_others_run(queues: list[JobQueue]) -> None:
    recorder = Recorder()
    q = make(queues, handler=recorder, num_workers=1)
    q.pause(LOW)
    q.enqueue(job("low", LOW))
    q.enqueue(job("high", HIGH))
    assert recorder.wait_for(1)
    assert recorder.runs == [b"high"]
    assert q.status("low") is Status.QUEUED
    m = q.metrics()
    assert m.paused == frozenset({LOW})
    assert m.by_priority[LOW].queued == 1
    q.resume(LOW)
    assert q.join(timeout=WAIT)
    assert recorder.runs == [b"high", b"low"]
    assert q.metrics().paused == frozenset()


def test_pausing_everything_still_accepts_enqueues_within_the_bound(
    queues: list[JobQueue],
) -> None:
    q = make(queues, handler=Recorder(), queue_size=2)
    q.pause()
    assert q.metrics().paused == frozenset(Priority)
    q.enqueue(job("a"))
    q.enqueue(job("b"))
    with pytest.raises(QueueFull):
        q.enqueue(job("c"), timeout=0)
    q.resume()
    assert q.join(timeout=WAIT)


def test_fairness_applies_to_what_is_not_paused(queues: list[JobQueue]) -> None:
    gate, recorder = Gate(), Recorder()
    q = make(queues, handlers={"gate": gate}, handler=recorder, num_workers=1, fairness_tokens=2)
    q.enqueue(Job(id="hold", handler="gate"))
    gate.wait_entered()
    q.pause(LOW)
    for n in range(6):
        q.enqueue(job(f"h{n}", HIGH))
    q.enqueue(job("m", MEDIUM))
    q.enqueue(job("l", LOW))
    gate.open()
    assert recorder.wait_for(7)
    # MEDIUM gets its turn after 2 HIGH jobs; LOW, paused, earns none.
    assert recorder.runs[:3] == [b"h0", b"h1", b"m"]
    assert b"l" not in recorder.runs
    q.resume(LOW)
    assert q.join(timeout=WAIT)
    assert recorder.runs[-1] == b"l"


def test_pause_checks_its_argument(queues: list[JobQueue]) -> None:
    q = make(queues, handler=Recorder())
    with pytest.raises(TypeError, match="priority must be a Priority"):
        q.pause("LOW")  # type: ignore[arg-type]


# -- structured logs ---------------------------------------------------------------------


def test_log_records_about_a_job_carry_its_fields(
    queues: list[JobQueue], caplog: pytest.LogCaptureFixture
) -> None:
    def boom(payload: bytes) -> None:
        raise RuntimeError("boom")

    q = make(queues, handler=boom, max_retries=1, retry_base_delay=0.001)
    with caplog.at_level(logging.INFO, logger="jobqueue.final"):
        q.enqueue(job("a", HIGH))
        assert q.join(timeout=WAIT)
    about = [r for r in caplog.records if getattr(r, "job_id", None) == "a"]
    assert [(r.levelname, r.attempt) for r in about] == [("INFO", 1), ("ERROR", 2)]  # type: ignore[attr-defined]
    for record in about:
        assert record.priority == "HIGH"  # type: ignore[attr-defined]
        assert record.duration >= 0.0  # type: ignore[attr-defined]


def test_a_base_exception_log_carries_the_job_fields(
    queues: list[JobQueue], caplog: pytest.LogCaptureFixture
) -> None:
    def leave(payload: bytes) -> None:
        raise SystemExit(3)

    q = make(queues, handler=leave, max_retries=0)
    with caplog.at_level(logging.INFO, logger="jobqueue.final"):
        q.enqueue(job("x"))
        assert q.join(timeout=WAIT)
    about = [r for r in caplog.records if getattr(r, "job_id", None) == "x"]
    assert len(about) == 2  # "raised SystemExit" and "failed for good"
    assert all(r.attempt == 1 and r.priority == "MEDIUM" for r in about)  # type: ignore[attr-defined]


# -- Prometheus --------------------------------------------------------------------------


def test_a_scrape_shows_the_metrics_by_priority(queues: list[JobQueue]) -> None:
    prometheus_client = pytest.importorskip(
        "prometheus_client", reason="the prometheus extra is not installed"
    )
    from jobqueue.final.prometheus import JobQueueCollector

    def maybe(payload: bytes) -> None:
        if payload.startswith(b"bad"):
            raise ValueError(payload)

    q = make(queues, handler=maybe, max_retries=0)
    registry = prometheus_client.CollectorRegistry()
    registry.register(JobQueueCollector(q, name="mail"))
    q.enqueue(job("ok", HIGH))
    q.enqueue(job("bad", LOW))
    assert q.join(timeout=WAIT)
    q.pause(LOW)
    q.enqueue(job("waits", LOW))
    lines = prometheus_client.generate_latest(registry).decode().splitlines()
    assert 'jobqueue_jobs_completed_total{priority="HIGH",queue="mail"} 1.0' in lines
    assert 'jobqueue_jobs_failed_total{priority="LOW",queue="mail"} 1.0' in lines
    assert 'jobqueue_jobs_queued{priority="LOW",queue="mail"} 1.0' in lines
    assert 'jobqueue_paused{priority="LOW",queue="mail"} 1.0' in lines
    assert 'jobqueue_paused{priority="HIGH",queue="mail"} 0.0' in lines
    assert 'jobqueue_workers{queue="mail"} 4.0' in lines
    assert "# TYPE jobqueue_jobs_completed_total counter" in lines
    assert "# TYPE jobqueue_oldest_wait_seconds gauge" in lines
    oldest = [x for x in lines if x.startswith('jobqueue_oldest_wait_seconds{priority="LOW"')]
    assert float(oldest[0].split()[-1]) > 0.0
    assert any(x.startswith('jobqueue_wait_seconds{priority="HIGH",quantile="0.99"') for x in lines)
    assert any(x.startswith("jobqueue_utilization_ratio") for x in lines)


def test_the_collector_wants_a_final_queue() -> None:
    pytest.importorskip("prometheus_client", reason="the prometheus extra is not installed")
    from jobqueue.final.prometheus import JobQueueCollector

    with pytest.raises(TypeError, match=r"queue must be a jobqueue\.final\.JobQueue"):
        JobQueueCollector(object())  # type: ignore[arg-type]


# -- graceful stop on a signal -------------------------------------------------------------

CHILD = """
import logging, signal, sys
from jobqueue.final import Config, Job, JobQueue
from jobqueue.final.signals import install_signal_handlers

logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stdout)
path = sys.argv[1] or None
if sys.argv[2] == "previous":
    signal.signal(signal.SIGTERM, lambda signum, frame: print("previous handler", flush=True))

import threading
started = threading.Event()

def handler(payload):
    started.set()
    stop.signalled.wait(60)  # the job in flight ends once the signal came

jq = JobQueue(Config(handler=handler, num_workers=1, persist_path=path, shutdown_timeout=60))
stop = install_signal_handlers(jq)
for n in range(4):
    jq.enqueue(Job(id=f"j{n}"))
started.wait(60)
try:  # a SIGINT raises KeyboardInterrupt anywhere in here, even in print()
    print("running", flush=True)  # one job in flight, three queued: send the signal now
    stop.wait(60)
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
    stop.wait(60)
print("closed" if stop.closed.is_set() else "not closed", flush=True)
print("completed", jq.metrics().completed, flush=True)
"""


def run_child(tmp_path: Path, signum: int, path: str, previous: str) -> str:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, path, previous],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "running\n"
        child.send_signal(signum)
        out, _ = child.communicate(timeout=WAIT)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == 0, out
    return out


@pytest.mark.timeout(60)
def test_sigterm_closes_and_queued_jobs_stay_in_the_log(tmp_path: Path) -> None:
    path = str(tmp_path / "jobs.log")
    out = run_child(tmp_path, signal.SIGTERM, path, "previous")
    assert "SIGTERM: closing the queue" in out
    assert "previous handler" in out  # chained
    assert "closed\ncompleted 1\n" in out
    state = read_log(path).state
    assert sorted(state.live) == ["j1", "j2", "j3"]  # queued: the next queue runs them
    assert list(state.history) == ["j0"]


@pytest.mark.timeout(60)
def test_sigint_closes_drops_queued_jobs_without_a_log_and_still_interrupts(
    tmp_path: Path,
) -> None:
    out = run_child(tmp_path, signal.SIGINT, "", "none")
    assert "KeyboardInterrupt" in out  # the default SIGINT handler, chained
    assert "close() dropped 3 queued jobs" in out
    assert "closed\ncompleted 1\n" in out
