"""Handlers and an in-memory queue for the ``jobqueue worker`` tests.

``python -m tests.workerchild SOCKET PROCESSES SHUTDOWN_TIMEOUT`` runs the
worker command's own process and signal logic (``run_one``, ``supervise``) on
an in-memory ``final`` queue, so its drain can be tested without PostgreSQL.
Every worker process enqueues one ``hold`` job.  The handler connects to the
Unix socket SOCKET, sends its process id, blocks until the test sends one
byte, and then answers ``done``: the test decides when a job in flight ends,
and sees that it did.  ``record`` notes which process ran which job.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Mapping

from jobqueue.final import Config, Job, JobQueue
from jobqueue.lab import worker
from jobqueue.vocabulary import Handler


def hold(payload: bytes) -> None:
    with socket.socket(socket.AF_UNIX) as conn:
        conn.connect(os.environ["WORKERCHILD_SOCKET"])
        conn.sendall(f"{os.getpid()}\n".encode())
        if conn.recv(1):
            conn.sendall(b"done\n")


def noop(payload: bytes) -> None:
    pass


def record(payload: bytes) -> None:
    """Append "PID PAYLOAD" to the file WORKERCHILD_RECORD: who ran what, across processes."""
    line = f"{os.getpid()} {payload.decode()}\n".encode()
    fd = os.open(os.environ["WORKERCHILD_RECORD"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line)  # one short O_APPEND write: lines never interleave
    finally:
        os.close(fd)


HANDLERS: Mapping[str, Handler] = {"hold": hold, "noop": noop, "record": record}
NOT_A_MAPPING = [hold]
NOT_CALLABLE = {"hold": 42}
EMPTY: dict[str, Handler] = {}


def open_memory_queue(options: worker.WorkerOptions, handlers: Mapping[str, Handler]) -> JobQueue:
    config = Config(
        num_workers=options.workers,
        shutdown_timeout=options.shutdown_timeout,
        handlers=handlers,
    )
    queue = JobQueue(config)
    queue.enqueue(Job(id=f"hold-{os.getpid()}", handler="hold"))
    return queue


def main(argv: list[str]) -> int:
    path, processes, shutdown_timeout = argv
    os.environ["WORKERCHILD_SOCKET"] = path  # spawned children inherit it
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    options = worker.WorkerOptions(
        postgres_url="unused",
        handlers="tests.workerchild:HANDLERS",
        workers=2,
        queue="default",
        processes=int(processes),
        shutdown_timeout=float(shutdown_timeout),
        lease_timeout=30.0,
        log_level=logging.INFO,
    )
    if options.processes == 1:
        return worker.run_one(options, open_memory_queue)
    return worker.supervise(options, open_memory_queue)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
