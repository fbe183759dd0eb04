"""``jobqueue worker`` on a real PostgreSQL server: processes share the queue, and drain.

The command runs as a subprocess on the session's throwaway cluster; the test
is the producer.  No PostgreSQL here: skipped, with the reason (a failure
under CI=true).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobqueue.final import Config, Job, JobQueue, Status
from tests.test_worker_cli import DEADLINE, Lines


class Worker:
    """``python -m jobqueue -v worker ...`` on one queue, its log read line by line."""

    def __init__(self, url: str, queue: str, tmp_path: Path, *options: str) -> None:
        env = {
            **os.environ,
            "WORKERCHILD_RECORD": str(tmp_path / "ran.txt"),
            "WORKERCHILD_SOCKET": str(tmp_path / "jobs.sock"),
        }
        command = [sys.executable, "-m", "jobqueue", "-v", "worker", "--postgres-url", url]
        command += ["--queue", queue, "--handlers", "tests.workerchild:HANDLERS", *options]
        self.proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
        assert self.proc.stderr is not None
        self.log = Lines(self.proc.stderr)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(DEADLINE)


@pytest.fixture
def producer(pg_url: str, pg_queue_name: str) -> Iterator[JobQueue]:
    """A producer-only queue (no workers), as a web server would open."""
    queue = JobQueue(Config(postgres_url=pg_url, queue_name=pg_queue_name, num_workers=0))
    yield queue
    queue.close()


@pytest.fixture
def workers(request: pytest.FixtureRequest) -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        if worker.proc.poll() is None:
            worker.proc.kill()
            worker.proc.wait()


@pytest.mark.timeout(180)
def test_two_worker_processes_run_every_job_once_then_exit_0_on_sigterm(
    pg_url: str, pg_queue_name: str, producer: JobQueue, workers: list[Worker], tmp_path: Path
) -> None:
    worker = Worker(pg_url, pg_queue_name, tmp_path, "--processes", "2", "--workers", "2")
    workers.append(worker)
    worker.log.wait_count("workers on queue", 2)  # both processes have opened the queue
    ids = [f"job-{n}" for n in range(300)]
    for job_id in ids:
        producer.enqueue(Job(id=job_id, handler="record", payload=job_id.encode()))
    assert producer.join(timeout=DEADLINE)
    assert worker.stop() == 0
    lines = (tmp_path / "ran.txt").read_text().splitlines()
    ran = Counter(line.split()[1] for line in lines)
    assert ran == Counter(ids)  # none lost, none run twice
    assert all(producer.status(job_id) is Status.COMPLETED for job_id in ids[:: len(ids) // 10])
    worker.log.wait_count("stopped", 2)


@pytest.mark.timeout(180)
def test_sigterm_finishes_the_job_in_flight_and_leaves_the_queued_ones(
    pg_url: str, pg_queue_name: str, producer: JobQueue, workers: list[Worker], tmp_path: Path
) -> None:
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "jobs.sock"))
        server.listen()
        server.settimeout(DEADLINE)
        worker = Worker(pg_url, pg_queue_name, tmp_path, "--workers", "1")
        workers.append(worker)
        producer.enqueue(Job(id="held", handler="hold"))
        conn, _ = server.accept()  # the one worker thread now runs "held"
        with conn:
            conn.settimeout(DEADLINE)
            assert conn.makefile().readline().strip().isdigit()
            waiting = [f"waiting-{n}" for n in range(3)]
            for job_id in waiting:
                producer.enqueue(Job(id=job_id, handler="record", payload=job_id.encode()))
            worker.proc.send_signal(signal.SIGTERM)
            worker.log.wait_count("stopping intake", 1)
            assert producer.status("held") is Status.PROCESSING
            conn.sendall(b"x")
            assert conn.makefile().readline() == "done\n"
            assert worker.proc.wait(DEADLINE) == 0
    assert producer.status("held") is Status.COMPLETED
    assert [producer.status(job_id) for job_id in waiting] == [Status.QUEUED] * 3
    assert not (tmp_path / "ran.txt").exists()  # the queued jobs stay for other workers
