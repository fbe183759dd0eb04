"""Test helpers: gates that hold workers, recorders that count and order runs.

Everything here synchronises with Events and Conditions; nothing sleeps to wait.
"""

from __future__ import annotations

import itertools
import os
from types import ModuleType
from typing import Any

import pytest

# One Gate and one Recorder serve the scenarios (the report) and the tests.
from jobqueue.lab.scenarios.base import WAIT, Gate, Recorder

__all__ = ["WAIT", "Gate", "Harness", "PgHarness", "Recorder"]


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


_pg_queues = itertools.count()


class PgHarness(Harness):
    """The ``final-postgres`` column: queues on the session's PostgreSQL cluster.

    Each test gets queue names no other test uses.  ``persist_path`` becomes
    the queue's name, so a test that "restarts" a queue on the same log opens
    the same shared queue again.  A handler given to ``enqueue_with_handler``
    must be registered by name (a shared queue runs jobs in any process): a
    test that passes an unnamed function does not apply here.
    """

    def __init__(self, stage: ModuleType, url: str) -> None:
        super().__init__(stage)
        self.url = url
        self._names: dict[str, str] = {}
        self._default = f"q{os.getpid()}_{next(_pg_queues)}"

    def queue(self, **config: Any) -> Any:
        path = config.pop("persist_path", None)
        if path is None:
            name = self._default
        else:
            name = self._names.setdefault(str(path), f"{self._default}_{len(self._names)}")
        config.setdefault("queue_name", name)
        config.setdefault("lease_timeout", 5.0)
        q = _NamedHandlersOnly(
            self.stage.JobQueue(self.stage.Config(postgres_url=self.url, **config))
        )
        self._queues.append(q)
        return q


class _NamedHandlersOnly:
    """A PostgreSQL queue whose ``enqueue_with_handler`` skips the test for an unnamed
    handler, rather than fail it: that test is about something a shared queue refuses."""

    def __init__(self, queue: Any) -> None:
        self._queue = queue

    def __getattr__(self, name: str) -> Any:
        return getattr(self._queue, name)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self._queue.close()

    def enqueue_with_handler(self, job: Any, handler: Any, timeout: float | None = None) -> None:
        config = self._queue._config
        if (
            handler is not None
            and handler is not config.handler
            and (handler not in config.handlers.values())
        ):
            pytest.skip(
                "final-postgres: enqueue_with_handler() with an unnamed function; "
                "a shared queue needs its handlers registered by name"
            )
        self._queue.enqueue_with_handler(job, handler, timeout)
