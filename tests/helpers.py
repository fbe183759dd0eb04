"""Test helpers: gates that hold workers, recorders that count and order runs.

Everything here synchronises with Events and Conditions; nothing sleeps to wait.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

#: The longest any test waits for something that should happen at once.
WAIT = 10.0


class Gate:
    """A handler that blocks until the test opens it, and says when it is entered."""

    def __init__(self) -> None:
        self.entered = threading.Semaphore(0)
        self._open = threading.Event()

    def __call__(self, payload: bytes) -> None:
        self.entered.release()
        if not self._open.wait(WAIT * 3):
            raise TimeoutError("gate never opened")

    def wait_entered(self, count: int = 1) -> None:
        for _ in range(count):
            assert self.entered.acquire(timeout=WAIT), "the gated job never started"

    def open(self) -> None:
        self._open.set()


class Recorder:
    """A handler that records each payload it runs, in order."""

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
        """Wait until ``count`` runs have been recorded."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self.runs) >= count, timeout)


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
