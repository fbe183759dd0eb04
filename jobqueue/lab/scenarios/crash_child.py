"""The child process of the ``crash`` scenario: a program, not a library module.

``python -m jobqueue.lab.scenarios.crash_child STAGE PATH JOBS`` opens a queue of
``jobqueue.STAGE`` on the log ``PATH`` and enqueues ``JOBS`` jobs.  It prints
``acked ID`` after each ``enqueue`` returns, ``done ID`` when a handler has
finished, then ``all-acked``, and waits to be killed.  Those lines are the
protocol with the parent; nothing else is printed to stdout.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence

from jobqueue.lab.scenarios.base import WAIT, load_stage

#: A little work per job, so that jobs are running (and queued) when the kill comes.
WORK_SECONDS = 0.002


def main(argv: Sequence[str]) -> int:
    stage_name, path, count = argv
    stage = load_stage(stage_name)
    lock = threading.Lock()

    def say(line: str) -> None:
        with lock:  # whole lines only: workers and the producer print at once
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
