"""The spec's five pitfalls, each run wrong and right, with what happened printed.

    python -m examples.pitfalls            # all five
    python -m examples.pitfalls workers    # or one: workers, starvation, count, timeout, shutdown

The wrong versions live here (or in the naive and improved stages), never in
``jobqueue.final``.  See docs/pitfalls.md for the discussion.
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence

from jobqueue import final
from jobqueue.final import Config, Job, JobQueue, Metrics, Priority, QueueFull
from jobqueue.lab.scenarios import run

# -- 1. too many workers for CPU-bound work -------------------------------------------


def spin(payload: bytes) -> None:
    """About 2 ms of pure-Python arithmetic: it holds the GIL the whole time."""
    total = 0
    for i in range(40_000):
        total += i * i


def cpu_bound_run(workers: int, jobs: int) -> tuple[float, float]:
    """Seconds for ``jobs`` CPU-bound jobs, and the mean seconds one job took to run."""
    durations: list[float] = []
    lock = threading.Lock()

    def timed(payload: bytes) -> None:
        started = time.perf_counter()
        spin(payload)
        with lock:
            durations.append(time.perf_counter() - started)

    with JobQueue(Config(num_workers=workers, handler=timed)) as jq:
        started = time.perf_counter()
        for i in range(jobs):
            jq.enqueue(Job(id=f"cpu-{i}"))
        jq.join()
        seconds = time.perf_counter() - started
    return seconds, sum(durations) / len(durations)


def too_many_workers() -> None:
    cores = os.cpu_count() or 1
    jobs = 50
    print(f"1. Too many workers for CPU-bound work ({jobs} pure-Python jobs, {cores} cores)")
    for label, workers in (("right", cores), ("wrong", 100)):
        seconds, per_job = cpu_bound_run(workers, jobs)
        print(
            f"   {label}: {workers:>3} workers: all done in {seconds:.2f} s; "
            f"one job took {per_job * 1e3:.1f} ms from start to end"
        )
    print(
        "   Pure Python holds the GIL: threads take turns, so 100 workers finish no sooner,\n"
        "   and each job is sliced among the others (slower to finish, 100 thread stacks)."
    )


# -- 2. priority starvation -------------------------------------------------------------


def starving(before: Metrics, after: Metrics, threshold: int) -> list[Priority]:
    """The priorities that had jobs waiting throughout, and finished none, while
    ``threshold`` or more other jobs finished.  The check a monitor would run."""
    served = after.completed - before.completed
    return [
        p
        for p in Priority
        if before.by_priority[p].queued
        and after.by_priority[p].queued
        and after.by_priority[p].completed == before.by_priority[p].completed
        and served >= threshold
    ]


def watch_for_starvation(fairness_tokens: int, flood: int = 500, threshold: int = 50) -> str:
    """One LOW job, then a HIGH flood, on one worker; a watcher samples the metrics."""
    release = threading.Event()
    alarms: list[str] = []

    def handler(payload: bytes) -> None:
        if payload == b"hold":
            release.wait(10)
        else:
            time.sleep(0.001)  # a little work: lets the watcher sample mid-flood

    config = Config(
        num_workers=1, handler=handler, queue_size=flood + 1, fairness_tokens=fairness_tokens
    )
    with JobQueue(config) as jq:
        jq.enqueue(Job(id="hold", priority=Priority.HIGH, payload=b"hold"))
        jq.enqueue(Job(id="low", priority=Priority.LOW))
        for i in range(flood):
            jq.enqueue(Job(id=f"high-{i}", priority=Priority.HIGH))
        baseline = jq.metrics()
        release.set()
        while jq.status("low") is not final.Status.COMPLETED and not alarms:
            now = jq.metrics()
            for p in starving(baseline, now, threshold):
                alarms.append(
                    f"ALARM: {p.name} has waited while {now.completed - baseline.completed} "
                    f"other jobs finished"
                )
            time.sleep(0.005)  # a monitor samples periodically
        jq.join()
    return alarms[0] if alarms else "no alarm: LOW finished before the threshold"


def starvation() -> None:
    print("2. Priority starvation (1 LOW job waits, 300 HIGH jobs arrive after it)")
    for stage in ("improved", "final"):
        label = "wrong" if stage == "improved" else "right"
        print(f"   {label}: {stage:>8}: {run(stage, 'no_starvation').figure}")
    print(
        "   Detecting it: watch per-priority metrics for a priority that waits and never finishes."
    )
    print(f"   strict priority (fairness_tokens=10**9): {watch_for_starvation(10**9)}")
    print(f"   token fairness  (fairness_tokens=10):    {watch_for_starvation(10)}")


# -- 3. counting a job only once a worker has it (Go: wg.Add inside the goroutine) -------


class Pool:
    """A minimal worker pool, to show where the count of unfinished jobs must go up."""

    def __init__(self, workers: int, count_at_submit: bool) -> None:
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._count_at_submit = count_at_submit
        self._lock = threading.Lock()
        self._all_done = threading.Condition(self._lock)  # notified when _unfinished hits 0
        self._unfinished = 0
        self.done = 0
        self._threads = [threading.Thread(target=self._work) for _ in range(workers)]

    def submit(self, fn: Callable[[], None]) -> None:
        if self._count_at_submit:
            with self._lock:
                self._unfinished += 1  # right: counted before the hand-off
        self._jobs.put(fn)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def wait(self, timeout: float) -> bool:
        """True when no job is unfinished; False if ``timeout`` passed first."""
        with self._all_done:
            return self._all_done.wait_for(lambda: self._unfinished == 0, timeout)

    def stop(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)  # one sentinel per worker
        for thread in self._threads:
            thread.join()

    def _work(self) -> None:
        while (fn := self._jobs.get()) is not None:
            if not self._count_at_submit:
                with self._lock:
                    self._unfinished += 1  # wrong: counted only once a worker has it
            fn()
            with self._lock:
                self.done += 1
                self._unfinished -= 1
                if self._unfinished == 0:
                    self._all_done.notify_all()


def count() -> None:
    print("3. Counting a job only once a worker has it (Go: wg.Add inside the goroutine)")
    for label, at_submit in (("wrong", False), ("right", True)):
        pool = Pool(workers=2, count_at_submit=at_submit)
        for _ in range(5):
            pool.submit(lambda: None)
        # wait() before any worker has run: the race of the Go pitfall, made certain.
        finished = pool.wait(timeout=0.1)
        seen = pool.done
        pool.start()
        pool.wait(timeout=10)
        pool.stop()
        verdict = (
            f"returned 'all done' with {seen} of 5 done"
            if finished
            else f"timed out: 5 jobs pending, {seen} done"
        )
        print(f"   {label}: wait() before any worker ran: {verdict}; later {pool.done} of 5 ran")
    print("   Every stage counts a job in enqueue(), under the mutex, before a worker can see it.")


# -- 4. enqueue without a timeout ---------------------------------------------------------


def timeout() -> None:
    print("4. Blocking forever on a full queue (Go: ignoring ctx.Done())")
    full: queue.Queue[int] = queue.Queue(maxsize=1)
    full.put(0)
    producer = threading.Thread(target=full.put, args=(1,))  # no timeout: waits forever
    producer.start()
    producer.join(0.2)
    print(
        f"   wrong: queue.Queue.put() with no timeout, 0.2 s later: blocked={producer.is_alive()}"
    )
    full.get()  # free it, so this demo can end
    producer.join()
    running, release = threading.Event(), threading.Event()

    def held(payload: bytes) -> None:
        running.set()
        release.wait(10)

    with JobQueue(Config(num_workers=1, queue_size=1, handler=held)) as jq:
        jq.enqueue(Job(id="running"))
        running.wait(10)
        jq.enqueue(Job(id="waiting"))  # the queue (1 per priority) is now full
        started = time.monotonic()
        try:
            jq.enqueue(Job(id="one-too-many"), timeout=0.1)
            outcome = "accepted?!"
        except QueueFull as exc:
            outcome = f"QueueFull after {time.monotonic() - started:.2f} s: {exc}"
        release.set()
    print(f"   right: enqueue(job, timeout=0.1): {outcome}")


# -- 5. losing jobs on shutdown ---------------------------------------------------------------


def shutdown() -> None:
    print("5. Losing jobs on shutdown")
    for stage in ("naive", "final"):
        label = "wrong" if stage == "naive" else "right"
        print(f"   {label}: {stage:>5}: {run(stage, 'graceful_shutdown').figure}")
    for stage in ("naive", "final"):
        label = "wrong" if stage == "naive" else "right"
        print(f"   {label}: {stage:>5}: {run(stage, 'restart').figure}")


PITFALLS: dict[str, Callable[[], None]] = {
    "workers": too_many_workers,
    "starvation": starvation,
    "count": count,
    "timeout": timeout,
    "shutdown": shutdown,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pitfall", nargs="*", help=f"which to run: {', '.join(PITFALLS)}")
    args = parser.parse_args(argv)
    unknown = [name for name in args.pitfall if name not in PITFALLS]
    if unknown:
        parser.error(f"unknown pitfall {unknown[0]!r}; choose from {', '.join(PITFALLS)}")
    # The wrong versions fail jobs and drop them on purpose: keep their log lines out.
    logging.basicConfig(level=logging.CRITICAL)
    for name in args.pitfall or PITFALLS:
        PITFALLS[name]()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
