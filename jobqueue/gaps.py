"""The deliberate gaps: which stage gets which problem right, in one table.

This is ``CONTRACT.md``'s "Deliberate gaps" table as data.  The test matrix
marks every test of a problem a stage lacks as a strict xfail, with the reason
below; ``jobqueue report`` prints it beside what it measures.  Change a
stage's behaviour and this table together, or the suite fails.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GAPS", "STAGES", "Gap", "gap"]

#: The stages in teaching order.
STAGES = ("naive", "improved", "final")


@dataclass(frozen=True, slots=True)
class Gap:
    """One problem, and what each stage does about it."""

    key: str  # what tests name in @pytest.mark.gap(...)
    problem: str
    verdicts: dict[str, str]  # stage -> what it does, "no (...)" or "yes (...)"

    def solved_by(self, stage: str) -> bool:
        return self.verdicts[stage].startswith("yes")


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
)

_BY_KEY = {g.key: g for g in GAPS}


def gap(key: str) -> Gap:
    """The gap named ``key``; ``KeyError`` names the known keys."""
    try:
        return _BY_KEY[key]
    except KeyError:
        raise KeyError(f"unknown gap {key!r}; known: {', '.join(_BY_KEY)}") from None
