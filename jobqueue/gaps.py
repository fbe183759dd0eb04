"""The deliberate gaps: which stage gets which problem right, in one table.

The test matrix marks every test of a problem a stage lacks as a strict xfail,
with the verdict's reason; ``jobqueue report`` and ``jobqueue gaps`` print the
table beside what they measure.  Change a stage's behaviour and this table
together, or the suite fails.

A row is a :class:`Gap`; each of its cells is a :class:`Verdict`, a value
(solved or not, and why), written with :func:`yes` and :func:`no`.  To add a
problem, add a row; to add a stage, add its name to :data:`STAGES` and a
verdict for it to every row (a ``Gap`` with a missing or extra column is
refused when the module loads).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["COLUMNS", "GAPS", "POSTGRES", "STAGES", "Gap", "Verdict", "gap", "no", "yes"]

#: The stages in teaching order.
STAGES = ("naive", "improved", "final")
#: final on PostgreSQL (``Config(postgres_url=...)``): final's code and contract
#: with another store, so not a stage, but a column of the table.  Its verdict
#: is final's, except in the rows that give it one of their own.
POSTGRES = "final + PostgreSQL"
#: The table's columns.
COLUMNS = (*STAGES, POSTGRES)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one stage does about one problem: solved or not, and why."""

    solved: bool
    why: str = ""  # required when not solved: it is the xfail reason of the tests

    def __post_init__(self) -> None:
        if not self.solved and not self.why:
            raise ValueError("an unsolved Verdict needs a why: it explains the xfail")

    def __str__(self) -> str:
        """``yes``, ``yes (tokens)``, ``no (FIFO)``: the words the table shows."""
        word = "yes" if self.solved else "no"
        return f"{word} ({self.why})" if self.why else word


def yes(why: str = "") -> Verdict:
    """The stage solves the problem (``why``: how, when it is worth saying)."""
    return Verdict(True, why)


def no(why: str) -> Verdict:
    """The stage lacks the fix; ``why`` says what it does instead."""
    return Verdict(False, why)


@dataclass(frozen=True, slots=True)
class Gap:
    """One problem, and a verdict for each stage."""

    key: str  # what tests name in @pytest.mark.gap(...)
    problem: str
    verdicts: Mapping[str, Verdict]  # one per name in STAGES
    postgres: Verdict | None = None  # final on PostgreSQL, where it differs from final

    def __post_init__(self) -> None:
        if set(self.verdicts) != set(STAGES):
            raise ValueError(
                f"gap {self.key!r}: verdicts must name exactly the stages "
                f"{', '.join(STAGES)}, got {', '.join(self.verdicts)}"
            )
        # A read-only copy: the table is shared by every test and tool.
        object.__setattr__(self, "verdicts", MappingProxyType(dict(self.verdicts)))

    def verdict(self, column: str) -> Verdict:
        """The verdict for a stage, or for the :data:`POSTGRES` column."""
        if column == POSTGRES:
            return self.postgres if self.postgres is not None else self.verdicts["final"]
        return self.verdicts[column]

    def solved_by(self, column: str) -> bool:
        return self.verdict(column).solved


GAPS = (
    Gap(
        "backpressure",
        "backpressure: enqueue blocks when the queue is full",
        {"naive": no("unbounded"), "improved": yes(), "final": yes()},
    ),
    Gap(
        "priorities",
        "priorities: HIGH before MEDIUM before LOW",
        {"naive": no("FIFO"), "improved": yes(), "final": yes()},
    ),
    Gap(
        "no_starvation",
        "no starvation: a waiting LOW job runs within a bounded number of HIGH jobs",
        {"naive": yes("FIFO order"), "improved": no("strict priority"), "final": yes("tokens")},
    ),
    Gap(
        "retry",
        "retry with exponential backoff",
        {"naive": no("a failed job is lost"), "improved": yes(), "final": yes()},
    ),
    Gap(
        "graceful_shutdown",
        "graceful shutdown: close() waits for in-flight jobs",
        {"naive": no("close() returns at once"), "improved": yes(), "final": yes()},
    ),
    Gap(
        "metrics",
        "metrics",
        {"naive": no("not implemented"), "improved": yes(), "final": yes()},
    ),
    Gap(
        "metrics_per_priority",
        "metrics per priority, and worker utilization",
        {"naive": no("no metrics"), "improved": no("totals only"), "final": yes()},
    ),
    Gap(
        "status",
        "status by id",
        {"naive": no("not implemented"), "improved": no("not implemented"), "final": yes()},
    ),
    Gap(
        "persistence",
        "persistence, crash recovery, retry state across restart",
        {"naive": no("memory only"), "improved": no("memory only"), "final": yes("a log")},
    ),
    Gap(
        "beyond_one_process",
        "beyond one process: processes and machines share one queue; "
        "CPU-bound work scales past one core",
        {
            "naive": no("one process"),
            "improved": no("one process"),
            "final": no("one process: the log is locked by it"),
        },
        postgres=yes("rows, SKIP LOCKED, leases"),
    ),
)

_BY_KEY = {g.key: g for g in GAPS}


def gap(key: str) -> Gap:
    """The gap named ``key``; ``KeyError`` names the known keys."""
    try:
        return _BY_KEY[key]
    except KeyError:
        raise KeyError(f"unknown gap {key!r}; known: {', '.join(_BY_KEY)}") from None
