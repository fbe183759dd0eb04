"""The deliberate gaps: which stage gets which problem right, in one table.

This is ``CONTRACT.md``'s "Deliberate gaps" table as data.  The test matrix
marks every test of a problem a stage lacks as a strict xfail, with the reason
below; ``jobqueue report`` prints it beside what it measures.  Change a
stage's behaviour and this table together, or the suite fails.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["COLUMNS", "GAPS", "POSTGRES", "STAGES", "Gap", "gap"]

#: The stages in teaching order.
STAGES = ("naive", "improved", "final")
#: final on PostgreSQL (``Config(postgres_url=...)``): final's code and contract
#: with another store, so not a stage, but a column of the table.  Its verdict
#: is final's, except in the rows that give it one of its own.
POSTGRES = "final + PostgreSQL"
COLUMNS = (*STAGES, POSTGRES)


@dataclass(frozen=True, slots=True)
class Gap:
    """One problem, and what each stage does about it."""

    key: str  # what tests name in @pytest.mark.gap(...)
    problem: str
    verdicts: dict[str, str]  # stage -> what it does, "no (...)" or "yes (...)"
    postgres: str | None = None  # final on PostgreSQL, where it differs from final

    def verdict(self, column: str) -> str:
        """The words for a stage, or for :data:`POSTGRES`."""
        if column == POSTGRES:
            return self.postgres if self.postgres is not None else self.verdicts["final"]
        return self.verdicts[column]

    def solved_by(self, stage: str) -> bool:
        return self.verdict(stage).startswith("yes")


GAPS = (
    Gap(
        "backpressure",
        "backpressure: enqueue blocks when the queue is full",
        {"naive": "no (unbounded)", "improved": "yes", "final": "yes"},
    ),
    Gap(
        "priorities",
        "priorities: HIGH before MEDIUM before LOW",
        {"naive": "no (FIFO)", "improved": "yes", "final": "yes"},
    ),
    Gap(
        "no_starvation",
        "no starvation: a waiting LOW job runs within a bounded number of HIGH jobs",
        {"naive": "yes (FIFO order)", "improved": "no (strict priority)", "final": "yes (tokens)"},
    ),
    Gap(
        "retry",
        "retry with exponential backoff",
        {"naive": "no", "improved": "yes", "final": "yes"},
    ),
    Gap(
        "graceful_shutdown",
        "graceful shutdown: close() waits for in-flight jobs",
        {"naive": "no", "improved": "yes", "final": "yes"},
    ),
    Gap(
        "metrics",
        "metrics",
        {"naive": "no (metrics() raises NotImplementedError)", "improved": "yes", "final": "yes"},
    ),
    Gap(
        "metrics_per_priority",
        "metrics per priority, and worker utilization",
        {"naive": "no", "improved": "no (totals only)", "final": "yes"},
    ),
    Gap(
        "status",
        "status by id",
        {
            "naive": "no (NotImplementedError)",
            "improved": "no (NotImplementedError)",
            "final": "yes",
        },
    ),
    Gap(
        "persistence",
        "persistence, crash recovery, retry state across restart",
        {"naive": "no", "improved": "no", "final": "yes"},
    ),
    Gap(
        "beyond_one_process",
        "beyond one process: processes and machines share one queue; "
        "CPU-bound work scales past one core",
        {
            "naive": "no (one process)",
            "improved": "no (one process)",
            "final": "no (one process: the log is locked by it)",
        },
        postgres="yes (rows, SKIP LOCKED, leases)",
    ),
)

_BY_KEY = {g.key: g for g in GAPS}


def gap(key: str) -> Gap:
    """The gap named ``key``; ``KeyError`` names the known keys."""
    try:
        return _BY_KEY[key]
    except KeyError:
        raise KeyError(f"unknown gap {key!r}; known: {', '.join(_BY_KEY)}") from None
