"""Studies behind docs/questions.md: measured answers to the spec's discussion points.

Three experiments, each returning frozen rows ready for JSON:

- :func:`worker_scaling`: jobs/s across worker counts for a pure-Python
  CPU-bound handler, a CPU-bound handler in C that releases the GIL, and an
  I/O-bound one; timed with ``jobqueue.lab.measure.throughput``.
- :func:`fairness_vs_throughput`: what ``fairness_tokens`` costs and buys:
  dispatch rate, and where HIGH and LOW jobs land in the run order.
- :func:`thundering_herd`: many jobs failing together against a service that
  is down, then overloaded, under fixed and exponential backoff, with and
  without jitter.

``python -m examples.questions`` runs them and writes docs/questions.json.
"""

from __future__ import annotations

import statistics
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

from jobqueue import final, improved
from jobqueue.lab import measure
from jobqueue.lab.scenarios.base import WAIT, Gate

__all__ = [
    "FairnessRow",
    "HerdRow",
    "ScalingRow",
    "fairness_vs_throughput",
    "thundering_herd",
    "worker_scaling",
]

# -- worker scaling ----------------------------------------------------------------------

_BLOCK = bytes(range(256)) * 256  # 64 KiB that zlib can compress


def c_bound(payload: bytes) -> None:
    """About 1 ms of zlib in C, which releases the GIL while it compresses."""
    for _ in range(3):
        zlib.compress(_BLOCK, 9)


#: name -> (handler, what it stands for, jobs per run)
HANDLERS: dict[str, tuple[Callable[[bytes], None], str, int]] = {
    "cpu-python": (measure.cpu_bound, "~0.1 ms of pure-Python arithmetic (holds the GIL)", 3_000),
    "cpu-c": (c_bound, "~1 ms of zlib in C (releases the GIL)", 400),
    "io": (measure.io_bound, "a 1 ms sleep, as a network call (releases the GIL)", 600),
}


@dataclass(frozen=True, slots=True)
class ScalingRow:
    handler: str
    workers: int
    jobs: int
    jobs_per_second: float  # median of the repetitions
    speedup: float  # over one worker, same handler


def worker_scaling(
    workers: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64),
    repetitions: int = 3,
    target: str = "final",
    scale: float = 1.0,
) -> list[ScalingRow]:
    """Jobs/s of ``target`` per handler and worker count (median of ``repetitions``).

    ``scale`` multiplies the jobs per run (each handler's count in ``HANDLERS``).
    """
    rows = []
    for name, (handler, _, full_jobs) in HANDLERS.items():
        jobs = max(1, int(full_jobs * scale))
        medians: dict[int, float] = {}
        for count in workers:
            runs = [
                measure.throughput(target, jobs, workers=count, handler=handler).jobs_per_second
                for _ in range(repetitions)
            ]
            medians[count] = statistics.median(runs)
        base = medians[workers[0]]
        rows += [ScalingRow(name, n, jobs, rate, rate / base) for n, rate in medians.items()]
    return rows


# -- fairness vs throughput ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FairnessRow:
    policy: str  # "strict (improved)" or "tokens=N"
    jobs_per_second: float  # dispatch rate of no-op jobs, one worker, median of repetitions
    high_median_position: float  # where HIGH jobs ran, in the run order (1-based)
    high_last_position: int
    low_first_position: int
    low_median_position: float


def fairness_vs_throughput(
    tokens: tuple[int, ...] = (1, 2, 5, 10, 100, 10**9),
    high: int = 4_000,
    low: int = 1_000,
    repetitions: int = 3,
) -> list[FairnessRow]:
    """``high`` HIGH and ``low`` LOW jobs queued behind one held worker, then let go.

    One worker, so the run order is exactly the order the picker chose, and a
    no-op handler, so the time is the queue's own: the cost of choosing.
    """
    policies: list[tuple[str, ModuleType, dict[str, int]]] = [("strict (improved)", improved, {})]
    # tokens=10**9 never comes due: final's own bookkeeping at strict priority.
    policies += [
        (f"tokens={t}" if t < 10**6 else "tokens=1e9 (never due)", final, {"fairness_tokens": t})
        for t in tokens
    ]
    rows = []
    for label, stage, extra in policies:
        rates = []
        for _ in range(repetitions):
            rate, order = _drain_mixed(stage, high, low, extra)
            rates.append(rate)
        high_at = [i + 1 for i, p in enumerate(order) if p == "H"]
        low_at = [i + 1 for i, p in enumerate(order) if p == "L"]
        rows.append(
            FairnessRow(
                policy=label,
                jobs_per_second=statistics.median(rates),
                high_median_position=statistics.median(high_at),
                high_last_position=high_at[-1],
                low_first_position=low_at[0],
                low_median_position=statistics.median(low_at),
            )
        )
    return rows


