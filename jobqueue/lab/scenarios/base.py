"""What every scenario shares: the result types, the sizes, and two small handlers.

A scenario drives one stage through the public API only (``JobQueue``,
``Config``, ``Job``), observes what happens, and returns an
:class:`Observed`: whether the stage solved the problem, a figure a person
can read ("LOW job ran 301st of 301"), and the raw numbers.  It never prints
and never sleeps to wait for something: it waits on Events and Conditions,
with a deadline, like the tests.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType

from jobqueue import gaps

# Re-exported for the docs' studies, which import them from here.

__all__ = [
    "QUICK",
    "STANDARD",
    "WAIT",
    "Gate",
    "Observed",
    "Outcome",
    "Recorder",
    "Sizes",
    "load_stage",
    "ordinal",
]

#: The longest a scenario waits for something that should happen at once.
WAIT = 10.0


@dataclass(frozen=True, slots=True)
class Sizes:
    """How big each scenario runs.  ``STANDARD`` for the report, ``QUICK`` for tests."""

    flood_jobs: int  # jobs offered to a queue whose only worker is held
    queue_size: int  # the bound per priority in the backpressure scenario
    payload_bytes: int  # payload of each flood job: what makes memory grow
    order_jobs: int  # jobs queued behind a held worker in the ordering scenarios
    metric_jobs: int  # jobs whose outcomes the metrics must count exactly
    restart_jobs: int  # jobs left in the log at close, to be run after a restart
    crash_jobs: int  # jobs a child process acknowledges before it is killed
    retry_base_delay: float  # seconds; the spec's 1 s, scaled down so the run is short


STANDARD = Sizes(
    flood_jobs=20_000,
    queue_size=1_000,
    payload_bytes=1_024,
    order_jobs=300,
    metric_jobs=200,
    restart_jobs=500,
    crash_jobs=200,
    retry_base_delay=0.05,
)
QUICK = Sizes(
    flood_jobs=2_000,
    queue_size=200,
    payload_bytes=256,
    order_jobs=60,
    metric_jobs=60,
    restart_jobs=100,
    crash_jobs=60,
    retry_base_delay=0.02,
)


@dataclass(frozen=True, slots=True)
class Observed:
    """What a scenario saw: the verdict, the figure that shows it, the raw numbers."""

    solved: bool
    figure: str
    data: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One scenario run against one stage, next to what the gap table expects."""

    scenario: str  # the scenario's key, e.g. "crash"
    gap_key: str  # the row of jobqueue.gaps it measures, e.g. "persistence"
    stage: str  # "naive", "improved", "final", or gaps.POSTGRES
    solved: bool  # observed: did the stage solve the problem?
    figure: str  # the observation, for a person
    data: Mapping[str, object]  # the observation, for a machine
    seconds: float  # how long the scenario took
    error: str | None = None  # the scenario could not run: "TypeName: message"

    @property
    def verdict(self) -> gaps.Verdict:
        """What ``jobqueue/gaps.py`` says this stage does about this problem."""
        return gaps.gap(self.gap_key).verdict(self.stage)  # a stage, or gaps.POSTGRES

    @property
    def expected(self) -> bool:
        """Whether the gap table says this stage solves the problem."""
        return self.verdict.solved

    @property
    def agrees(self) -> bool:
        """True when the scenario ran and saw what the gap table promises."""
        return self.error is None and self.solved == self.expected

    def as_dict(self) -> dict[str, object]:
        return {
            "scenario": self.scenario,
            "gap": self.gap_key,
            "stage": self.stage,
            "solved": self.solved,
            "expected": self.expected,
            "agrees": self.agrees,
            "figure": self.figure,
            "error": self.error,
            "seconds": round(self.seconds, 3),
            "data": dict(self.data),
        }


def load_stage(name: str) -> ModuleType:
    """The stage module ``jobqueue.<name>``; ``ValueError`` names the known stages."""
    if name not in gaps.STAGES:
        raise ValueError(f"stage must be one of {', '.join(gaps.STAGES)}, got {name!r}")
    return importlib.import_module(f"jobqueue.{name}")


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 11th, 301st."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n:,}{suffix}"


class Gate:
    """A handler that holds its worker until ``open()``, and says when it is entered."""

    def __init__(self) -> None:
        self.entered = threading.Semaphore(0)
        self._open = threading.Event()

    def __call__(self, payload: bytes) -> None:
        self.entered.release()
        if not self._open.wait(WAIT * 3):
            raise TimeoutError("gate never opened")

    def wait_entered(self, count: int = 1) -> None:
        for _ in range(count):
            if not self.entered.acquire(timeout=WAIT):
                raise TimeoutError("the held job never started")

    def open(self) -> None:
        self._open.set()


class Recorder:
    """A handler that records each payload it runs, in order, with the time."""

    def __init__(self, fail: Callable[[bytes], bool] = lambda payload: False) -> None:
        self.runs: list[bytes] = []
        self.times: list[float] = []
        self._fail = fail
        self._changed = threading.Condition()

    def __call__(self, payload: bytes) -> None:
        with self._changed:
            self.runs.append(payload)
            self.times.append(time.monotonic())
            self._changed.notify_all()
        if self._fail(payload):
            raise RuntimeError(f"failing on purpose: {payload!r}")

    def wait_for(self, count: int, timeout: float = WAIT) -> bool:
        """Wait until ``count`` runs have been recorded; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self.runs) >= count, timeout)
