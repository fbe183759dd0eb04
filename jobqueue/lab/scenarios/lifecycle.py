"""Scenarios about one job's life: retries, shutdown, and what the queue can tell you."""

from __future__ import annotations

import itertools
import threading
import time
from types import ModuleType

from jobqueue.lab.scenarios.base import WAIT, Gate, Observed, Recorder, Sizes

__all__ = ["graceful_shutdown", "metrics", "metrics_per_priority", "retry", "status"]

#: The spec's first backoff.  The scenarios run with a smaller one and show
#: their gaps scaled back to this, so "1.0/2.0/4.0 s" reads as in the spec.
SPEC_BASE_DELAY = 1.0


def retry(stage: ModuleType, sizes: Sizes) -> Observed:
    """A handler that always fails.  How often is it retried, and how far apart?"""
    max_retries = 3
    base = sizes.retry_base_delay
    recorder = Recorder(fail=lambda payload: True)
    q = stage.JobQueue(
        stage.Config(handler=recorder, max_retries=max_retries, retry_base_delay=base)
    )
    try:
        q.enqueue(stage.Job(id="doomed"))
        if not q.join(timeout=WAIT):
            raise TimeoutError(f"the failing job was still retrying after {WAIT}s")
    finally:
        q.close()
    times = recorder.times
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    retries = len(gaps)
    wanted = [base * 2**k for k in range(max_retries)]
    # Never early; late by scheduling noise only (generous: the machine may be busy).
    on_time = retries == max_retries and all(
        want * 0.95 <= gap <= want + 0.5 for gap, want in zip(gaps, wanted, strict=True)
    )
    if retries == 0:
        figure = f"0 of {max_retries} retries: ran once, then the job was lost"
    else:
        scale = SPEC_BASE_DELAY / base
        shown = "/".join(f"{gap * scale:.1f}" for gap in gaps)
        figure = f"{retries} of {max_retries} retries, gaps {shown} s (scaled x{scale:g})"
    return Observed(
        solved=on_time,
        figure=figure,
        data={
            "runs": len(times),
            "retries": retries,
            "max_retries": max_retries,
            "retry_base_delay": base,
            "gaps": [round(gap, 4) for gap in gaps],
            "expected_gaps": wanted,
        },
    )


def graceful_shutdown(stage: ModuleType, sizes: Sizes) -> Observed:
    """Two jobs are running when ``close()`` is called.  Are they done when it returns?"""
    del sizes
    in_flight = 2
    hold = 0.2  # the jobs finish this long after close() is called
    gate = Gate()
    finished = threading.Semaphore(0)

    def handler(payload: bytes) -> None:
        gate(payload)
        finished.release()

    q = stage.JobQueue(stage.Config(num_workers=in_flight, handler=handler))
    opener = threading.Timer(hold, gate.open)
    try:
        for i in range(in_flight):
            q.enqueue(stage.Job(id=f"running-{i}"))
        gate.wait_entered(in_flight)
        opener.start()
        started = time.monotonic()
        q.close()
        waited = time.monotonic() - started
        done_at_return = sum(finished.acquire(blocking=False) for _ in range(in_flight))
    finally:
        gate.open()
        opener.cancel()
        q.close()
    # A stage that returned early still has its handlers running: let them end.
    for _ in range(in_flight - done_at_return):
        finished.acquire(timeout=WAIT)
    still_running = in_flight - done_at_return
    if still_running:
        figure = f"close() returned after {waited:.2f} s with {still_running} jobs in flight"
    else:
        figure = f"close() waited {waited:.2f} s for {in_flight} jobs in flight"
    return Observed(
        solved=still_running == 0,
        figure=figure,
        data={"in_flight": in_flight, "running_at_return": still_running, "waited": waited},
    )


