"""The scenarios: each problem of the gap table, measured on a stage.

One library serves both ``jobqueue report`` (which renders the outcomes) and
``tests/test_scenarios.py`` (which checks them against ``jobqueue/gaps.py``).
A scenario returns data; it never prints.

    >>> from jobqueue.lab.scenarios import run
    >>> run("improved", "no_starvation").figure
    'LOW job ran 301st of 301: after every HIGH job'

Modules, by concern: ``ordering`` (backpressure, priorities, starvation),
``lifecycle`` (retry, shutdown, metrics, status), ``durability`` (restart,
retry state, kill -9), ``performance`` (the side-by-side figures, taken with
``jobqueue.lab.measure``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType, ModuleType

from jobqueue import gaps
from jobqueue.lab.scenarios import durability, lifecycle, ordering, processes
from jobqueue.lab.scenarios.base import QUICK, STANDARD, Observed, Outcome, Sizes, load_stage

__all__ = ["QUICK", "SCENARIOS", "STANDARD", "Outcome", "Scenario", "Sizes", "run"]


@dataclass(frozen=True, slots=True)
class Scenario:
    """One experiment, and the row of the gap table it measures."""

    key: str
    gap_key: str
    title: str  # the row heading in the report
    measure: Callable[[ModuleType, Sizes], Observed]


#: Every scenario, in the order of the gap table.
SCENARIOS: dict[str, Scenario] = {
    s.key: s
    for s in (
        Scenario("backpressure", "backpressure", "backpressure", ordering.backpressure),
        Scenario("priorities", "priorities", "priorities", ordering.priorities),
        Scenario("no_starvation", "no_starvation", "no starvation", ordering.no_starvation),
        Scenario("retry", "retry", "retry with backoff", lifecycle.retry),
        Scenario(
            "graceful_shutdown",
            "graceful_shutdown",
            "graceful shutdown",
            lifecycle.graceful_shutdown,
        ),
        Scenario("metrics", "metrics", "metrics", lifecycle.metrics),
        Scenario(
            "metrics_per_priority",
            "metrics_per_priority",
            "metrics per priority",
            lifecycle.metrics_per_priority,
        ),
        Scenario("status", "status", "status by id", lifecycle.status),
        Scenario("restart", "persistence", "persistence: restart", durability.restart),
        Scenario("retry_state", "persistence", "persistence: retry state", durability.retry_state),
        Scenario("crash", "persistence", "persistence: kill -9", durability.crash),
        Scenario(processes.KEY, processes.KEY, "beyond one process", processes.share),
    )
}

# Every row of the gap table is measured by at least one scenario.
assert {s.gap_key for s in SCENARIOS.values()} == {g.key for g in gaps.GAPS}


def scenario(key: str) -> Scenario:
    """The scenario named ``key``; ``KeyError`` names the known keys."""
    try:
        return SCENARIOS[key]
    except KeyError:
        raise KeyError(f"unknown scenario {key!r}; known: {', '.join(SCENARIOS)}") from None


def run(stage_name: str, scenario_key: str, sizes: Sizes = STANDARD) -> Outcome:
    """Run one scenario against one stage.

    A scenario that cannot run (an exception, a timeout) is still an outcome:
    ``solved`` is False and ``error`` says why, so a report shows it in its
    cell instead of stopping.
    """
    chosen = scenario(scenario_key)
    stage = load_stage(stage_name)
    started = time.monotonic()
    try:
        observed = chosen.measure(stage, sizes)
    except Exception as exc:
        return Outcome(
            scenario=chosen.key,
            gap_key=chosen.gap_key,
            stage=stage_name,
            solved=False,
            figure=f"error: {type(exc).__name__}: {exc}",
            data=MappingProxyType({}),
            seconds=time.monotonic() - started,
            error=f"{type(exc).__name__}: {exc}",
        )
    return Outcome(
        scenario=chosen.key,
        gap_key=chosen.gap_key,
        stage=stage_name,
        solved=observed.solved,
        figure=observed.figure,
        data=MappingProxyType(dict(observed.data)),
        seconds=time.monotonic() - started,
    )
