"""The three queues ``jobqueue bench --postgres`` drives, each as its docs say.

- **final on PostgreSQL**: worker processes open ``JobQueue(Config(postgres_url
  =..., num_workers=4, handlers=...))``, exactly as ``jobqueue worker`` does;
  the producer is a ``num_workers=0`` queue calling ``enqueue``.
- **PgQueuer** (its README's Quick Start): ``PgQueuer(AsyncpgDriver(await
  asyncpg.connect(url)))``, an ``async`` entrypoint, ``await pgq.run()`` with
  its defaults (batch_size=10); ``Queries(driver).install()`` creates the
  schema; the producer calls ``await queries.enqueue(name, payload)``, and the
  bulk pre-fill passes lists.
- **procrastinate** (its quickstart): ``App(connector=PsycopgConnector(
  conninfo=url))``, an ``async`` task, ``await app.run_worker_async(
  concurrency=4)``, as many jobs in flight as our 4 threads (its default is
  1); ``schema_manager.apply_schema_async()`` creates the schema; the producer
  calls ``await task.defer_async(...)``, and the pre-fill ``batch_defer_async``.

Worker processes are spawned, and every handler reports to the parent through
:class:`Shared`: a count of finished jobs, the time the last one finished,
and, for the latency runs, each job's enqueue-to-start delay.  The clock is
``time.monotonic()``, CLOCK_MONOTONIC, one clock for every process.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["PEERS", "TARGETS", "Shared", "installed", "prefill", "produce", "work"]

OURS = "final on PostgreSQL"
PGQUEUER = "PgQueuer"
PROCRASTINATE = "procrastinate"
TARGETS = (OURS, PGQUEUER, PROCRASTINATE)
PEERS = (PGQUEUER, PROCRASTINATE)
THREADS = 4  # our worker threads per process; procrastinate's concurrency
QUEUE_SIZE = 1_000_000  # our bound on queued jobs per priority: never reached here
_MODULES = {OURS: "psycopg", PGQUEUER: "pgqueuer", PROCRASTINATE: "procrastinate"}


def installed(target: str) -> str | None:
    """None if ``target`` can run here, else why not."""
    import importlib.util

    if target == OURS:
        from jobqueue.final import Config

        if "postgres_url" not in Config.__dataclass_fields__:
            return "this build of jobqueue.final has no PostgreSQL store (Config.postgres_url)"
    module = _MODULES[target]
    if importlib.util.find_spec(module) is None:
        extra = "postgres" if target == OURS else "peers"
        return f"{module} is not installed (pip install 'jobqueue[{extra}]')"
    if target == PGQUEUER and importlib.util.find_spec("asyncpg") is None:
        return "asyncpg is not installed (pip install 'jobqueue[peers]')"
    return None


@dataclass(frozen=True, slots=True)
class Shared:
    """What the worker processes and the parent share.  Built from a spawn context."""

    ready: Any  # Semaphore: each worker process releases it once imported
    go: Any  # Event: the parent starts the clock, then sets it
    first: Any  # Event: set when the first job finished (the warm-up of a latency run)
    done: Any  # Value("q"): jobs finished, under its own lock
    expected: int  # finished jobs that end the run
    finished: Any  # Event: set by the handler that finished the last job
    end: Any  # Value("d"): monotonic time the last job finished
    delays: Any  # Array("d"): enqueue-to-start seconds by job number (latency runs)
    cpu_loops: int  # iterations of the CPU-bound handler


_shared: Shared | None = None  # set in each worker process


def _finish_one() -> None:
    assert _shared is not None
    with _shared.done.get_lock():
        _shared.done.value += 1
        if _shared.done.value == 1:
            _shared.first.set()
        if _shared.done.value == _shared.expected:
            _shared.end.value = time.monotonic()
            _shared.finished.set()


def _record_start(payload: bytes) -> None:
    assert _shared is not None
    now = time.monotonic()
    number, sent = payload.decode().split(",")
    _shared.delays[int(number)] = now - float(sent)


def _burn() -> None:
    assert _shared is not None
    total = 0
    for i in range(_shared.cpu_loops):
        total += i * i  # pure Python: holds the GIL throughout


def handle(kind: str, payload: bytes) -> None:
    """The handler every target runs: ``noop``, ``latency`` or ``cpu``."""
    if kind == "latency":
        _record_start(payload)
    elif kind == "cpu":
        _burn()
    _finish_one()


# -- worker processes ----------------------------------------------------------------------------


def work(target: str, url: str, threads: int, shared: Shared) -> None:
    """A spawned worker process: wait for the go, then run ``target``'s worker for ever."""
    global _shared
    _shared = shared
    import importlib

    importlib.import_module(_MODULES[target])  # before the clock starts, not after
    importlib.import_module("jobqueue.final")
    shared.ready.release()
    shared.go.wait()
    if target == OURS:
        _work_ours(url, threads)
    elif target == PGQUEUER:
        asyncio.run(_work_pgqueuer(url))
    else:
        asyncio.run(_work_procrastinate(url))


def _our_handlers() -> dict[str, Callable[[bytes], None]]:
    return {kind: _bind(kind) for kind in ("noop", "latency", "cpu")}


def _bind(kind: str) -> Callable[[bytes], None]:
    def handler(payload: bytes) -> None:
        handle(kind, payload)

    return handler


def _work_ours(url: str, threads: int) -> None:
    from jobqueue.lab.worker import WorkerOptions, open_postgres_queue

    options = WorkerOptions(
        postgres_url=url,
        handlers="",
        workers=threads,
        queue="default",
        processes=1,
        shutdown_timeout=1.0,
        lease_timeout=30.0,
    )
    open_postgres_queue(options, _our_handlers())
    threading.Event().wait()  # the parent ends this process


