"""What ``jobqueue.lab.measure`` measures: every stage, and ThreadPoolExecutor, as one API.

A :class:`Target` is an open queue (or pool) seen through five calls:
``item(i, payload)`` builds what job ``i`` is (a ``Job`` for the queues, the
payload for the pool), ``put(item)`` hands it over (``enqueue`` / ``submit``),
``put_many(items)`` hands over a batch (``enqueue_many``; the pool has no
batch call, so one ``submit`` each), ``offer(item)`` hands it over without
waiting (``False`` if a bounded queue is full), and ``join()`` waits until
every job handed over has finished.

Items are built before the clock starts, so a measurement times the queue, not
the ``Job`` constructor, and ``put`` is the bound method itself, so the
adapter adds no Python frame to the loop it measures.

ThreadPoolExecutor is the baseline every ratio is taken against: ``submit`` is
its ``enqueue`` and ``shutdown(wait=True)`` its ``join``, so after ``join()``
the pool accepts nothing more.  Its threads start on first use; the adapter
starts them all before handing the pool over, as the queues start theirs in
their constructor.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobqueue.vocabulary import Handler, QueueFull

__all__ = [
    "DURABLE_TARGETS",
    "MEMORY_TARGETS",
    "TARGETS",
    "Target",
    "TargetUnavailable",
    "open_target",
]

#: The stages in memory, then ThreadPoolExecutor.
MEMORY_TARGETS = ("naive", "improved", "final", "threadpool")
#: ``final`` with a log, one per fsync policy (``jobqueue.final.FSYNC_POLICIES``).
DURABLE_TARGETS = ("final-durable-always", "final-durable-interval", "final-durable-never")
TARGETS = ("naive", "improved", "final", *DURABLE_TARGETS, "threadpool")


class TargetUnavailable(Exception):
    """Raised by ``open_target()`` when a target cannot be opened here (say, no log yet)."""


@dataclass(frozen=True, slots=True)
class Target:
    """One open target.  See the module docstring for what each call means."""

    name: str
    item: Callable[[int, bytes], object]
    put: Callable[[Any], object]
    put_many: Callable[[list[Any]], object]
    offer: Callable[[Any], bool]
    join: Callable[[], object]


@contextlib.contextmanager
def open_target(
    name: str,
    handler: Handler,
    *,
    workers: int = 4,
    queue_size: int | None = None,
    mixed: bool = False,
) -> Iterator[Target]:
    """Open target ``name`` with ``workers`` threads running ``handler``; close it on exit.

    ``queue_size`` (per priority) defaults to each stage's own default; the
    pool and ``naive`` are unbounded.  With ``mixed``, job ``i`` has priority
    HIGH, MEDIUM, LOW in turn (``i % 3``); else every job is MEDIUM.  A
    durable target writes its log in a fresh temporary directory, removed on
    exit.  Raises ``ValueError`` for an unknown name and ``TargetUnavailable``
    if the target cannot be opened.
    """
    if name not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {name!r}")
    if name == "threadpool":
        with _threadpool(handler, workers) as target:
            yield target
        return
    with contextlib.ExitStack() as stack:
        stage = importlib.import_module(f"jobqueue.{name.split('-', maxsplit=1)[0]}")
        settings: dict[str, Any] = {"num_workers": workers, "handler": handler}
        if queue_size is not None:
            settings["queue_size"] = queue_size
        if name in DURABLE_TARGETS:
            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="jobqueue-bench-"))
            settings["persist_path"] = os.fspath(Path(directory) / "jobs.log")
            settings["fsync"] = name.rsplit("-", 1)[1]
        try:
            queue = stage.JobQueue(stage.Config(**settings))
        except Exception as exc:  # e.g. the log module is not there yet
            raise TargetUnavailable(f"{name}: {type(exc).__name__}: {exc}") from exc
        stack.callback(queue.close)
        job_class = stage.Job
        priorities = list(stage.Priority) if mixed else [stage.Priority.MEDIUM]

        def item(i: int, payload: bytes) -> object:
            return job_class(id=f"j{i}", payload=payload, priority=priorities[i % len(priorities)])

        def offer(job: object) -> bool:
            try:
                queue.enqueue(job, timeout=0)
            except QueueFull:
                return False
            return True

        yield Target(name, item, queue.enqueue, queue.enqueue_many, offer, queue.join)


@contextlib.contextmanager
def _threadpool(handler: Handler, workers: int) -> Iterator[Target]:
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bench-pool")
    try:
        # Start every thread now: the pool starts one per submit while none is idle,
        # so `workers` tasks that wait for each other make it start them all.
        started = threading.Barrier(workers + 1)
        for _ in range(workers):
            pool.submit(started.wait)
        started.wait()

        def offer(payload: bytes) -> bool:
            pool.submit(handler, payload)
            return True  # unbounded: it never refuses

        def put_many(payloads: list[bytes]) -> None:
            submit = pool.submit
            for payload in payloads:
                submit(handler, payload)

        yield Target(
            "threadpool",
            item=lambda i, payload: payload,
            # partial, not a lambda: no Python frame added to the loop under test.
            put=functools.partial(pool.submit, handler),  # type: ignore[call-arg]  # mypy's partial plugin miscounts submit(fn, /, *args)
            put_many=put_many,
            offer=offer,
            join=functools.partial(pool.shutdown, wait=True),
        )
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
