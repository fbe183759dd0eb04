"""What ``jobqueue bench`` runs, and how its repetitions become figures.

A run is a flat list of :class:`Step` s, built by :func:`plan`: every section
once per repetition, repetitions one after another, and within a repetition
the targets in an order rotated from one repetition to the next, so no target
is always the first (cold) or the last (after the heap has grown).
:func:`execute` runs the steps and gathers their results by row, ready for
``bench_summary``.

Nothing here prints: ``bench.py`` renders.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from jobqueue.lab import floor, measure, measure_profile
from jobqueue.lab.measure import TARGETS

__all__ = [
    "FULL",
    "QUICK",
    "SECTIONS",
    "Outcome",
    "Sizes",
    "Step",
    "default_fsync",
    "execute",
    "plan",
]

logger = logging.getLogger(__name__)

#: "realistic" is the headline (issue 10's workload); "profile" says where its time
#: goes; "throughput" the no-op figures.
SECTIONS = ("realistic", "profile", "throughput", "latency", "memory", "scaling", "group-commit")

#: What the realistic profile compares: final in memory and durable, and the pool.
REALISTIC_TARGETS = ("final", "final-durable-interval", "threadpool")


def default_fsync() -> str:
    """``final.Config``'s default fsync policy: the durable target the goals are about."""
    from jobqueue.final import Config

    return Config().fsync


@dataclass(frozen=True, slots=True)
class Sizes:
    """How big each measurement is.  A run left at its default (0 or empty) is skipped."""

    throughput_jobs: int
    latency: tuple[tuple[float, int], ...]  # (jobs/s, jobs) pairs
    memory_jobs: int  # tracemalloc
    always_jobs: int = 0  # fsync="always" pays an fsync per lone enqueue: fewer jobs, same rate
    gil_rate: float = 2_000  # the spinning-producer runs
    gil_jobs: int = 0
    flood_jobs: int = 0  # RSS, in a fresh process per target
    scaling_workers: tuple[int, ...] = ()
    scaling_jobs: int = 0
    group_jobs: int = 0
    group_producers: tuple[int, ...] = ()
    realistic_jobs: int = 0
    realistic_batch: int = 100  # enqueue_many's batch size in the realistic profile
    profile_jobs: int = 0  # the realistic profile's jobs, per phase of measure_profile


FULL = Sizes(
    realistic_jobs=50_000,
    profile_jobs=50_000,
    throughput_jobs=50_000,
    always_jobs=10_000,
    latency=((2_000, 3_000), (20_000, 10_000)),
    gil_rate=2_000,
    gil_jobs=2_000,
    memory_jobs=10_000,
    flood_jobs=100_000,
    scaling_workers=(1, 2, 4, 8, 16, 32),
    scaling_jobs=1_000,
    group_jobs=3_000,
    group_producers=(1, 4, 16),
)

QUICK = Sizes(
    realistic_jobs=300,
    profile_jobs=300,
    throughput_jobs=300,
    always_jobs=100,
    latency=((2_000, 100), (20_000, 200)),
    gil_rate=2_000,
    gil_jobs=50,
    memory_jobs=100,
    flood_jobs=500,
    scaling_workers=(1, 4),
    scaling_jobs=20,
    group_jobs=32,
    group_producers=(1, 4),
)

#: ``sys.setswitchinterval`` values for the spinning-producer runs (the default is 5 ms).
GIL_SWITCH_INTERVALS = (0.005, 0.0005)


@dataclass(frozen=True, slots=True)
class Step:
    """One measurement: ``key`` names its row within ``section``."""

    section: str
    key: tuple[Any, ...]
    rep: int
    run: Callable[[], Any]

    @property
    def label(self) -> str:
        return f"{self.section}: " + " ".join(str(part) for part in self.key)


@dataclass(slots=True)
class Outcome:
    """The results of one row, one per repetition, or why it has none."""

    results: list[Any] = field(default_factory=list)
    unavailable: str | None = None  # the target cannot be opened here
    error: str | None = None  # the measurement failed: a bug


def _rotate(items: tuple[str, ...], rep: int) -> list[str]:
    if not items:
        return []
    k = rep % len(items)
    return [*items[k:], *items[:k]]


