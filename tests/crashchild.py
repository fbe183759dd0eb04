"""A child process for the crash tests: run as ``python -m tests.crashchild MODE ...``.

It prints one line per event and flushes it, so the parent synchronises on
its output, never on sleeps.  Modes:

- ``produce LOG DONE PREFIX POLICY``: open a durable queue, print ``ready``,
  then enqueue jobs for ever, printing each id once ``enqueue`` has returned
  (the acknowledgement).  The handler appends each id it runs to ``DONE``.
  The parent kills it with SIGKILL.
- ``drain LOG DONE``: open the queue, run every job left, print ``drained``.
- ``compact LOG POINT``: fill a log, then compact it while a thread enqueues
  (printing ``ack ID``), and stop dead at ``POINT`` of the compaction
  (``bulk`` mid-way through writing the new file, ``rename`` just before the
  rename, ``dirsync`` just after it), printing ``at POINT``.
- ``hold LOG``: open the log, print ``locked``, and hold it until stdin closes.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
import time
from collections.abc import Callable

from jobqueue.final import Config, Job, JobQueue, Priority
from jobqueue.final.log import JobLog
from jobqueue.final.log.files import FileOps

_say_lock = threading.Lock()
_LIFETIME = 60.0  # a child the parent forgot to kill still ends


def say(line: str) -> None:
    with _say_lock:  # one whole line at a time, from any thread
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def done_handler(done_path: str) -> Callable[[bytes], None]:
    fd = os.open(done_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def handler(payload: bytes) -> None:
        os.write(fd, payload + b"\n")  # one small O_APPEND write: whole, or not at all

    return handler


def produce(log: str, done: str, prefix: str, policy: str) -> None:
    config = Config(persist_path=log, handler=done_handler(done), num_workers=2, fsync=policy)
    with JobQueue(config) as q:
        say("ready")
        deadline = time.monotonic() + _LIFETIME
        for n in itertools.count():
            job_id = f"{prefix}-{n}"
            q.enqueue(Job(id=job_id, priority=Priority(n % 3), payload=job_id.encode()))
            say(job_id)
            if time.monotonic() > deadline:
                return


def drain(log: str, done: str) -> None:
    config = Config(persist_path=log, handler=done_handler(done), num_workers=2)
    with JobQueue(config) as q:
        finished = q.join(timeout=_LIFETIME)
    say("drained" if finished else "timed out")


class StopDead(FileOps):
    """Blocks for ever at one point of a compaction, so the parent can kill us there."""

    def __init__(self, point: str) -> None:
        self.point = point
        self.compact_fd = -1
        self.renamed = False

    def open(self, path: str, flags: int, mode: int = 0o600) -> int:
        fd = super().open(path, flags, mode)
        if path.endswith(".compact"):
            self.compact_fd = fd
        return fd

    def write(self, fd: int, data: bytes | memoryview) -> int:
        if self.point == "bulk" and fd == self.compact_fd:
            written = super().write(fd, data[: len(data) // 2])
            self.stop()
            return written
        return super().write(fd, data)

    def rename(self, src: str, dst: str) -> None:
        if self.point == "rename":
            self.stop()
        super().rename(src, dst)
        self.renamed = True

    def fsync_dir(self, path: str) -> None:
        if self.point == "dirsync" and self.renamed:
            self.stop()
        super().fsync_dir(path)

    def stop(self) -> None:
        say(f"at {self.point}")
        threading.Event().wait(_LIFETIME)
        os._exit(3)  # never reached while the parent does its job


def compact(log_path: str, point: str) -> None:
    log = JobLog(log_path, fsync="always", ops=StopDead(point))
    log.recover()
    for i in range(400):  # mostly dead records, and some live ones
        log.enqueued(Job(id=f"old{i}", payload=b"x" * 200))
        say(f"ack old{i}")
        if i % 4:
            log.started(f"old{i}", 1)
            log.completed(f"old{i}")

    def enqueue_for_ever() -> None:
        for n in itertools.count():
            log.enqueued(Job(id=f"new{n}"))
            say(f"ack new{n}")

    threading.Thread(target=enqueue_for_ever, daemon=True).start()  # killed with us
    log.compact()
    say("compacted")  # not reached: StopDead stops inside it
    os._exit(4)


def hold(log_path: str) -> None:
    log = JobLog(log_path)
    log.recover()
    say("locked")
    sys.stdin.read()
    log.close()


def main(argv: list[str]) -> None:
    mode, *args = argv
    if mode == "produce":
        produce(*args)
    elif mode == "drain":
        drain(*args)
    elif mode == "compact":
        compact(*args)
    elif mode == "hold":
        hold(*args)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
