"""Profiles of one target under the realistic profile: where each job's time goes.

``jobqueue bench``'s realistic section says how fast each target is; this says
why, per job, with two measurements:

- :func:`serial`: the queue's own Python code with no thread competing.  Every
  worker is first held in its handler on a ``threading.Event``, so while the
  producer hands over ``jobs`` jobs (*intake*) no worker takes one and none is
  woken; then the event is set and the held workers drain the queued jobs
  (*run*), the producer idle.  What each phase costs per job is what the
  queue's code costs without a producer and workers taking turns.
- :func:`contended`: the realistic throughput run itself, one producer and
  every worker running, with the process's CPU time and context switches
  (``getrusage``) and the producer thread's own CPU time and switches over its
  enqueue loop.  What the producer spends off the CPU while it enqueues is
  time it waited: for the GIL (a worker holds it; a durable enqueue's
  ``os.write`` releases it and must win it back) or for a lock.

Both also time the garbage collector (``gc.callbacks``): a backlog of queued
jobs is a heap the collector walks, and for the pool, whose every ``submit``
builds a ``Future`` with its own ``Condition``, that walk is most of its intake.

Nothing here prints or repeats; ``bench_plan`` schedules, ``bench_summary``
takes medians.
"""

from __future__ import annotations

import contextlib
import gc
import resource
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from jobqueue.lab.measure import WORKERS, counting
from jobqueue.lab.measure_targets import open_target
from jobqueue.vocabulary import Handler

__all__ = ["HOLD", "ContendedResult", "SerialResult", "contended", "serial"]

#: The payload of the jobs that hold a worker; every other job is counted.
HOLD = b"hold"


@dataclass(frozen=True, slots=True)
class SerialResult:
    """``jobs`` jobs handed over while every worker was held, then drained."""

    target: str
    jobs: int
    batch: int  # 0: one enqueue (submit) per job; n: enqueue_many, n jobs a call
    intake_seconds: float  # the producer's loop, no worker competing
    intake_cpu_seconds: float  # the producer thread's CPU time over that loop
    intake_gc_seconds: float  # of which the garbage collector
    run_seconds: float  # from setting the event to the return of join()
    run_cpu_seconds: float  # the process's user+sys CPU time over the run


@dataclass(frozen=True, slots=True)
class ContendedResult:
    """The realistic throughput run, with what ``getrusage`` saw during it."""

    target: str
    jobs: int
    seconds: float  # first enqueue to the return of join()
    cpu_seconds: float  # user+sys of every thread of the process
    voluntary: int  # context switches: a thread went to sleep (futex, I/O)
    involuntary: int  # context switches: the kernel took the CPU away
    gc_seconds: float  # the garbage collector, in any thread
    producer_seconds: float  # the producer's enqueue loop, wall clock
    producer_cpu_seconds: float  # the producer thread's CPU time over that loop
    producer_voluntary: int  # times the producer thread slept during that loop
    producer_involuntary: int  # times the kernel took the CPU from it during that loop


class _GcClock:
    """Seconds spent in the garbage collector, whichever thread triggers it.

    The collector holds the GIL from "start" to "stop", so two collections
    never overlap and one clock is enough.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self._began = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._began


@contextlib.contextmanager
def _gc_clock() -> Iterator[_GcClock]:
    clock = _GcClock()
    gc.callbacks.append(clock)
    try:
        yield clock
    finally:
        gc.callbacks.remove(clock)


def _held(count: Handler) -> tuple[Handler, threading.Event, threading.Semaphore]:
    """``count`` behind a gate: a job whose payload is ``HOLD`` waits for the event.

    Waiting on an Event sleeps on a lock, off the GIL: a held worker neither
    competes with the producer nor needs waking for the jobs queued meanwhile.
    """
    gate = threading.Event()
    entered = threading.Semaphore(0)

    def handler(payload: bytes) -> None:
        if payload == HOLD:
            entered.release()
            gate.wait()
        else:
            count(payload)

    return handler, gate, entered


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def serial(target: str, jobs: int, workers: int = WORKERS, *, batch: int = 0) -> SerialResult:
    """Intake, then run, of ``jobs`` realistic jobs, each phase alone (see the module doc).

    The queue holds every job (``queue_size``), so the producer never waits
    for room; priorities are mixed and the handler counts under a lock, as in
    the realistic run.
    """
    handler, gate, entered = _held(counting())
    size = jobs + workers
    with open_target(target, handler, workers=workers, queue_size=size, mixed=True) as t:
        try:
            for i in range(workers):
                t.put(t.item(i, HOLD))
            for _ in range(workers):
                entered.acquire()  # every worker now waits on the gate
            items = [t.item(workers + i, b"x" * 16) for i in range(jobs)]
            with _gc_clock() as collector:
                if batch:
                    batches = [items[k : k + batch] for k in range(0, jobs, batch)]
                    put_many = t.put_many
                    cpu = time.thread_time()
                    start = time.perf_counter()
                    for chunk in batches:
                        put_many(chunk)
                else:
                    put = t.put
                    cpu = time.thread_time()
                    start = time.perf_counter()
                    for item in items:
                        put(item)
                intake = time.perf_counter() - start
                intake_cpu = time.thread_time() - cpu
            process_cpu = _cpu()
            start = time.perf_counter()
        finally:
            gate.set()  # also on failure: a held worker would block close()
        t.join()
        run = time.perf_counter() - start
        run_cpu = _cpu() - process_cpu
    return SerialResult(target, jobs, batch, intake, intake_cpu, collector.seconds, run, run_cpu)


def contended(target: str, jobs: int, workers: int = WORKERS) -> ContendedResult:
    """The realistic run (one ``enqueue`` per job, default ``queue_size``), with its usage."""
    thread = resource.RUSAGE_THREAD  # Linux: the calling thread alone
    with open_target(target, counting(), workers=workers, mixed=True) as t:
        items = [t.item(i, b"x" * 16) for i in range(jobs)]
        put = t.put
        with _gc_clock() as collector:
            before = resource.getrusage(resource.RUSAGE_SELF)
            mine = resource.getrusage(thread)
            cpu = time.thread_time()
            start = time.perf_counter()
            for item in items:
                put(item)
            produced = time.perf_counter() - start
            producer_cpu = time.thread_time() - cpu
            after_loop = resource.getrusage(thread)
            t.join()
            seconds = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_SELF)
    return ContendedResult(
        target=target,
        jobs=jobs,
        seconds=seconds,
        cpu_seconds=(after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        voluntary=after.ru_nvcsw - before.ru_nvcsw,
        involuntary=after.ru_nivcsw - before.ru_nivcsw,
        gc_seconds=collector.seconds,
        producer_seconds=produced,
        producer_cpu_seconds=producer_cpu,
        producer_voluntary=after_loop.ru_nvcsw - mine.ru_nvcsw,
        producer_involuntary=after_loop.ru_nivcsw - mine.ru_nivcsw,
    )
