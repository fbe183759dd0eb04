"""Test helpers: gates that hold workers, recorders that count and order runs.

Everything here synchronises with Events and Conditions; nothing sleeps to wait.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

# One Gate and one Recorder serve the scenarios (the report) and the tests.
from jobqueue.lab.scenarios.base import WAIT, Gate, Recorder

__all__ = ["WAIT", "Gate", "Harness", "Recorder"]


class Harness:
    """Builds queues for one stage; on teardown opens every gate, then closes every queue."""

    def __init__(self, stage: ModuleType) -> None:
        self.stage = stage
        self._gates: list[Gate] = []
        self._queues: list[Any] = []

    def queue(self, **config: Any) -> Any:
        q = self.stage.JobQueue(self.stage.Config(**config))
        self._queues.append(q)
        return q

    def gate(self) -> Gate:
        g = Gate()
        self._gates.append(g)
        return g

    def job(self, job_id: str, priority: str = "MEDIUM", payload: bytes | None = None) -> Any:
        return self.stage.Job(
            id=job_id,
            priority=self.stage.Priority[priority],
            payload=job_id.encode() if payload is None else payload,
        )

    def teardown(self) -> None:
        for g in self._gates:
            g.open()
        for q in self._queues:
            q.close()
