"""``final`` on PostgreSQL: one queue that many processes, on many machines, share.

``JobQueue(Config(postgres_url=...))`` builds a :class:`PostgresJobQueue`.
Every process that opens the same database and ``queue_name`` shares one
queue: any of them may enqueue; every one with workers claims and runs jobs.

The threads of one process:

- workers (``num_workers``) run handlers, one claimed job at a time;
- the fetcher claims jobs for idle workers, and, from a deep backlog of
  short jobs, a few ahead of them (below).  It sleeps on LISTEN until an
  enqueue's NOTIFY, not in a poll;
- the completion writer (completions.py) batches completions;
- maintenance (leases.py): the lease heartbeat, the reaper of expired leases,
  due retries, pruning.

Claiming ahead (ahead.py).  From a deep backlog, the fetcher keeps a few
jobs claimed beyond its idle workers, as many as its workers start during a
claim's round trip (none for long jobs), at most ``8 * num_workers``.  A job
claimed ahead is leased like a running one: the heartbeat renews it; after
``kill -9`` it runs elsewhere once its lease expires, and the expired claim
counts as an attempt, as any claim does.  ``status()`` says PROCESSING: it is
this process's, to start as soon as a worker is free, and ``cancel()``
cannot take it back.  ``close()`` gives it back to the queue at once, its
attempt undone, and so does ``pause()`` of its priority.  With a shallow
backlog nothing is claimed ahead, and a claimed job is a started job.

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

The newer calls (``enqueue_many``, ``run_at``, ``cancel``, ``submit``, dead
letters, wait age, ``pause``) work here too; docs/postgres.md says where a
shared store changes them: ``pause()`` is per process, and ``submit()``'s
futures follow the job's row (watch.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from types import MappingProxyType

import psycopg

from jobqueue import vocabulary
from jobqueue.final import futures
from jobqueue.final.config import Config
from jobqueue.final.context import enter_worker
from jobqueue.final.dead import DeadJob, error_text
from jobqueue.final.fairness import FairPicker
from jobqueue.final.futures import JobFuture
from jobqueue.final.handlers import Handlers
from jobqueue.final.metrics import Counters, Metrics, PriorityMetrics
from jobqueue.final.pause import Pauses
from jobqueue.final.postgres.ahead import Ahead
from jobqueue.final.postgres.completions import CompletionWriter
from jobqueue.final.postgres.connections import Link, Pool
from jobqueue.final.postgres.leases import Maintenance
from jobqueue.final.postgres.operations import Operations
from jobqueue.final.postgres.schema import ensure_schema
from jobqueue.final.postgres.store import CHANNEL, Claim, Conn, Store
from jobqueue.final.postgres.watch import Watcher
from jobqueue.final.queue import JobQueue
from jobqueue.vocabulary import (
    Handler,
    Job,
    PermanentFailure,
    PersistenceError,
    Priority,
    QueueClosed,
    QueueFull,
    Status,
    batch_shares,
    check_job_id,
    check_timeout,
    log_base_exception,
    refuse_inside_handler,
    wait_seconds,
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
        self._ops = Operations(store)
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
        self._ahead = Ahead(config.num_workers)  # claims beyond the idle workers (ahead.py)
        self._closed = False
        self._stopped = threading.Event()  # set by close(): ends join()'s and enqueue's polls
        # This process's runs (utilization) and recent claims' waits (wait_p50/p99).
        self._counters = Counters(time.monotonic())
        self._pauses = Pauses()  # per process: what this process claims (pause.py)
        self._watcher: Watcher | None = None  # submit()'s futures, from the first submit
        self._threads: list[threading.Thread] = []
        self._in_handler = threading.local()  # .job: the job a worker thread is running
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
        size = self._config.queue_size
        self._until_room(
            f"job {job.id!r}",
            lambda conn: self._store.enqueue(conn, job, size),
            f"the {job.priority.name} queue of {self._config.queue_name!r} is full "
            f"({size} jobs) after {timeout}s",
            timeout,
        )
        self._due_at(job)

    def _due_at(self, job: Job) -> None:
        """A delayed job was enqueued here: wake this process's maintenance when it is due
        (other processes find it within a second: their maintenance polls)."""
        if job.run_at is not None and self._config.num_workers:
            self._maintenance.retry_at(time.monotonic() + max(0.0, job.run_at - time.time()))

    def enqueue_many(self, jobs: Iterable[Job], timeout: float | None = None) -> None:
        """Add every job of ``jobs``, each run by the handler it names: all or none.

        One transaction, one multi-row INSERT, one commit: if it raises, no
        process sees any job of the batch.  Waits for room for the whole
        batch (``QueueFull`` after ``timeout``); ``ValueError`` if one
        priority's share exceeds ``queue_size``; ``DuplicateJobError`` if an
        id is in the batch twice or live in any process.
        """
        batch = list(jobs)
        for job in batch:
            if not isinstance(job, Job):
                raise TypeError(f"job must be a Job, got {type(job).__name__}")
            if self._config.num_workers:  # a producer-only process may not know the handlers
                self._handlers.for_job(job)
        check_timeout(timeout)
        size = self._config.queue_size
        shares = batch_shares(batch, size, unique_ids=True)
        if not batch:
            return
        self._until_room(
            f"a batch of {len(batch)} jobs",
            lambda conn: self._store.enqueue_many(conn, batch, shares, size),
            f"no room for all of it in queue {self._config.queue_name!r} "
            f"(queue_size={size} per priority) after {timeout}s",
            timeout,
        )
        for job in batch:
            self._due_at(job)

    def _until_room(
        self,
        what: str,
        insert: Callable[[Conn], bool],
        full: str,
        timeout: float | None,
    ) -> None:
        """Run ``insert`` until it finds room (True), polling gently while it is full:
        room is made by any process, and they send no NOTIFY for it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = _POLL_MIN
        while True:
            if self._closed:
                raise QueueClosed(f"cannot enqueue {what}: the queue is closed")
            with self._pool.connection(f"enqueue {what}") as conn:
                if insert(conn):
                    return
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise QueueFull(f"cannot enqueue {what}: {full}")
            with self._mutex:
                if self._closed:
                    raise QueueClosed(f"cannot enqueue {what}: the queue is closed")
                self._producers_waiting += 1
                try:
                    self._has_room.wait(pause if remaining is None else min(pause, remaining))
                finally:
                    self._producers_waiting -= 1
            pause = min(_POLL_MAX, pause * 2)

    def submit(self, job: Job, timeout: float | None = None) -> JobFuture:
        """``enqueue(job)``, and a Future of its outcome, wherever it runs (``watch.py``):
        the return value (or last exception) if this process runs it to the end,
        else None (or ``JobFailedElsewhere``); the Future follows the row."""
        if not isinstance(job, Job):
            raise TypeError(f"job must be a Job, got {type(job).__name__}")
        future = JobFuture(job.id, self._cancel_future)
        with self._mutex:
            if self._watcher is None and not self._closed:
                self._watcher = Watcher(self._ops, self._url)
                self._watcher.start()
            watcher = self._watcher
        if watcher is None:
            raise QueueClosed(f"cannot enqueue job {job.id!r}: the queue is closed")
        watcher.expect(job.id)  # it may run here before watch(): keep its outcome
        try:
            self.enqueue(job, timeout)
        except BaseException:
            watcher.unexpect(job.id)
            raise
        watcher.watch(job.id, future)
        return future

    def _cancel_future(self, job_id: str, future: JobFuture) -> bool:
        return self.cancel(job_id)  # resolves ``future`` as it is the id's

    def cancel(self, job_id: str) -> bool:
        """True if a queued, scheduled or retrying job of the shared queue will now never
        run, in any process; False if it is running, finished or unknown.

        One conditional UPDATE (``Store.cancel``): against a claim of the same
        job by another process, exactly one of the two wins.
        """
        check_job_id(job_id)
        with self._pool.connection(f"cancel {job_id!r}") as conn:
            done = self._ops.cancel(conn, job_id)
        if done:
            logger.info("job %r cancelled", job_id)
            watcher = self._watcher
            future = watcher.forget(job_id) if watcher is not None else None
            if future is not None:
                futures.cancelled(future)
        return done

    def status(self, job_id: str) -> Status | None:
        """The job's status in the shared queue, or None if unknown (or pruned)."""
        with self._pool.connection(f"status of {job_id!r}") as conn:
            return self._store.status(conn, job_id, self._config.status_history)

    def metrics(self) -> Metrics:
        """The shared counts, one snapshot of the database, plus this process's workers.

        ``oldest_wait`` is shared (the server's clock); ``wait_p50``/``wait_p99``
        are the waits of the jobs this process claimed lately; ``paused`` is
        this process's pauses.
        """
        with self._pool.connection("metrics") as conn:
            counts = self._store.counts(conn)
        with self._mutex:
            local = self._counters.snapshot(
                [0] * len(Priority),
                [0] * len(Priority),
                self._config.num_workers,
                time.monotonic(),
                oldest=[0.0] * len(Priority),  # ignored: nothing is queued in this process
                paused=self._pauses.frozen(),
            )
        by_priority = {
            p: PriorityMetrics(
                **counts[p],
                wait_p50=local.by_priority[p].wait_p50,
                wait_p99=local.by_priority[p].wait_p99,
            )
            for p in Priority
        }
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
            paused=local.paused,
        )

    def dead(self, limit: int = 100) -> list[DeadJob]:
        """Up to ``limit`` jobs that failed for good, newest first: the FAILED rows among
        the newest ``status_history`` finished jobs of the shared queue, payload kept."""
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError(f"limit must be an int, got {type(limit).__name__}")
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        with self._pool.connection("dead") as conn:
            rows = self._ops.dead(conn, limit, self._config.status_history)
        found = []
        for job_id, priority, payload, handler, created, attempts, error, failed_at in rows:
            job = Job(
                id=job_id,
                priority=Priority(priority),
                payload=bytes(payload),
                attempts=attempts,
                created=created,
                handler=handler,
            )
            found.append(DeadJob(job, attempts, error, failed_at))
        return found

    def requeue(self, job_id: str, timeout: float | None = None) -> bool:
        """Queue a dead job again, QUEUED with its attempts reset; False if ``job_id`` is
        not a dead job (or is live again).  One conditional UPDATE: of two processes
        requeueing it at once, one wins.  Like a retry, it re-enters past
        ``queue_size`` (it was accepted once), so ``timeout`` is checked, not used."""
        check_job_id(job_id)
        check_timeout(timeout)
        with self._pool.connection(f"requeue {job_id!r}") as conn:
            done = self._ops.requeue(conn, job_id, self._config.status_history)
        if done:
            logger.info("job %r requeued", job_id)
        return done

    def pause(self, priority: Priority | None = None) -> None:
        """This process claims no new job of ``priority`` (of any, if None).

        Per process: other processes sharing the queue go on claiming it;
        pause each of them (a deploy pauses every process) to stop a priority
        everywhere.  Enqueues go on; running jobs finish (``pause.py``).
        """
        with self._mutex:
            self._pauses.set(priority, True)
            ahead = self._unready(self._paused)
        self._release_unstarted(ahead, "pause()")  # claimed ahead, not started: not run now

    def resume(self, priority: Priority | None = None) -> None:
        """Undo ``pause`` in this process: it claims ``priority``'s jobs (every one's) again."""
        with self._mutex:
            self._pauses.set(priority, False)
        if self._config.num_workers and not self._closed:
            self._wake_fetcher()  # it may sleep on LISTEN with only paused jobs queued

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the shared queue has no unfinished job, from any process.

        Polls the database (gently): jobs finish in other processes, which
        send no NOTIFY for it.  False if ``timeout`` expired first.
        """
        check_timeout(timeout)
        refuse_inside_handler(self._in_handler, "join()")
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
            unstarted = self._unready(lambda claim: True)
            self._not_empty.notify_all()
            self._wants_jobs.notify_all()
            self._has_room.notify_all()
        self._stopped.set()
        self._release_unstarted(unstarted, "close()")
        if self._config.num_workers:
            self._wake_fetcher()
        deadline = time.monotonic() + self._config.shutdown_timeout
        for thread in [*self._threads, self._fetcher] if self._threads else []:
            if thread is not threading.current_thread():  # close() from a handler
                thread.join(wait_seconds(max(0.0, deadline - time.monotonic())))
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
            self._writer.join(wait_seconds(max(1.0, deadline - time.monotonic())))
            self._maintenance.stop()
            self._maintenance.join(wait_seconds(max(1.0, deadline - time.monotonic())))
        if self._watcher is not None:  # after the writer: its completions are committed
            self._watcher.stop(self._final_states)
        self._pool.close()

    def _final_states(self, ids: list[str]) -> list[tuple[str, str, str | None]]:
        with self._pool.connection("resolve futures") as conn:
            return self._ops.final_states(conn, ids)

    # -- the fetcher ------------------------------------------------------------------

    def _fetch(self) -> None:
        """Claim jobs for idle workers until close(); sleep on LISTEN when none is queued."""
        link = self._fetch_link
        waiting = [0] * len(Priority)  # per priority: 1 if jobs were queued at the last look
        try:
            while True:
                with self._mutex:
                    while not self._closed and not (wanted := self._claims_wanted()):
                        self._wants_jobs.wait()
                    if self._closed:
                        return
                try:
                    conn = link.get()
                    for _ in conn.notifies(timeout=0):
                        pass  # drop the backlog: the query below sees what they announced
                    if not any(waiting):  # else: as the last claim saw it, no round trip
                        waiting = self._store.waiting(conn)
                    with self._mutex:
                        paused = self._pauses.any
                        mask = self._pauses.mask
                    # Paused priorities count as empty: the picker never chooses them.
                    began = time.monotonic()
                    claims, waiting, deep = self._claim(
                        conn, wanted, mask(waiting) if paused else waiting
                    )
                    took = time.monotonic() - began
                    if not claims and not self._closed:  # (the drain may have eaten close's NOTIFY)
                        with self._mutex:
                            self._ahead.lost()
                        # Nothing we could take: sleep until an enqueue's NOTIFY.
                        # The timeout is a fallback; due retries and expired leases
                        # are re-queued by maintenance, with a NOTIFY too.
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            pass
                        continue
                except Exception as exc:  # the server went away, or a bug: never die of it
                    link.broken()
                    waiting = [0] * len(Priority)
                    with self._mutex:
                        self._ahead.lost()
                    log = logger.warning if isinstance(exc, psycopg.Error) else logger.exception
                    log("queue %r: cannot claim jobs: %s", self._store.queue, exc)
                    self._stopped.wait(0.5)
                    continue
                with self._mutex:
                    closed = self._closed
                    if self._pauses.any:  # pause() ran while we claimed: not run now
                        not_now, claims = _partition(claims, self._paused)
                        deep = self._pauses.mask(deep)
                    else:
                        not_now = []
                    if not closed:
                        self._ahead.claimed(took, any(deep))
                        for claim in claims:
                            self._counters.waits.recent[claim.job.priority].append(claim.waited)
                        self._ready.extend(claims)
                        self._held.update((claim.seq, claim) for claim in claims)
                        if self._producers_waiting:
                            self._has_room.notify_all()
                        self._not_empty.notify(len(claims))
                self._release_unstarted(not_now, "pause()")
                if closed:
                    self._release_unstarted(claims, "close()")  # close() ran while we claimed
                    return
        finally:
            link.close()

    def _paused(self, claim: Claim) -> bool:
        """Whether ``claim``'s priority is paused in this process.  Under the mutex."""
        return self._pauses.paused[claim.job.priority]

    def _claims_wanted(self) -> int:
        """How many jobs the fetcher should claim now (ahead.py); 0 to wait.  Under the mutex."""
        return self._ahead.wanted(self._idle_workers, len(self._ready))

    def _unready(self, which: Callable[[Claim], bool]) -> list[Claim]:
        """Take the claims ``which`` selects out of the ready ones; they are no longer
        held (the caller releases them).  Under the mutex."""
        taken, kept = _partition(self._ready, which)
        if taken:
            self._ready.clear()
            self._ready.extend(kept)
            for claim in taken:
                del self._held[claim.seq]
        return taken

    def _claim(
        self, conn: psycopg.Connection[tuple[object, ...]], wanted: int, waiting: list[int]
    ) -> tuple[list[Claim], list[int], list[int]]:
        """Claim up to ``wanted`` jobs, the priorities chosen by the fair picker from
        ``waiting``; returns them in the picker's order, and ``waiting`` and the
        deep-backlog flags after (``Store.claim``)."""
        if not any(waiting):
            return [], waiting, [0] * len(Priority)
        order = []
        for _ in range(wanted):
            chosen = self._picker.choose(waiting)
            assert chosen is not None
            order.append(chosen)
        counts = [order.count(p) for p in Priority]
        claimed, waiting, deep = self._store.claim(
            conn, counts, self._config.lease_timeout, self._ahead.most
        )
        # Hand them out in the picker's order; a priority that came up short
        # (another process took its jobs) leaves its turns to the rest.
        by_priority: list[deque[Claim]] = [deque() for _ in Priority]
        for claim in claimed:
            by_priority[claim.job.priority].append(claim)
        ordered = [by_priority[p].popleft() for p in order if by_priority[p]]
        ordered.extend(claim for rest in by_priority for claim in rest)
        return ordered, waiting, deep

    def _held_claims(self) -> list[Claim]:
        with self._mutex:
            return list(self._held.values())

    def _release_unstarted(self, claims: list[Claim], why: str) -> None:
        """Give claimed, never started jobs back to the queue, their attempt undone."""
        if not claims:
            return
        try:
            with self._pool.connection(why) as conn:
                self._store.release(conn, claims)
        except PersistenceError as exc:
            logger.warning("%s: %d claimed jobs wait for their leases: %s", why, len(claims), exc)

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
            if self._ahead.depth and self._claims_wanted():
                self._wants_jobs.notify()  # claims ahead are starting: claim more
            now = time.monotonic()
            self._counters.run_started(claim.job.priority, now)
            return claim, now

    def _ended(self, claim: Claim, started: float, error: BaseException | None) -> None:
        """Record one run: completions are batched; a retry or failure is written now."""
        with self._mutex:
            ended = time.monotonic()
            self._counters.run_ended(claim.job.priority, started, ended)
            self._ahead.ran(ended - started)
            self._held.pop(claim.seq, None)
        if error is None:
            self._writer.add(claim)
            return
        job = claim.job
        # A PermanentFailure says another attempt cannot cure it: failed for good now.
        retry = claim.attempt <= self._config.max_retries and not isinstance(
            error, PermanentFailure
        )
        try:
            with self._pool.connection(f"record the failure of {job.id!r}") as conn:
                if retry:
                    delay = self._config.backoff(claim.attempt)
                    if self._store.retrying(conn, claim, delay, error_text(error)):
                        self._maintenance.retry_at(time.monotonic() + delay)
                    logger.info(
                        "job %r failed (%r); retry %d in %.3gs", job.id, error, claim.attempt, delay
                    )
                else:
                    self._store.failed(conn, claim, error_text(error))
                    logger.error(
                        "job %r failed for good after %d attempts: %r", job.id, claim.attempt, error
                    )
        except PersistenceError as exc:  # it runs again after its lease: at least once
            logger.warning("job %r: could not record its failure: %s", job.id, exc)


