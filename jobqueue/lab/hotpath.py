"""A fixed serial workload for counting the hot path's instructions under callgrind.

Timings on a shared 2-core machine swing by ±20% from run to run; an
instruction count does not.  This runs ``N`` jobs through ``jobqueue.final``
with one worker, with no thread ever waiting for another: the worker is
held in a first job while the ``N`` jobs are enqueued (no wake-ups), then
released to drain them alone while the main thread waits in ``join()``.
So every instruction counted is the queue's code, the handler's and the
``Job`` constructor's, the same in every run::

    for n in 0 10000; do
        N=$n valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
            .venv/bin/python -m jobqueue.lab.hotpath [--durable]
    done
    # instructions per job: (the second "Collected" - the first) / 10000

``--durable`` adds a log (``fsync="interval"``) in a temporary directory.
Run ``N=... python -m jobqueue.lab.hotpath --jobs-only`` the same way to
count what building the ``Job`` values costs, and subtract it.

Two references run the same workload instead of ``final``: ``--pool``,
``ThreadPoolExecutor`` (``submit``, then ``shutdown``), and
``--floor[=FEATURES]``, the lab's ``FloorQueue`` (``floor.py``) with the
comma-separated features of ``final`` named, each one final's own code:
``--floor`` alone is the least such a queue costs, and
``--floor=fairness`` minus ``--floor`` what fairness adds to it.

It holds its worker with its own gate rather than ``measure_profile``'s,
and, unless asked for ``--floor``, uses nothing but ``jobqueue.final``'s
public API, so that the same file also runs against an older tree on
``PYTHONPATH`` (one without the lab's newer modules) for a before-and-after
count.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from jobqueue import final

__all__ = ["main"]


def main(argv: list[str]) -> None:
    jobs = int(os.environ.get("N", "10000"))
    priorities = list(final.Priority)
    built = [final.Job(id=f"j{i}", priority=priorities[i % 3]) for i in range(jobs)]
    if "--jobs-only" in argv:
        return
    lock = threading.Lock()
    done = [0]
    gate, inside = threading.Event(), threading.Event()

    def handler(payload: bytes) -> None:  # the realistic profile's: a shared lock
        if payload == b"gate":
            inside.set()
            gate.wait()
        with lock:
            done[0] += 1

    with _opened(argv, handler, jobs + 1) as (put, join):
        put(final.Job(id="gate", payload=b"gate"))
        inside.wait()
        for job in built:
            put(job)
        gate.set()
        join()
    if done[0] != jobs + 1:
        raise SystemExit(f"ran {done[0]} jobs of {jobs + 1}")


@contextlib.contextmanager
def _opened(
    argv: list[str], handler: Callable[[bytes], None], size: int
) -> Iterator[tuple[Callable[[final.Job], object], Callable[[], object]]]:
    """(put, join) of the queue ``argv`` asks for, with one worker and room for ``size``."""
    floor = [arg for arg in argv if arg.split("=")[0] == "--floor"]
    if "--pool" in argv:
        pool = ThreadPoolExecutor(max_workers=1)
        yield (lambda job: pool.submit(handler, job.payload)), pool.shutdown
    elif floor:
        from jobqueue.lab.floor import FloorQueue

        features = [f for f in floor[0].partition("=")[2].split(",") if f]
        with FloorQueue(handler, queue_size=size, features=features) as queue:
            yield queue.enqueue, queue.join
    else:
        with tempfile.TemporaryDirectory(prefix="jobqueue-hotpath-") as directory:
            path = os.path.join(directory, "jobs.log") if "--durable" in argv else None
            config = final.Config(num_workers=1, queue_size=size, handler=handler)
            with final.JobQueue(replace(config, persist_path=path)) as queue:
                yield queue.enqueue, queue.join


if __name__ == "__main__":
    main(sys.argv[1:])
