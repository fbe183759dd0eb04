"""``final`` on PostgreSQL: one queue that many processes, on many machines, share.

``JobQueue(Config(postgres_url=...))`` builds a :class:`PostgresJobQueue`.
Every process that opens the same database and ``queue_name`` shares one
queue: any of them may enqueue; every one with workers claims and runs jobs.

The threads of one process:

- workers (``num_workers``) run handlers, one claimed job at a time;
- the fetcher claims jobs for idle workers: as many as there are idle
  workers, never more, so a claimed job is a started job (its PROCESSING
  status is true) and a busy process hoards nothing another could run.  So
  ``num_workers`` is also the largest claim: for short jobs, more workers
  mean fewer round trips per job.  It sleeps on LISTEN until an enqueue's
  NOTIFY, not in a poll;
- the completion writer (completions.py) batches completions;
- maintenance (leases.py): the lease heartbeat, the reaper of expired leases,
  due retries, pruning.

Processes that share a queue should share its settings: the handlers, by
name (a job names its handler, or runs the default ``Config.handler`` of
whichever process claims it), and ``max_retries`` (the process that ends a
run, or reaps an expired lease, applies its own).

Fairness: the fetcher asks the same ``FairPicker`` as the in-process queue
which priorities to claim, given which priorities have jobs queued in the
database.  So the bound holds for what each process claims: a waiting lower
priority is served within ``fairness_tokens + 1`` of that process's claims.
It is not a global bound on one job: a LOW job waits for the claims of
whichever process serves it, but every process serves lower priorities at
least once per ``fairness_tokens + 1`` claims, so no priority starves.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from types import MappingProxyType, TracebackType

import psycopg

from jobqueue import vocabulary
from jobqueue.final.config import Config
from jobqueue.final.fairness import FairPicker
from jobqueue.final.handlers import Handlers
from jobqueue.final.metrics import Counters, Metrics, PriorityMetrics
from jobqueue.final.postgres.completions import CompletionWriter
from jobqueue.final.postgres.connections import Link, Pool
from jobqueue.final.postgres.leases import Maintenance
from jobqueue.final.postgres.schema import ensure_schema
from jobqueue.final.postgres.store import CHANNEL, Claim, Store
from jobqueue.final.queue import JobQueue
from jobqueue.vocabulary import (
    Handler,
    Job,
    PersistenceError,
    Priority,
    QueueClosed,
    QueueFull,
    Status,
    check_timeout,
)

__all__ = ["PostgresJobQueue"]

logger = logging.getLogger(__name__)

_POLL_MIN, _POLL_MAX = 0.005, 0.05  # join() and a full queue poll, backing off between these


class PostgresJobQueue(JobQueue):
    """The ``final`` API over PostgreSQL.  Build it as ``JobQueue(Config(postgres_url=...))``."""

    def __init__(self, config: vocabulary.Config | None = None) -> None:
        if not isinstance(config, Config) or config.postgres_url is None:
            raise ValueError("postgres_url: PostgresJobQueue needs Config(postgres_url=...)")
        self._config = config
        self._url = url = config.postgres_url
        self._store = store = Store(config.queue_name)
        self._handlers = Handlers(config)
        self._pool = Pool(url)
        try:
            with self._pool.connection(f"open queue {config.queue_name!r}") as conn:
                ensure_schema(conn, config.queue_name)
        except BaseException:
            self._pool.close()
            raise
        self._picker = FairPicker(config.fairness_tokens)
        self._mutex = threading.Lock()
        self._ready: deque[Claim] = deque()  # claimed for idle workers, not yet started
        self._held: dict[int, Claim] = {}  # claimed, not yet run to the end: leases to renew
        # Waiters: workers.  Notified by the fetcher (claims arrived) and close().
        self._not_empty = threading.Condition(self._mutex)
        # Waiters: the fetcher.  Notified by a worker going idle, and close().
        self._wants_jobs = threading.Condition(self._mutex)
        # Waiters: producers blocked on a full priority.  Notified by the
        # fetcher when it claims (room, unless another producer takes it
        # first) and by close().  Room made by other processes is found by
        # polling: they send no NOTIFY for it.
        self._has_room = threading.Condition(self._mutex)
        self._producers_waiting = 0
        self._idle_workers = 0
        self._closed = False
        self._stopped = threading.Event()  # set by close(): ends join()'s and enqueue's polls
        self._counters = Counters(time.monotonic())  # this process's runs: utilization
        self._threads: list[threading.Thread] = []
        self._writer = CompletionWriter(store, url)
        self._maintenance = Maintenance(store, config, self._held_claims)
        if config.num_workers:  # a producer-only process runs no thread at all
            self._fetch_link = Link(url, synchronous_commit=False, listen=CHANNEL)
            self._writer.start()
            self._maintenance.start()
            self._threads = [
                threading.Thread(target=_worker, args=(self,), name=f"jobqueue-pg-{i}")
                for i in range(config.num_workers)
            ]
            self._fetcher = threading.Thread(target=self._fetch, name="jobqueue-pg-fetcher")
            for thread in [*self._threads, self._fetcher]:
                thread.start()

    def __enter__(self) -> PostgresJobQueue:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the public API -------------------------------------------------------------

    def enqueue(self, job: Job, timeout: float | None = None) -> None:
        """Add ``job`` to the shared queue; returns once the insert is committed.

        ``QueueFull`` if its priority has ``queue_size`` queued jobs, in all
        processes together, for ``timeout`` seconds; ``DuplicateJobError``
        if its id is live anywhere; ``PersistenceError`` if the server cannot
        be reached; ``QueueClosed`` after ``close()``.
        """
        self.enqueue_with_handler(job, None, timeout)

    def enqueue_with_handler(
        self, job: Job, handler: Handler | None, timeout: float | None = None
    ) -> None:
        """Add ``job``, to be run by ``handler``: ``Config.handler`` or one of
        ``Config.handlers``, because the process that runs it finds it by name."""
        if handler is None:
            if not isinstance(job, Job):
                raise TypeError(f"job must be a Job, got {type(job).__name__}")
            if self._config.num_workers:  # a producer-only process may not know the handlers
                self._handlers.for_job(job)
        else:
            job, _ = self._handlers.resolve(job, handler)
            if job.handler is None and handler is not self._config.handler:
                raise ValueError(
                    f"handler: job {job.id!r} would run in any process of queue "
                    f"{self._config.queue_name!r}, so its handler must have a name; "
                    "register it in Config.handlers"
                )
        check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = _POLL_MIN
        while True:
            if self._closed:
                raise QueueClosed(f"cannot enqueue job {job.id!r}: the queue is closed")
            with self._pool.connection(f"enqueue {job.id!r}") as conn:
                if self._store.enqueue(conn, job, self._config.queue_size):
                    return
            # Full.  Producers poll (gently): space is freed by any process.
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise QueueFull(
                    f"cannot enqueue job {job.id!r}: the {job.priority.name} queue of "
                    f"{self._config.queue_name!r} is full ({self._config.queue_size} "
                    f"jobs) after {timeout}s"
                )
            with self._mutex:
                if self._closed:
                    raise QueueClosed(f"cannot enqueue job {job.id!r}: the queue is closed")
                self._producers_waiting += 1
                try:
                    self._has_room.wait(pause if remaining is None else min(pause, remaining))
                finally:
                    self._producers_waiting -= 1
            pause = min(_POLL_MAX, pause * 2)

    def status(self, job_id: str) -> Status | None:
        """The job's status in the shared queue, or None if unknown (or pruned)."""
        with self._pool.connection(f"status of {job_id!r}") as conn:
            return self._store.status(conn, job_id, self._config.status_history)

    def metrics(self) -> Metrics:
        """The shared counts, one snapshot of the database, plus this process's workers."""
        with self._pool.connection("metrics") as conn:
            counts = self._store.counts(conn)
        with self._mutex:
            local = self._counters.snapshot(
                [0] * len(Priority), [0] * len(Priority), self._config.num_workers, time.monotonic()
            )
        by_priority = {p: PriorityMetrics(**counts[p]) for p in Priority}
        total = {
            key: sum(getattr(m, key) for m in by_priority.values())
            for key in ("queued", "retrying", "processing", "completed", "failed", "retried")
        }
        return Metrics(
            **total,
            by_priority=MappingProxyType(by_priority),
            workers=local.workers,
            busy_workers=local.busy_workers,
            utilization=local.utilization,
            uptime=local.uptime,
        )

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the shared queue has no unfinished job, from any process.

        Polls the database (gently): jobs finish in other processes, which
        send no NOTIFY for it.  False if ``timeout`` expired first.
        """
        check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = _POLL_MIN
        while True:
            with self._pool.connection("join") as conn:
                if not self._store.unfinished(conn):
                    return True
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            time.sleep(pause if remaining is None else min(pause, remaining))
            pause = min(_POLL_MAX, pause * 2)

    def close(self) -> None:
        """Stop this process's workers after their jobs in flight.  Idempotent.

        Jobs claimed here but not started go back to the queue at once;
        queued jobs stay in the database for the other processes (or the
        next open).  Waits up to ``shutdown_timeout`` for running handlers.
        """
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            unstarted = list(self._ready)
            self._ready.clear()
            for claim in unstarted:
                del self._held[claim.seq]
            self._not_empty.notify_all()
            self._wants_jobs.notify_all()
            self._has_room.notify_all()
        self._stopped.set()
        self._give_back(unstarted)
        if self._config.num_workers:
            self._wake_fetcher()
        deadline = time.monotonic() + self._config.shutdown_timeout
        for thread in [*self._threads, self._fetcher] if self._threads else []:
            if thread is not threading.current_thread():  # close() from a handler
                thread.join(max(0.0, deadline - time.monotonic()))
        running = sum(thread.is_alive() for thread in self._threads)
        if running:
            logger.warning(
                "close(): %d jobs still running after shutdown_timeout=%ss; "
                "they run again elsewhere when their leases expire",
                running,
                self._config.shutdown_timeout,
            )
        if self._config.num_workers:
            self._writer.stop()
            self._writer.join(max(1.0, deadline - time.monotonic()))
            self._maintenance.stop()
            self._maintenance.join(max(1.0, deadline - time.monotonic()))
        self._pool.close()

    # -- the fetcher ------------------------------------------------------------------

    def _fetch(self) -> None:
        """Claim jobs for idle workers until close(); sleep on LISTEN when none is queued."""
        link = self._fetch_link
        waiting = [0] * len(Priority)  # per priority: 1 if jobs were queued at the last look
        try:
            while True:
                with self._mutex:
                    while not self._closed and self._idle_workers <= len(self._ready):
                        self._wants_jobs.wait()
                    if self._closed:
                        return
                    wanted = self._idle_workers - len(self._ready)
                try:
                    conn = link.get()
                    for _ in conn.notifies(timeout=0):
                        pass  # drop the backlog: the query below sees what they announced
                    if not any(waiting):  # else: as the last claim saw it, no round trip
                        waiting = self._store.waiting(conn)
                    claims, waiting = self._claim(conn, wanted, waiting)
                    if not claims and not self._closed:  # (the drain may have eaten close's NOTIFY)
                        # Nothing we could take: sleep until an enqueue's NOTIFY.
                        # The timeout is a fallback; due retries and expired leases
                        # are re-queued by maintenance, with a NOTIFY too.
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            pass
                        continue
                except Exception as exc:  # the server went away, or a bug: never die of it
                    link.broken()
                    waiting = [0] * len(Priority)
                    log = logger.warning if isinstance(exc, psycopg.Error) else logger.exception
                    log("queue %r: cannot claim jobs: %s", self._store.queue, exc)
                    self._stopped.wait(0.5)
                    continue
                with self._mutex:
                    if not self._closed:
                        self._ready.extend(claims)
                        self._held.update((claim.seq, claim) for claim in claims)
                        if self._producers_waiting:
                            self._has_room.notify_all()
                        self._not_empty.notify(len(claims))
                        continue
                self._give_back(claims)  # close() ran while we claimed
                return
        finally:
            link.close()

    def _claim(
        self, conn: psycopg.Connection[tuple[object, ...]], wanted: int, waiting: list[int]
    ) -> tuple[list[Claim], list[int]]:
        """Claim up to ``wanted`` jobs, the priorities chosen by the fair picker from
        ``waiting``; returns them in the picker's order, and ``waiting`` after."""
        if not any(waiting):
            return [], waiting
        order = []
        for _ in range(wanted):
            chosen = self._picker.choose(waiting)
            assert chosen is not None
            order.append(chosen)
        counts = [order.count(p) for p in Priority]
        claimed, waiting = self._store.claim(conn, counts, self._config.lease_timeout)
        # Hand them out in the picker's order; a priority that came up short
        # (another process took its jobs) leaves its turns to the rest.
        by_priority: list[deque[Claim]] = [deque() for _ in Priority]
        for claim in claimed:
            by_priority[claim.job.priority].append(claim)
        ordered = [by_priority[p].popleft() for p in order if by_priority[p]]
        ordered.extend(claim for rest in by_priority for claim in rest)
        return ordered, waiting

    def _held_claims(self) -> list[Claim]:
        with self._mutex:
            return list(self._held.values())

    def _give_back(self, claims: list[Claim]) -> None:
        if not claims:
            return
        try:
            with self._pool.connection("close") as conn:
                self._store.release(conn, claims)
        except PersistenceError as exc:
            logger.warning("close(): %d claimed jobs wait for their leases: %s", len(claims), exc)

    def _wake_fetcher(self) -> None:
        try:
            with self._pool.connection("close") as conn:
                conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, self._store.queue))
        except PersistenceError:
            pass  # it wakes by its timeout

    # -- the workers ------------------------------------------------------------------

    def _next_claim(self) -> tuple[Claim, float] | None:
        """Wait for a claimed job; None tells the worker to exit."""
        with self._mutex:
            self._idle_workers += 1
            if self._idle_workers > len(self._ready):
                self._wants_jobs.notify()
            try:
                while not self._ready and not self._closed:
                    self._not_empty.wait()
                if self._closed:
                    return None
                claim = self._ready.popleft()
            finally:
                self._idle_workers -= 1
            now = time.monotonic()
            self._counters.run_started(claim.job.priority, now)
            return claim, now

    def _ended(self, claim: Claim, started: float, error: Exception | None) -> None:
        """Record one run: completions are batched; a retry or failure is written now."""
        with self._mutex:
            self._counters.run_ended(claim.job.priority, started, time.monotonic())
            self._held.pop(claim.seq, None)
        if error is None:
            self._writer.add(claim)
            return
        job = claim.job
        retry = claim.attempt <= self._config.max_retries
        try:
            with self._pool.connection(f"record the failure of {job.id!r}") as conn:
                if retry:
                    delay = self._retry_delay(claim.attempt)
                    if self._store.retrying(conn, claim, delay, repr(error)):
                        self._maintenance.retry_at(time.monotonic() + delay)
                    logger.info(
                        "job %r failed (%r); retry %d in %.3gs", job.id, error, claim.attempt, delay
                    )
                else:
                    self._store.failed(conn, claim, repr(error))
                    logger.error(
                        "job %r failed for good after %d attempts: %r", job.id, claim.attempt, error
                    )
        except PersistenceError as exc:  # it runs again after its lease: at least once
            logger.warning("job %r: could not record its failure: %s", job.id, exc)

    def _retry_delay(self, retry: int) -> float:
        delay = self._config.retry_delay(retry)
        jitter = self._config.retry_jitter
        return delay * random.uniform(1 - jitter, 1 + jitter) if jitter else delay


def _worker(jq: PostgresJobQueue) -> None:
    """Run claimed jobs until close()."""
    while (taken := jq._next_claim()) is not None:
        claim, started = taken
        try:
            handler = jq._handlers.for_job(claim.job)  # by name: any process may have enqueued it
            handler(claim.job.payload)
        except Exception as exc:
            # A failing handler (or a missing one) never kills a worker.
            jq._ended(claim, started, exc)
        else:
            jq._ended(claim, started, None)
