"""Measurement primitives: throughput, latency and memory of one target.

Each function opens a fresh target (a stage, a durable ``final``, or
ThreadPoolExecutor: see ``measure_targets``), measures one thing, closes the
target and returns a frozen result.  Nothing here prints or repeats: callers
(``jobqueue bench``, ``jobqueue report``) take several repetitions, medians,
and ratios within one repetition.

How each figure is taken:

- throughput: ``jobs`` no-op jobs are built first, then the clock runs from
  the first ``enqueue`` to the return of ``join()`` (last completion).
- the realistic profile (issue 10's workload): the same, with a handler that
  counts completions under a shared ``threading.Lock`` (``counting()``, the
  pool given the same), priorities HIGH/MEDIUM/LOW in turn, and optionally
  ``enqueue_many`` in batches.
- latency: from the ``perf_counter()`` read just before ``enqueue`` to the
  one read first thing in the handler, which stores it by job index in a
  preallocated list (no lock in the handler).  The producer paces itself by
  sleeping, never by spinning: a spinning producer holds the GIL and starves
  the very workers being timed.
- memory per job: ``tracemalloc`` bytes the queue holds per waiting job
  (the caller's ``Job`` and payload not counted), with every worker held.
- flood RSS: in a fresh process, so one target's heap does not inflate the
  next one's figure.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import subprocess
import sys
import threading
import time
import tracemalloc
from dataclasses import dataclass

from jobqueue.lab.measure_targets import (
    DURABLE_TARGETS,
    MEMORY_TARGETS,
    TARGETS,
    Target,
    TargetUnavailable,
    open_target,
)
from jobqueue.vocabulary import Handler

__all__ = [
    "DURABLE_TARGETS",
    "MEMORY_TARGETS",
    "PACINGS",
    "TARGETS",
    "WORKERS",
    "FloodResult",
    "LatencyResult",
    "TargetUnavailable",
    "ThroughputResult",
    "counting",
    "cpu_bound",
    "flood_rss",
    "io_bound",
    "latency",
    "memory_per_job",
    "no_op",
    "throughput",
]

#: Worker threads per target, unless a measurement says otherwise.
WORKERS = 4

#: How ``latency()``'s producer waits between jobs.
PACINGS = ("sleep", "spin")


# -- handlers ---------------------------------------------------------------------


def no_op(payload: bytes) -> None:
    """The handler of throughput runs: all the time measured is the queue's."""


def counting() -> Handler:
    """A fresh handler that counts its calls under a shared lock: what a real
    handler does (touch shared state), and what makes workers contend."""
    lock = threading.Lock()
    done = [0]

    def handler(payload: bytes) -> None:
        with lock:
            done[0] += 1

    return handler


def cpu_bound(payload: bytes) -> None:
    """About 0.1 ms of pure-Python arithmetic, holding the GIL throughout."""
    total = 0
    for i in range(2_000):
        total += i * i


def io_bound(payload: bytes) -> None:
    """A 1 ms wait that releases the GIL, as a network call would."""
    time.sleep(0.001)


# -- results ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ThroughputResult:
    """``jobs`` jobs through ``target``, first enqueue to last completion."""

    target: str
    jobs: int
    workers: int
    producers: int  # threads enqueueing concurrently
    seconds: float

    @property
    def jobs_per_second(self) -> float:
        return self.jobs / self.seconds if self.seconds > 0 else float("inf")


@dataclass(frozen=True, slots=True)
class LatencyResult:
    """Enqueue-to-handler-start latency at a paced rate, in seconds."""

    target: str
    rate: float  # jobs/s asked for
    achieved_rate: float  # jobs/s the producer managed
    jobs: int
    workers: int
    switch_interval: float  # sys.getswitchinterval() during the run
    pacing: str  # how the producer waited between jobs: "sleep" or "spin"
    p50: float
    p99: float
    max: float
    mean: float


@dataclass(frozen=True, slots=True)
class FloodResult:
    """Resident memory of a process offered ``offered`` jobs faster than it runs them."""

    target: str
    offered: int
    accepted: int  # the rest were refused (QueueFull) by a bounded queue
    rss_before: int  # bytes, VmRSS after the queue opened
    rss_after: int  # bytes, VmRSS after the last offer
    rss_peak: int  # bytes, VmHWM

    @property
    def growth(self) -> int:
        return self.rss_after - self.rss_before


