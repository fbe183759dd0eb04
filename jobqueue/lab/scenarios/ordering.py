"""Scenarios about which job waits, and how much waiting the queue allows.

Each one holds the only worker with a :class:`Gate`, queues jobs behind it,
then lets go, so the order the worker runs them in is the order the queue
chose, and nothing depends on timing.
"""

from __future__ import annotations

import tracemalloc
from types import ModuleType
from typing import Any

from jobqueue.lab.scenarios.base import WAIT, Gate, Observed, Recorder, Sizes, ordinal

__all__ = ["backpressure", "no_starvation", "priorities"]

#: How long a producer waits on a full queue before the scenario calls it blocked.
BLOCK_TIMEOUT = 0.05


def backpressure(stage: ModuleType, sizes: Sizes) -> Observed:
    """Offer a flood of jobs to a queue whose only worker is stuck.

    A bounded queue makes the producer wait once ``queue_size`` jobs are
    waiting (here it gives up after ``BLOCK_TIMEOUT``, with ``QueueFull``);
    an unbounded one accepts everything and its memory grows with the flood.
    """
    gate = Gate()
    q = stage.JobQueue(
        stage.Config(num_workers=1, queue_size=sizes.queue_size, handler=gate, max_retries=0)
    )
    accepted = 0
    blocked = False
    try:
        q.enqueue(stage.Job(id="held"))
        gate.wait_entered()
        width = max(1, sizes.payload_bytes // 8)
        started_tracing = not tracemalloc.is_tracing()
        if started_tracing:
            tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for i in range(sizes.flood_jobs):
                # A distinct payload per job, as real jobs have: memory is what grows.
                payload = f"{i:08d}".encode() * width
                try:
                    q.enqueue(stage.Job(id=f"flood-{i}", payload=payload), timeout=BLOCK_TIMEOUT)
                except stage.QueueFull:
                    blocked = True
                    break
                accepted += 1
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            if started_tracing:
                tracemalloc.stop()
    finally:
        gate.open()
        q.close()
    if blocked:
        figure = (
            f"enqueue blocked at job {accepted + 1:,} (queue_size {sizes.queue_size:,}): "
            f"QueueFull after {BLOCK_TIMEOUT} s; {_megabytes(grown)}"
        )
    else:
        figure = f"enqueue never blocked: {accepted:,} queued, {_megabytes(grown)}"
    return Observed(
        solved=blocked and accepted <= sizes.queue_size,
        figure=figure,
        data={
            "offered": sizes.flood_jobs,
            "accepted": accepted,
            "blocked": blocked,
            "queue_size": sizes.queue_size,
            "payload_bytes": width * 8,
            "traced_bytes": grown,
        },
    )


def _megabytes(n: int) -> str:
    return f"+{n / 1e6:.1f} MB" if n >= 100_000 else f"+{n / 1e3:.0f} kB"


def _run_in_order(stage: ModuleType, jobs: list[tuple[str, str]], **config: Any) -> list[str]:
    """Queue ``jobs`` (id, priority) behind a held worker; return the ids in the order they ran."""
    gate, recorder = Gate(), Recorder()
    q = stage.JobQueue(
        stage.Config(num_workers=1, queue_size=len(jobs) + 1, handler=recorder, **config)
    )
    try:
        q.enqueue_with_handler(stage.Job(id="held", priority=stage.Priority.HIGH), gate)
        gate.wait_entered()
        for job_id, priority in jobs:
            q.enqueue(
                stage.Job(id=job_id, priority=stage.Priority[priority], payload=job_id.encode())
            )
        gate.open()
        if not q.join(timeout=WAIT):
            raise TimeoutError(f"{len(jobs)} queued jobs did not finish within {WAIT}s")
    finally:
        gate.open()
        q.close()
    return [payload.decode() for payload in recorder.runs]


def priorities(stage: ModuleType, sizes: Sizes) -> Observed:
    """LOW and MEDIUM jobs wait; one HIGH job arrives last.  When does it run?"""
    half = sizes.order_jobs // 2
    jobs = [(f"low-{i}", "LOW") for i in range(half)]
    jobs += [(f"medium-{i}", "MEDIUM") for i in range(sizes.order_jobs - half)]
    jobs.append(("urgent", "HIGH"))
    order = _run_in_order(stage, jobs)
    position = order.index("urgent") + 1
    return Observed(
        solved=position == 1,
        figure=f"HIGH job enqueued last ran {ordinal(position)} of {len(order):,}",
        data={"position": position, "jobs": len(order)},
    )


def no_starvation(stage: ModuleType, sizes: Sizes) -> Observed:
    """One LOW job waits; a flood of HIGH jobs arrives after it.  Does LOW get a turn?

    The bound is ``fairness_tokens`` HIGH jobs (plus one when two lower
    priorities are owed a turn at once: see ``jobqueue/final/fairness.py``).
    """
    tokens = 10
    jobs = [("low", "LOW")] + [(f"high-{i}", "HIGH") for i in range(sizes.order_jobs)]
    order = _run_in_order(stage, jobs, fairness_tokens=tokens)
    position = order.index("low") + 1
    high_before = position - 1
    if position == len(order):
        figure = f"LOW job ran {ordinal(position)} of {len(order):,}: after every HIGH job"
    else:
        figure = f"LOW job ran {ordinal(position)} of {len(order):,}, after {high_before} HIGH"
    return Observed(
        solved=high_before <= tokens + 1,
        figure=figure,
        data={"position": position, "jobs": len(order), "fairness_tokens": tokens},
    )