def plan(
    sizes: Sizes,
    repeat: int,
    sections: Iterable[str] = SECTIONS,
    targets: Iterable[str] = TARGETS,
) -> list[Step]:
    """Every step of a run, in the order to run them, for ``targets`` only."""
    chosen = [s for s in SECTIONS if s in set(sections)]
    mine = tuple(t for t in TARGETS if t in set(targets))
    durable_default = f"final-durable-{default_fsync()}"
    steps: list[Step] = []
    for rep in range(repeat):
        if "realistic" in chosen and sizes.realistic_jobs:
            steps += _realistic(sizes, rep, _only(REALISTIC_TARGETS, mine))
        if "profile" in chosen and sizes.profile_jobs:
            steps += _profile(sizes, rep, _only(REALISTIC_TARGETS, mine))
        if "throughput" in chosen:
            for target in _rotate(mine, rep):
                always = target.endswith("always") and sizes.always_jobs
                jobs = sizes.always_jobs if always else sizes.throughput_jobs
                run = _bind(measure.throughput, target, jobs)
                steps.append(Step("throughput", (target,), rep, run))
        if "latency" in chosen:
            for rate, jobs in sizes.latency:
                for target in _rotate(mine, rep):
                    run = _bind(measure.latency, target, rate, jobs)
                    steps.append(Step("latency", (target, rate, "sleep", None), rep, run))
            for target in _only(("final", "threadpool"), mine) if sizes.gil_jobs else ():
                for interval in GIL_SWITCH_INTERVALS:
                    run = _bind(
                        measure.latency,
                        target,
                        sizes.gil_rate,
                        sizes.gil_jobs,
                        pacing="spin",
                        switch_interval=interval,
                    )
                    steps.append(
                        Step("latency", (target, sizes.gil_rate, "spin", interval), rep, run)
                    )
        if "memory" in chosen:
            for target in _rotate(mine, rep):
                run = _bind(measure.memory_per_job, target, sizes.memory_jobs)
                steps.append(Step("memory", (target,), rep, run))
        if "scaling" in chosen:
            for kind, handler in (("cpu", measure.cpu_bound), ("io", measure.io_bound)):
                for target in _rotate(_only(("final", "threadpool"), mine), rep):
                    for workers in sizes.scaling_workers:
                        run = _bind(
                            measure.throughput,
                            target,
                            sizes.scaling_jobs,
                            workers,
                            handler=handler,
                        )
                        steps.append(Step("scaling", (target, kind, workers), rep, run))
        if "group-commit" in chosen:
            for target in _only(("final-durable-always", durable_default), mine):
                for producers in sizes.group_producers:
                    run = _bind(measure.throughput, target, sizes.group_jobs, producers=producers)
                    steps.append(Step("group-commit", (target, producers), rep, run))
    if "memory" in chosen and sizes.flood_jobs:  # RSS once: a process each, and barely varies
        flooded = ("naive", "improved", "final", durable_default, "threadpool")
        for target in _only(flooded, mine):
            run = _bind(measure.flood_rss, target, sizes.flood_jobs)
            steps.append(Step("flood", (target,), 0, run))
    return steps


def _realistic(sizes: Sizes, rep: int, targets: tuple[str, ...]) -> list[Step]:
    """One repetition of the realistic profile: a counting handler (a shared lock),
    mixed priorities; single enqueues (and the two floors), then batches, then
    paced latency."""
    steps = []
    jobs, batch = sizes.realistic_jobs, sizes.realistic_batch
    # The floors (lab/floor.py) beside final: what a queue without its features reaches.
    floors = tuple(floor.FLOORS) if "final" in targets else ()
    for target in _rotate((*targets, *floors), rep):
        if target in floor.FLOORS:
            run = _bind(floor.throughput, jobs, floor.FLOORS[target])
        else:
            run = _bind(measure.throughput, target, jobs, handler=measure.counting(), mixed=True)
        steps.append(Step("realistic", (target, 1), rep, run))
    for target in _rotate(_only(("final", "final-durable-interval"), targets), rep):
        run = _bind(
            measure.throughput, target, jobs, handler=measure.counting(), mixed=True, batch=batch
        )
        steps.append(Step("realistic", (target, batch), rep, run))
    for rate, count in sizes.latency:
        for target in _rotate(targets, rep):
            run = _bind(measure.latency, target, rate, count, realistic=True)
            steps.append(Step("realistic-latency", (target, rate), rep, run))
    return steps


def _profile(sizes: Sizes, rep: int, targets: tuple[str, ...]) -> list[Step]:
    """One repetition of the profile: per target, the serial phases (4 workers held,
    then draining; 1 worker; batches for final), then the contended run."""
    steps = []
    jobs, batch = sizes.profile_jobs, sizes.realistic_batch
    for target in _rotate(targets, rep):
        for workers in (measure.WORKERS, 1):
            run = _bind(measure_profile.serial, target, jobs, workers)
            steps.append(Step("profile", (target, "serial", 1, workers), rep, run))
        if target != "threadpool":  # the pool has no batch call
            run = _bind(measure_profile.serial, target, jobs, batch=batch)
            steps.append(Step("profile", (target, "serial", batch, measure.WORKERS), rep, run))
        run = _bind(measure_profile.contended, target, jobs)
        steps.append(Step("profile", (target, "contended"), rep, run))
    return steps


def _only(wanted: tuple[str, ...], targets: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(t for t in wanted if t in targets)


def _bind(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[[], Any]:
    return lambda: fn(*args, **kwargs)


def execute(
    steps: list[Step], before_step: Callable[[int, Step], object] = lambda done, step: None
) -> dict[tuple[str, tuple[Any, ...]], Outcome]:
    """Run ``steps`` in order; a target that cannot open, or a failing step, marks its row.

    ``before_step(done, step)`` is called before each step, with the number done so far.
    """
    outcomes: dict[tuple[str, tuple[Any, ...]], Outcome] = {}
    for done, step in enumerate(steps):
        before_step(done, step)
        outcome = outcomes.setdefault((step.section, step.key), Outcome())
        if outcome.unavailable is not None or outcome.error is not None:
            continue
        try:
            outcome.results.append(step.run())
        except measure.TargetUnavailable as exc:
            outcome.unavailable = str(exc)
        except Exception as exc:
            logger.exception("%s failed", step.label)
            outcome.error = f"{type(exc).__name__}: {exc}"
    return outcomes