def _partition(
    claims: Iterable[Claim], which: Callable[[Claim], bool]
) -> tuple[list[Claim], list[Claim]]:
    """(the claims ``which`` selects, the others), each in order."""
    chosen: list[Claim] = []
    others: list[Claim] = []
    for claim in claims:
        (chosen if which(claim) else others).append(claim)
    return chosen, others


def _worker(jq: PostgresJobQueue) -> None:
    """Run claimed jobs until close()."""
    slot = enter_worker(jq)  # current_job(): context.py
    while (taken := jq._next_claim()) is not None:
        claim, started = taken
        jq._in_handler.job = slot.job = claim.job  # job.attempts + 1 is the claim's attempt
        try:
            handler = jq._handlers.for_job(claim.job)  # by name: any process may have enqueued it
            result = handler(claim.job.payload)
        except BaseException as exc:
            # A failing handler (or a missing one) never kills a worker, whatever it raised.
            log_base_exception(logger, claim.job, exc)
            if jq._watcher is not None:  # before the row is final: see watch.py
                jq._watcher.ran(claim.job.id, exc, None)
            jq._ended(claim, started, exc)
        else:
            if jq._watcher is not None:
                jq._watcher.ran(claim.job.id, None, result)
            jq._ended(claim, started, None)
        finally:
            jq._in_handler.job = slot.job = None