async def _work_pgqueuer(url: str) -> None:
    import asyncpg
    from pgqueuer import PgQueuer
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.models import Job

    pgq = PgQueuer(AsyncpgDriver(await asyncpg.connect(url)))
    for kind in ("noop", "latency", "cpu"):

        async def entry(job: Job, kind: str = kind) -> None:
            handle(kind, job.payload or b"")

        pgq.entrypoint(kind)(entry)
    await pgq.run()


def _procrastinate_app(url: str) -> Any:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))
    for kind in ("noop", "latency", "cpu"):

        async def task(payload: str = "", kind: str = kind) -> None:
            handle(kind, payload.encode())

        app.task(name=kind)(task)
    return app


async def _work_procrastinate(url: str) -> None:
    app = _procrastinate_app(url)
    async with app.open_async():
        await app.run_worker_async(concurrency=THREADS, wait=True)


# -- producers (in the parent) -------------------------------------------------------------------


def install(target: str, url: str) -> None:
    """Create ``target``'s schema in a fresh database."""
    if target == OURS:
        _our_producer(url).close()
    elif target == PGQUEUER:

        async def pgqueuer() -> None:
            import asyncpg
            from pgqueuer.db import AsyncpgDriver
            from pgqueuer.queries import Queries

            conn = await asyncpg.connect(url)
            try:
                await Queries(AsyncpgDriver(conn)).install()
            finally:
                await conn.close()

        asyncio.run(pgqueuer())
    else:

        async def procrastinate() -> None:
            app = _procrastinate_app(url)
            async with app.open_async():
                await app.schema_manager.apply_schema_async()

        asyncio.run(procrastinate())


def _our_producer(url: str) -> Any:
    """A producer-only queue.  ``queue_size`` is set past every run's jobs: the
    peers have no bound, and ours would block the 1,001st enqueue of a run
    with no worker running (backpressure, as it should)."""
    from jobqueue.final import Config, JobQueue

    config = Config(
        postgres_url=url,
        queue_name="default",
        num_workers=0,
        queue_size=QUEUE_SIZE,
        handlers=_our_handlers(),
    )
    return JobQueue(config)


def _pace(rate: float | None, began: float, number: int) -> float:
    """Seconds to wait before job ``number`` at ``rate`` jobs/s (0 when unpaced)."""
    if rate is None:
        return 0.0
    return max(0.0, began + number / rate - time.monotonic())


def produce(target: str, url: str, kind: str, count: int, rate: float | None = None) -> float:
    """Enqueue ``count`` jobs one at a time (paced at ``rate``); the seconds it took.

    Each is its own call and its own transaction, as a web request would do.
    """
    if target == OURS:
        return _produce_ours(url, kind, count, rate)
    return asyncio.run(_produce_async(target, url, kind, count, rate))


def _payload(kind: str, number: int) -> str:
    return f"{number},{time.monotonic()!r}" if kind == "latency" else ""


def _produce_ours(url: str, kind: str, count: int, rate: float | None) -> float:
    from jobqueue.final import Job

    queue = _our_producer(url)
    stamp = time.time_ns()
    try:
        began = time.monotonic()
        for number in range(count):
            time.sleep(_pace(rate, began, number))
            payload = _payload(kind, number).encode()
            queue.enqueue(Job(id=f"{kind}-{stamp}-{number}", handler=kind, payload=payload))
        return time.monotonic() - began
    finally:
        queue.close()


async def _produce_async(target: str, url: str, kind: str, count: int, rate: float | None) -> float:
    if target == PGQUEUER:
        import asyncpg
        from pgqueuer.db import AsyncpgDriver
        from pgqueuer.queries import Queries

        conn = await asyncpg.connect(url)
        try:
            queries = Queries(AsyncpgDriver(conn))
            began = time.monotonic()
            for number in range(count):
                await asyncio.sleep(_pace(rate, began, number))
                await queries.enqueue(kind, _payload(kind, number).encode())
            return time.monotonic() - began
        finally:
            await conn.close()
    app = _procrastinate_app(url)
    async with app.open_async():
        task = app.tasks[kind]
        began = time.monotonic()
        for number in range(count):
            await asyncio.sleep(_pace(rate, began, number))
            await task.defer_async(payload=_payload(kind, number))
        return time.monotonic() - began


def prefill(target: str, url: str, kind: str, count: int) -> None:
    """Enqueue ``count`` jobs before the workers start, in bulk where the target can."""
    if target == OURS:
        from jobqueue.final import Job

        queue = _our_producer(url)
        stamp = time.time_ns()
        jobs = [Job(id=f"{kind}-{stamp}-{n}", handler=kind) for n in range(count)]
        try:
            many = getattr(queue, "enqueue_many", None)
            if many is not None:
                for start in range(0, count, 1000):
                    many(jobs[start : start + 1000])
            else:
                for job in jobs:
                    queue.enqueue(job)
        finally:
            queue.close()
        return
    asyncio.run(_prefill_async(target, url, kind, count))


async def _prefill_async(target: str, url: str, kind: str, count: int) -> None:
    if target == PGQUEUER:
        import asyncpg
        from pgqueuer.db import AsyncpgDriver
        from pgqueuer.queries import Queries

        conn = await asyncpg.connect(url)
        try:
            queries = Queries(AsyncpgDriver(conn))
            for start in range(0, count, 1000):
                size = min(1000, count - start)
                await queries.enqueue([kind] * size, [b""] * size, [0] * size)
        finally:
            await conn.close()
        return
    app = _procrastinate_app(url)
    async with app.open_async():
        task = app.tasks[kind]
        for start in range(0, count, 1000):
            size = min(1000, count - start)
            await task.batch_defer_async(*({} for _ in range(size)))
