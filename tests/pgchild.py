"""A child process for the PostgreSQL tests: ``python -m tests.pgchild MODE URL QUEUE ...``.

It prints one line per event and flushes it, so the parent synchronises on
its output, never on sleeps.  Every handler run appends ``<pid> <job id>``
to the ``DONE`` file when it starts (one small ``O_APPEND`` write: whole, or
not at all), so the parent counts runs across processes.  Modes:

- ``work URL QUEUE DONE WORKERS LEASE [hang|slow]``: open the queue with
  workers, print ``ready``, run jobs until stdin closes, then close and print
  ``closed``.  With ``hang`` the handler never returns; with ``slow`` it
  takes a few milliseconds; with either, each start is also printed as
  ``start ID``, so the parent can kill this process mid-job.
- ``produce URL QUEUE COUNT PREFIX``: a producer-only queue (num_workers=0)
  that enqueues ``COUNT`` jobs and prints ``produced``.
- ``open URL QUEUE``: open a queue (creating the schema) and print ``opened``.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable

from jobqueue.final import Config, Job, JobQueue, Priority
from jobqueue.vocabulary import Handler

_say_lock = threading.Lock()


def say(line: str) -> None:
    with _say_lock:  # one whole line at a time, from any thread
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def recorder(done_path: str, mode: str) -> Handler:
    fd = os.open(done_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    pid = os.getpid()
    forever = threading.Event()

    def run(payload: bytes) -> None:
        os.write(fd, f"{pid} {payload.decode()}\n".encode())
        if mode in ("hang", "slow"):
            say(f"start {payload.decode()}")
            forever.wait(None if mode == "hang" else 0.005)  # hang: until SIGKILL

    return run


def work(url: str, queue: str, done: str, *options: str) -> None:
    workers, lease, mode = (*options, "")[:3]
    config = Config(
        postgres_url=url,
        queue_name=queue,
        num_workers=int(workers),
        lease_timeout=float(lease),
        handlers={"record": recorder(done, mode)},
        shutdown_timeout=5.0,
    )
    with JobQueue(config):
        say("ready")
        sys.stdin.read()  # the parent closes stdin to stop us
    say("closed")


def produce(url: str, queue: str, count: str, prefix: str) -> None:
    config = Config(postgres_url=url, queue_name=queue, num_workers=0, queue_size=100_000)
    with JobQueue(config) as q:
        for n in range(int(count)):
            job_id = f"{prefix}-{n}"
            q.enqueue(
                Job(id=job_id, priority=Priority(n % 3), payload=job_id.encode(), handler="record")
            )
    say("produced")


def open_queue(url: str, queue: str) -> None:
    with JobQueue(Config(postgres_url=url, queue_name=queue, num_workers=0)):
        say("opened")


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    modes: dict[str, Callable[..., None]] = {"work": work, "produce": produce, "open": open_queue}
    modes[command](*args)