def metrics(stage: ModuleType, sizes: Sizes) -> Observed:
    """Many jobs, one in ten always failing, from four producers.  Are the counters exact?"""
    jobs = sizes.metric_jobs
    recorder = Recorder(fail=lambda payload: payload.endswith(b"0"))
    q = stage.JobQueue(
        stage.Config(num_workers=4, handler=recorder, max_retries=1, retry_base_delay=0.001)
    )
    try:
        errors: list[BaseException] = []

        def produce(first: int) -> None:
            try:
                for i in range(first, jobs, 4):
                    q.enqueue(stage.Job(id=f"m{i}", payload=str(i).encode()), timeout=WAIT)
            except BaseException as exc:  # re-raised below, in the scenario's thread
                errors.append(exc)

        producers = [threading.Thread(target=produce, args=(k,)) for k in range(4)]
        for producer in producers:
            producer.start()
        for producer in producers:
            producer.join(WAIT)
        if errors:
            raise errors[0]
        if not q.join(timeout=WAIT):
            raise TimeoutError(f"{jobs} jobs did not finish within {WAIT}s")
        try:
            m = q.metrics()
        except NotImplementedError:
            return Observed(False, "metrics() raises NotImplementedError", {"jobs": jobs})
    finally:
        q.close()
    failing = len([i for i in range(jobs) if i % 10 == 0])
    seen = {"completed": m.completed, "failed": m.failed, "queued": m.queued}
    want = {"completed": jobs - failing, "failed": failing, "queued": 0}
    exact = seen == want
    figure = f"completed {m.completed}, failed {m.failed} of {jobs}"
    figure += ": exact" if exact else f": expected {want['completed']} and {want['failed']}"
    return Observed(exact, figure, {"jobs": jobs, "observed": seen, "expected": want})


def metrics_per_priority(stage: ModuleType, sizes: Sizes) -> Observed:
    """Jobs at every priority, one LOW job failing.  Can the queue count them apart?"""
    per = max(3, sizes.metric_jobs // 6)
    recorder = Recorder(fail=lambda payload: payload == b"low-0")
    q = stage.JobQueue(stage.Config(num_workers=2, handler=recorder, max_retries=0))
    try:
        for priority in stage.Priority:
            for i in range(per):
                q.enqueue(
                    stage.Job(
                        id=f"{priority.name.lower()}-{i}",
                        priority=priority,
                        payload=f"{priority.name.lower()}-{i}".encode(),
                    )
                )
        if not q.join(timeout=WAIT):
            raise TimeoutError(f"{3 * per} jobs did not finish within {WAIT}s")
        try:
            m = q.metrics()
        except NotImplementedError:
            return Observed(False, "metrics() raises NotImplementedError", {})
    finally:
        q.close()
    by_priority = getattr(m, "by_priority", None)
    utilization = getattr(m, "utilization", None)
    if by_priority is None or utilization is None:
        return Observed(False, f"totals only: completed {m.completed}, failed {m.failed}", {})
    P = stage.Priority
    seen = {p.name: [by_priority[p].completed, by_priority[p].failed] for p in P}
    want = {"HIGH": [per, 0], "MEDIUM": [per, 0], "LOW": [per - 1, 1]}
    exact = seen == want
    figure = (
        f"HIGH {seen['HIGH'][0]}, MEDIUM {seen['MEDIUM'][0]}, LOW {seen['LOW'][0]} done "
        f"+{seen['LOW'][1]} failed; utilization {utilization:.0%}"
    )
    return Observed(
        exact and 0.0 <= utilization <= 1.0,
        figure,
        {"observed": seen, "expected": want, "utilization": utilization},
    )


def status(stage: ModuleType, sizes: Sizes) -> Observed:
    """Ask for a job's status while it waits, runs, and after it fails for good."""
    del sizes
    gate = Gate()
    q = stage.JobQueue(stage.Config(num_workers=1, handler=gate, max_retries=0))
    try:
        q.enqueue(stage.Job(id="running"))
        gate.wait_entered()
        q.enqueue_with_handler(stage.Job(id="doomed"), _always_fail)
        try:
            seen = [q.status("doomed"), q.status("running")]
        except NotImplementedError:
            return Observed(False, "status() raises NotImplementedError", {})
        gate.open()
        if not q.join(timeout=WAIT):
            raise TimeoutError(f"two jobs did not finish within {WAIT}s")
        seen += [q.status("running"), q.status("doomed"), q.status("never-enqueued")]
    finally:
        gate.open()
        q.close()
    S = stage.Status
    want = [S.QUEUED, S.PROCESSING, S.COMPLETED, S.FAILED, None]
    names = [s.name.lower() if s is not None else "None" for s in seen]
    figure = (
        f"queued -> processing -> completed; a dead job: {names[3]}; unknown id: {names[4]}"
        if seen == want
        else "status() said " + ", ".join(names)
    )
    return Observed(seen == want, figure, {"observed": names})


def _always_fail(payload: bytes) -> None:
    raise RuntimeError("failing on purpose")