# -- throughput ---------------------------------------------------------------------


def throughput(
    target: str,
    jobs: int,
    workers: int = WORKERS,
    payload: bytes = b"x" * 16,
    *,
    handler: Handler = no_op,
    producers: int = 1,
    mixed: bool = False,
    batch: int = 0,
) -> ThroughputResult:
    """Time ``jobs`` jobs through ``target``: first enqueue to last completion.

    With ``producers`` > 1, that many threads enqueue a share each, all
    released at once; this is how group commit is measured.  With ``batch``,
    the one producer hands jobs over ``batch`` at a time (``enqueue_many``).
    ``mixed``: priorities HIGH, MEDIUM, LOW in turn.
    """
    _check_count("jobs", jobs)
    _check_count("producers", producers)
    with open_target(target, handler, workers=workers, mixed=mixed) as t:
        items = [t.item(i, payload) for i in range(jobs)]
        if batch:
            batches = [items[k : k + batch] for k in range(0, jobs, batch)]
            put_many = t.put_many
            start = time.perf_counter()
            for chunk in batches:
                put_many(chunk)
        elif producers == 1:
            put = t.put
            start = time.perf_counter()
            for item in items:
                put(item)
        else:
            start = _produce_concurrently(t, items, producers)
        t.join()
        seconds = time.perf_counter() - start
    return ThroughputResult(target, jobs, workers, producers, seconds)


def _produce_concurrently(t: Target, items: list[object], producers: int) -> float:
    """Enqueue ``items`` from ``producers`` threads; return the perf_counter at the start."""
    go = threading.Barrier(producers + 1)
    errors: list[BaseException] = []

    def produce(share: list[object]) -> None:
        put = t.put
        go.wait()
        try:
            for item in share:
                put(item)
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    threads = [
        threading.Thread(target=produce, args=(items[k::producers],), name=f"bench-producer-{k}")
        for k in range(producers)
    ]
    for thread in threads:
        thread.start()
    go.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return start


# -- latency --------------------------------------------------------------------------


def latency(
    target: str,
    rate: float,
    jobs: int,
    workers: int = WORKERS,
    *,
    switch_interval: float | None = None,
    pacing: str = "sleep",
    realistic: bool = False,
) -> LatencyResult:
    """Enqueue ``jobs`` jobs at ``rate`` jobs/s and time each from enqueue to handler start.

    ``switch_interval``, if given, replaces ``sys.getswitchinterval()`` for the
    run: how long a thread that wants the GIL may have to wait for it.
    ``pacing="spin"`` makes the producer busy-wait between jobs instead of
    sleeping, as a producer busy with other Python work would: it shows what
    holding the GIL does to the workers.  ``realistic``: the handler also
    counts under a shared lock, and priorities are mixed (the realistic profile).
    """
    if pacing not in PACINGS:
        raise ValueError(f"pacing must be one of {PACINGS}, got {pacing!r}")
    _check_count("jobs", jobs)
    if not rate > 0:
        raise ValueError(f"rate must be > 0 jobs/s, got {rate!r}")
    enqueued = [0.0] * jobs
    started = [0.0] * jobs
    clock = time.perf_counter

    def handler(payload: bytes) -> None:
        # The right side runs first: the clock is read before the payload is parsed.
        started[int(payload)] = clock()

    if realistic:
        count, stamp = counting(), handler

        def handler(payload: bytes) -> None:
            stamp(payload)
            count(payload)

    previous = sys.getswitchinterval()
    if switch_interval is not None:
        sys.setswitchinterval(switch_interval)
    try:
        with open_target(target, handler, workers=workers, mixed=realistic) as t:
            items = [t.item(i, str(i).encode()) for i in range(jobs)]
            put, sleep, interval, spin = t.put, time.sleep, 1.0 / rate, pacing == "spin"
            begin = clock()
            for i, item in enumerate(items):
                # Sleep until job i is due.  Sleeps overshoot by tens of µs, so
                # at high rates the loop falls behind and then catches up without
                # sleeping: the mean rate holds, as with real bursty producers.
                due = begin + i * interval
                if spin:
                    while clock() < due:
                        pass
                elif (wait := due - clock()) > 0:
                    sleep(wait)
                enqueued[i] = clock()
                put(item)
            produced = clock() - begin
            t.join()
        used_interval = sys.getswitchinterval()
    finally:
        sys.setswitchinterval(previous)
    waits = sorted(s - e for s, e in zip(started, enqueued, strict=True))
    return LatencyResult(
        target=target,
        rate=rate,
        achieved_rate=jobs / produced if produced > 0 else float("inf"),
        jobs=jobs,
        workers=workers,
        switch_interval=used_interval,
        pacing=pacing,
        p50=_quantile(waits, 0.50),
        p99=_quantile(waits, 0.99),
        max=waits[-1],
        mean=sum(waits) / jobs,
    )