def _drain_mixed(
    stage: ModuleType, high: int, low: int, extra: dict[str, int]
) -> tuple[float, str]:
    """Run the mixed flood once; return jobs/s and the run order as a string of H and L."""
    order: list[str] = []
    gate = Gate()
    config = stage.Config(
        num_workers=1,
        queue_size=high + low + 1,
        handler=lambda payload: order.append(payload.decode()),
        **extra,
    )
    jq = stage.JobQueue(config)
    P = stage.Priority
    try:
        jq.enqueue_with_handler(stage.Job(id="held", priority=P.HIGH), gate)
        gate.wait_entered()
        # Interleaved arrival (say 4 HIGH, then 1 LOW): both priorities wait throughout.
        every = max(1, high // low)
        queued_low = 0
        for i in range(high):
            jq.enqueue(stage.Job(id=f"h{i}", priority=P.HIGH, payload=b"H"))
            if (i + 1) % every == 0 and queued_low < low:
                jq.enqueue(stage.Job(id=f"l{queued_low}", priority=P.LOW, payload=b"L"))
                queued_low += 1
        started = time.perf_counter()
        gate.open()
        if not jq.join(timeout=WAIT * 3):
            raise TimeoutError("the mixed flood did not drain")
        seconds = time.perf_counter() - started
    finally:
        gate.open()
        jq.close()
    return len(order) / seconds, "".join(order)


# -- thundering herd ----------------------------------------------------------------------------


class FlakyService:
    """A stand-in for a downstream service: down for ``outage`` seconds, then up
    with a capacity of ``capacity`` requests per ``window`` seconds (the rest
    get a 503).  Records every request's time.  Thread-safe."""

    def __init__(self, outage: float, capacity: int, window: float) -> None:
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self.outage, self.capacity, self.window = outage, capacity, window
        self.requests: list[tuple[float, bool]] = []  # (seconds since start, accepted)
        self._served: dict[int, int] = {}  # window index -> requests accepted in it

    def call(self, payload: bytes) -> None:
        with self._lock:
            now = time.monotonic() - self._start
            bucket = int(now / self.window)
            accepted = now >= self.outage and self._served.get(bucket, 0) < self.capacity
            if accepted:
                self._served[bucket] = self._served.get(bucket, 0) + 1
            self.requests.append((now, accepted))
        if not accepted:
            raise ConnectionError("503: down" if now < self.outage else "503: overloaded")


@dataclass(frozen=True, slots=True)
class HerdRow:
    policy: str
    clients: int
    requests: int  # every attempt, first tries included
    during_outage: int  # attempts while the service was down
    rejected_overload: int  # attempts refused for capacity after it came back
    peak_per_window: int  # most attempts in one window after the outage
    seconds_to_drain: float  # until the last job finished (completed or dead)
    dead: int  # jobs that exhausted their retries


#: policy -> (retry_base_delay, retry_max_delay, retry_jitter), seconds
HERD_POLICIES: dict[str, tuple[float, float, float]] = {
    "fixed 0.1 s": (0.1, 0.1, 0.0),
    "fixed 0.1 s + jitter": (0.1, 0.1, 0.5),
    "exponential 0.05 s": (0.05, 10.0, 0.0),
    "exponential 0.05 s + jitter": (0.05, 10.0, 0.5),
}


def thundering_herd(
    clients: int = 300,
    outage: float = 0.5,
    capacity: int = 20,
    window: float = 0.01,
    max_retries: int = 8,
) -> list[HerdRow]:
    """``clients`` jobs fail together at t=0; each policy retries them."""
    rows = []
    for policy, (base, cap, jitter) in HERD_POLICIES.items():
        service = FlakyService(outage, capacity, window)
        config = final.Config(
            num_workers=8,
            queue_size=clients,
            max_retries=max_retries,
            retry_base_delay=base,
            retry_max_delay=cap,
            retry_jitter=jitter,
            handler=service.call,
        )
        with final.JobQueue(config) as jq:
            for i in range(clients):
                jq.enqueue(final.Job(id=f"client-{i}"))
            if not jq.join(timeout=WAIT * 3):
                raise TimeoutError(f"{policy}: the retries did not drain")
            dead = jq.metrics().failed
        times = [t for t, _ in service.requests]
        after = [int(t / window) for t in times if t >= outage]
        per_window: dict[int, int] = {}
        for bucket in after:
            per_window[bucket] = per_window.get(bucket, 0) + 1
        rows.append(
            HerdRow(
                policy=policy,
                clients=clients,
                requests=len(times),
                during_outage=sum(t < outage for t in times),
                rejected_overload=sum(t >= outage and not ok for t, ok in service.requests),
                peak_per_window=max(per_window.values(), default=0),
                seconds_to_drain=max(times, default=0.0),
                dead=dead,
            )
        )
    return rows
