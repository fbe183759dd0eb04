"""The report's performance panel: every stage and ThreadPoolExecutor, side by side.

The panel is a small ``jobqueue bench``, run by the bench's own code: the
steps come from ``bench_plan.plan`` (repetitions one after another, targets
in an order rotated from one repetition to the next, so no target is always
first), and the figures from ``bench_summary.summarize`` (the median of the
repetitions; the ratio to ThreadPoolExecutor taken within each repetition,
then the median of those ratios).  Only the sizes are the panel's own, small
enough for the whole report to stay under a minute.  A figure from one run on
a shared machine is noisy: ``make bench`` takes the careful figures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jobqueue.lab import bench_plan, measure
from jobqueue.lab.bench_summary import summarize

__all__ = ["QUICK", "STANDARD", "PerfSizes", "Performance", "TargetFigures", "measure_all"]


@dataclass(frozen=True, slots=True)
class PerfSizes:
    throughput_jobs: int  # no-op jobs per throughput run
    repetitions: int  # throughput runs per target; the median is shown
    latency_rate: float  # jobs/s the producer paces itself to
    latency_jobs: int
    memory_jobs: int  # jobs held queued while tracemalloc counts

    @property
    def workers(self) -> int:
        return measure.WORKERS

    def plan(self, targets: tuple[str, ...]) -> list[bench_plan.Step]:
        """The bench's steps at these sizes: throughput repeated, latency and memory once."""
        sizes = bench_plan.Sizes(
            throughput_jobs=self.throughput_jobs,
            latency=((self.latency_rate, self.latency_jobs),),
            memory_jobs=self.memory_jobs,
        )
        throughput = bench_plan.plan(sizes, self.repetitions, ["throughput"], targets)
        return throughput + bench_plan.plan(sizes, 1, ["latency", "memory"], targets)


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
    vs_threadpool: float | None  # median of this / threadpool, within each repetition
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
    """How many measurements ``measure_all`` takes."""
    return len(sizes.plan(targets))


def measure_all(
    sizes: PerfSizes = STANDARD,
    targets: tuple[str, ...] = TARGETS,
    progress: Callable[[int, str], object] = lambda done, label: None,
) -> Performance:
    """Measure every target.  ``progress(done, label)`` is called before each measurement."""
    outcomes = bench_plan.execute(sizes.plan(targets), lambda done, s: progress(done, s.label))
    sections = summarize(outcomes)
    throughput = _by_target(sections, "throughput")
    latency = _by_target(sections, "latency")
    memory = _by_target(sections, "memory")
    rows = []
    for target in targets:
        rate, lat, mem = throughput.get(target, {}), latency.get(target, {}), memory.get(target, {})
        reasons = [row["reason"] for row in (rate, lat, mem) if row.get("reason")]
        rows.append(
            TargetFigures(
                target=target,
                jobs_per_second=rate.get("jobs_per_second"),
                vs_threadpool=rate.get("vs_threadpool"),
                p50_ms=_ms(lat.get("p50")),
                p99_ms=_ms(lat.get("p99")),
                bytes_per_job=mem.get("bytes_per_job"),
                error=reasons[0] if reasons else None,
            )
        )
    return Performance(tuple(rows), sizes)


def _by_target(sections: dict[str, Any], section: str) -> dict[str, dict[str, Any]]:
    return {row["target"]: row for row in sections.get(section, {}).get("rows", [])}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e3
