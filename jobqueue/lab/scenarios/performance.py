"""The report's performance panel: every stage and ThreadPoolExecutor, side by side.

The timing is ``jobqueue.lab.measure``'s (the same code as ``jobqueue bench``),
at sizes small enough for the whole report to stay under a minute.  A
figure from one run on a shared machine is noisy: throughput is the median
of a few repetitions, taken in an order that rotates so that no target is
always first, and the ratio to ThreadPoolExecutor is the ratio of the two
medians, so the panel's columns agree.  ``make bench`` takes the careful figures.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

from jobqueue.lab import measure

__all__ = ["QUICK", "STANDARD", "PerfSizes", "Performance", "TargetFigures", "measure_all"]


@dataclass(frozen=True, slots=True)
class PerfSizes:
    throughput_jobs: int  # no-op jobs per throughput run
    repetitions: int  # throughput runs per target; the median is shown
    latency_rate: float  # jobs/s the producer paces itself to
    latency_jobs: int
    memory_jobs: int  # jobs held queued while tracemalloc counts
    workers: int = 4


STANDARD = PerfSizes(
    throughput_jobs=20_000, repetitions=3, latency_rate=2_000, latency_jobs=2_000, memory_jobs=5_000
)
QUICK = PerfSizes(
    throughput_jobs=300, repetitions=1, latency_rate=2_000, latency_jobs=100, memory_jobs=200
)

#: The targets of the panel, in the order shown: the stages, final with its
#: log at the default fsync policy, and the standard library's pool.
TARGETS = ("naive", "improved", "final", "final-durable-interval", "threadpool")
BASELINE = "threadpool"


@dataclass(frozen=True, slots=True)
class TargetFigures:
    """The figures of one target; None where it could not be measured."""

    target: str
    jobs_per_second: float | None  # median of the repetitions
    vs_threadpool: float | None  # this median / threadpool's median, same run
    p50_ms: float | None  # enqueue-to-start latency at the paced rate
    p99_ms: float | None
    bytes_per_job: float | None  # memory the queue holds per waiting job
    error: str | None = None  # why a figure is missing


@dataclass(frozen=True, slots=True)
class Performance:
    """The whole panel, with the settings that produced it."""

    rows: tuple[TargetFigures, ...]
    sizes: PerfSizes

    def as_dict(self) -> dict[str, object]:
        return {
            "settings": {
                "throughput": f"{self.sizes.throughput_jobs} no-op jobs, "
                f"{self.sizes.workers} workers, median of {self.sizes.repetitions}",
                "latency": f"{self.sizes.latency_jobs} jobs paced at "
                f"{self.sizes.latency_rate:g} jobs/s, enqueue to handler start",
                "memory": f"tracemalloc bytes per waiting job, {self.sizes.memory_jobs} jobs",
            },
            "rows": [
                {
                    "target": r.target,
                    # Enough digits that a reader who formats them as the
                    # panel does (2 decimals) gets the panel's figures.
                    "jobs_per_second": _round(r.jobs_per_second, 0),
                    "vs_threadpool": _round(r.vs_threadpool, 6),
                    "p50_ms": _round(r.p50_ms, 6),
                    "p99_ms": _round(r.p99_ms, 6),
                    "bytes_per_job": _round(r.bytes_per_job, 0),
                    "error": r.error,
                }
                for r in self.rows
            ],
        }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def steps(sizes: PerfSizes, targets: tuple[str, ...] = TARGETS) -> int:
    """How many times ``measure_all`` calls ``progress``: one per measurement."""
    return len(targets) * (sizes.repetitions + 2)


def measure_all(
    sizes: PerfSizes = STANDARD,
    targets: tuple[str, ...] = TARGETS,
    progress: Callable[[str], None] = lambda step: None,
) -> Performance:
    """Measure every target.  ``progress(description)`` is called after each measurement."""
    runs: dict[str, list[float]] = {t: [] for t in targets}
    errors: dict[str, str] = {}
    for rep in range(sizes.repetitions):
        shift = rep % len(targets)
        for target in targets[shift:] + targets[:shift]:  # rotated: no target always first
            if target not in errors:
                try:
                    result = measure.throughput(
                        target, sizes.throughput_jobs, workers=sizes.workers
                    )
                    runs[target].append(result.jobs_per_second)
                except Exception as exc:  # TargetUnavailable, or a target that broke
                    errors[target] = f"{type(exc).__name__}: {exc}"
            progress(f"throughput {target}")
    latencies: dict[str, tuple[float, float]] = {}
    memory: dict[str, float] = {}
    for target in targets:
        if target not in errors:
            try:
                lat = measure.latency(
                    target, sizes.latency_rate, sizes.latency_jobs, workers=sizes.workers
                )
                latencies[target] = (lat.p50 * 1e3, lat.p99 * 1e3)
            except Exception as exc:
                errors[target] = f"{type(exc).__name__}: {exc}"
        progress(f"latency {target}")
        if target not in errors:
            try:
                memory[target] = measure.memory_per_job(
                    target, sizes.memory_jobs, workers=sizes.workers
                )
            except Exception as exc:
                errors[target] = f"{type(exc).__name__}: {exc}"
        progress(f"memory {target}")
    medians = {t: statistics.median(r) for t, r in runs.items() if r}
    baseline = medians.get(BASELINE)
    rows = []
    for target in targets:
        mine = medians.get(target)
        p50, p99 = latencies.get(target, (None, None))
        rows.append(
            TargetFigures(
                target=target,
                jobs_per_second=mine,
                vs_threadpool=(
                    mine / baseline
                    if mine is not None and baseline and target != BASELINE
                    else None
                ),
                p50_ms=p50,
                p99_ms=p99,
                bytes_per_job=memory.get(target),
                error=errors.get(target),
            )
        )
    return Performance(tuple(rows), sizes)
