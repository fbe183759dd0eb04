"""The child process that is killed with ``kill -9``: a program, not a library module.

``python -m jobqueue.lab.scenarios.crash_child MODE ARGS...``.  The ``crash``
scenario and the crash tests both run it.  It prints one line per event and
flushes it, so the parent synchronises on its output, never on sleeps; those
lines are the protocol with the parent, and nothing else goes to stdout.
Modes:

- ``enqueue STAGE LOG JOBS``: open a queue of ``jobqueue.STAGE`` on ``LOG``,
  enqueue ``JOBS`` jobs, printing ``acked ID`` after each ``enqueue`` returns
  and ``done ID`` when a handler has finished, then ``all-acked``; wait to be
  killed.  (The ``crash`` scenario.)
- ``produce LOG DONE PREFIX POLICY``: open a durable ``final`` queue, print
  ``ready``, then enqueue jobs for ever, printing each id once ``enqueue``
  has returned (the acknowledgement).  The handler appends each id it runs
  to ``DONE``.
- ``drain LOG DONE``: open the queue, run every job left, print ``drained``.
- ``failing LOG RUNS``: a queue whose handler always fails (``max_retries=3``,
  short backoff); enqueue the job ``doomed`` unless the log has it already.
  Each run appends a line to ``RUNS`` and prints ``run``; ``drained`` once
  the job failed for good.
- ``compact LOG POINT``: fill a log, then compact it while a thread enqueues
  (printing ``ack ID``), and stop dead at ``POINT`` of the compaction
  (``bulk`` mid-way through writing the new file, ``rename`` just before the
  rename, ``dirsync`` just after it), printing ``at POINT``.
- ``hold LOG``: open the log, print ``locked``, and hold it until stdin closes.
- ``api LOG``: a durable queue with one worker, held by the job ``held``
  (printing ``running held``); the job ``gone`` is cancelled (``cancelled
  gone``) and ``later`` is scheduled an hour ahead (``scheduled later
  RUN_AT``); then ``ready``, and wait to be killed.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence

from jobqueue.final import Config, Job, JobQueue, Priority
from jobqueue.final.log import JobLog
from jobqueue.final.log.files import FileOps
from jobqueue.lab.scenarios.base import WAIT, load_stage

#: A little work per job (``enqueue``), so that jobs are running, and queued, at the kill.
WORK_SECONDS = 0.002
_LIFETIME = 60.0  # a child the parent forgot to kill still ends
_say_lock = threading.Lock()


def say(line: str) -> None:
    with _say_lock:  # one whole line at a time: workers and the producer print at once
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def appender(path: str) -> Callable[[bytes], None]:
    """A handler that appends each payload it runs to ``path``, as one line."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def handler(payload: bytes) -> None:
        os.write(fd, payload + b"\n")  # one small O_APPEND write: whole, or not at all

    return handler


def enqueue(stage_name: str, path: str, count: str) -> int:
    stage = load_stage(stage_name)

    def handler(payload: bytes) -> None:
        time.sleep(WORK_SECONDS)
        say(f"done {payload.decode()}")

    q = stage.JobQueue(stage.Config(num_workers=2, handler=handler, persist_path=path))
    for i in range(int(count)):
        q.enqueue(stage.Job(id=f"c{i}", payload=f"c{i}".encode()))
        say(f"acked c{i}")  # only now is the job acknowledged
    say("all-acked")
    time.sleep(WAIT)  # the parent kills us here
    q.close()
    return 1  # not killed: the parent is gone or broken


def produce(log: str, done: str, prefix: str, policy: str) -> int:
    config = Config(persist_path=log, handler=appender(done), num_workers=2, fsync=policy)
    with JobQueue(config) as q:
        say("ready")
        deadline = time.monotonic() + _LIFETIME
        for n in itertools.count():
            job_id = f"{prefix}-{n}"
            q.enqueue(Job(id=job_id, priority=Priority(n % 3), payload=job_id.encode()))
            say(job_id)
            if time.monotonic() > deadline:
                break
    return 1


def drain(log: str, done: str) -> int:
    config = Config(persist_path=log, handler=appender(done), num_workers=2)
    with JobQueue(config) as q:
        finished = q.join(timeout=_LIFETIME)
    say("drained" if finished else "timed out")
    return 0 if finished else 1


def failing(log: str, runs: str) -> int:
    record = appender(runs)

    def handler(payload: bytes) -> None:
        record(payload)
        say("run")
        raise RuntimeError("this handler always fails")

    config = Config(
        persist_path=log,
        handler=handler,
        num_workers=1,
        max_retries=3,
        retry_base_delay=0.05,
        fsync="always",
    )
    with JobQueue(config) as q:
        if q.status("doomed") is None:
            q.enqueue(Job(id="doomed", payload=b"doomed"))
        finished = q.join(timeout=_LIFETIME)
    say("drained" if finished else "timed out")
    return 0 if finished else 1


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


def compact(log_path: str, point: str) -> int:
    log = JobLog(log_path, fsync="always", ops=StopDead(point))
    log.recover()
    for i in range(400):  # mostly dead records, and some live ones
        log.enqueued(Job(id=f"old{i}", payload=b"x" * 200))
        say(f"ack old{i}")
        if i % 4:
            log.completed(f"old{i}")

    def enqueue_for_ever() -> None:
        for n in itertools.count():
            log.enqueued(Job(id=f"new{n}"))
            say(f"ack new{n}")

    threading.Thread(target=enqueue_for_ever, daemon=True).start()  # killed with us
    log.compact()
    say("compacted")  # not reached: StopDead stops inside it
    os._exit(4)


def api(log_path: str) -> int:
    running = threading.Event()

    def handler(payload: bytes) -> None:
        say(f"running {payload.decode()}")
        running.set()
        threading.Event().wait(_LIFETIME)  # held until the parent kills us

    q = JobQueue(Config(persist_path=log_path, handler=handler, num_workers=1, fsync="never"))
    q.enqueue(Job(id="held", payload=b"held"))
    running.wait(_LIFETIME)
    q.enqueue(Job(id="gone", payload=b"gone"))  # queued behind "held": one worker
    if q.cancel("gone"):
        say("cancelled gone")
    run_at = time.time() + 3600.0
    q.enqueue(Job(id="later", payload=b"later", run_at=run_at))
    say(f"scheduled later {run_at!r}")
    say("ready")
    threading.Event().wait(_LIFETIME)  # the parent kills us here
    return 1


def hold(log_path: str) -> int:
    log = JobLog(log_path)
    log.recover()
    say("locked")
    sys.stdin.read()
    log.close()
    return 0


_MODES: dict[str, Callable[..., int]] = {
    "enqueue": enqueue,
    "produce": produce,
    "drain": drain,
    "failing": failing,
    "compact": compact,
    "api": api,
    "hold": hold,
}


def main(argv: Sequence[str]) -> int:
    mode, *args = argv
    if mode not in _MODES:
        raise SystemExit(f"unknown mode {mode!r}; one of {', '.join(_MODES)}")
    return _MODES[mode](*args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