def _quantile(ordered: list[float], q: float) -> float:
    """The nearest-rank quantile of a sorted list."""
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- memory -----------------------------------------------------------------------------


def memory_per_job(target: str, jobs: int, workers: int = WORKERS) -> float:
    """Bytes ``target`` holds per waiting job, by ``tracemalloc``.

    Every worker is held in its handler, so the jobs stay queued; the queue
    is made big enough to hold them all.  The jobs (or payloads) are built
    before tracing starts: what is counted is what the queue adds.
    """
    _check_count("jobs", jobs)
    release = threading.Event()
    entered = threading.Semaphore(0)

    def held(payload: bytes) -> None:
        entered.release()
        release.wait()

    with open_target(target, held, workers=workers, queue_size=jobs + workers) as t:
        try:
            items = [t.item(i, b"x" * 16) for i in range(workers + jobs)]
            for item in items[:workers]:
                t.put(item)
            for _ in range(workers):
                entered.acquire()  # every worker now holds a job; the rest will wait
            gc.collect()
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                for item in items[workers:]:
                    t.put(item)
                gc.collect()
                after = tracemalloc.get_traced_memory()[0]
            finally:
                tracemalloc.stop()
        finally:
            release.set()
        t.join()
    return (after - before) / jobs


def flood_rss(
    target: str, jobs: int = 100_000, workers: int = WORKERS, handler_seconds: float = 0.01
) -> FloodResult:
    """Offer ``jobs`` jobs as fast as possible to a slow handler, in a fresh process.

    Each job is offered without waiting: a bounded queue refuses what it has
    no room for (``QueueFull``); an unbounded one keeps everything, and grows.
    Only ``target``'s own jobs are in the process: each run spawns a new one.
    """
    _check_count("jobs", jobs)
    # A new interpreter, not multiprocessing: that would re-run the caller's __main__.
    code = "import sys, jobqueue.lab.measure as m; m._flood_child(*sys.argv[1:])"
    args = [target, str(jobs), str(workers), repr(handler_seconds)]
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        error = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        if "TargetUnavailable" in error[0]:
            raise TargetUnavailable(error[0].split(": ", 1)[-1])
        raise RuntimeError(f"flood_rss({target!r}) failed in its subprocess: {error[0]}")
    return FloodResult(**json.loads(done.stdout))


def _flood_child(target: str, jobs: str, workers: str, handler_seconds: str) -> None:
    """The subprocess of ``flood_rss``: the result goes to the parent as JSON on stdout."""
    result = _flood(target, int(jobs), int(workers), float(handler_seconds))
    sys.stdout.write(json.dumps(dataclasses.asdict(result)))


def _flood(target: str, jobs: int, workers: int, handler_seconds: float) -> FloodResult:
    def slow(payload: bytes) -> None:
        time.sleep(handler_seconds)

    with open_target(target, slow, workers=workers) as t:
        gc.collect()
        before = _rss("VmRSS")
        accepted = 0
        payload = b"x" * 16
        for i in range(jobs):
            # Built one by one: a prebuilt list would itself weigh as much as naive's queue.
            accepted += t.offer(t.item(i, payload))
        after = _rss("VmRSS")
        result = FloodResult(target, jobs, accepted, before, after, _rss("VmHWM"))
    # Closing dropped whatever still waited (the pool cancels its pending futures).
    return result


def _rss(field: str) -> int:
    """A field of /proc/self/status (VmRSS, VmHWM), in bytes; 0 where there is no /proc."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
