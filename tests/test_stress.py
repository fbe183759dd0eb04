"""The spec's stress test: 100,000 jobs from concurrent producers, all completed."""

from __future__ import annotations

import itertools
import threading

from tests.helpers import Harness

JOBS = 100_000
PRODUCERS = 10


def test_every_job_of_a_100k_flood_completes(harness: Harness) -> None:
    runs = itertools.count()  # next() on a count is atomic under the GIL

    def handler(payload: bytes) -> None:
        next(runs)

    q = harness.queue(num_workers=10, queue_size=1000, handler=handler)
    P = harness.stage.Priority
    priorities = [P.HIGH, P.MEDIUM, P.LOW]

    def produce(start: int) -> None:
        for i in range(start, JOBS, PRODUCERS):
            q.enqueue(harness.stage.Job(id=f"job{i}", priority=priorities[i % 3], payload=b"data"))

    producers = [threading.Thread(target=produce, args=(p,)) for p in range(PRODUCERS)]
    for t in producers:
        t.start()
    for t in producers:
        t.join()
    assert q.join(timeout=120)
    assert next(runs) == JOBS
