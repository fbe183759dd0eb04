"""``jobqueue worker``: run the jobs of a PostgreSQL queue, in one process or several.

One process runs ``--workers`` threads: right for I/O-bound handlers, which
release the GIL while they wait.  A CPU-bound handler holds the GIL, so its
jobs run one at a time however many threads there are; ``--processes P``
starts P such processes, each with its own interpreter and its own GIL, all
claiming from the same queue.  They are *spawned*, not forked: a fork after
threads exist copies locks that some other thread held, and the child can
deadlock on them.

Shutdown is graceful.  The first SIGTERM or SIGINT stops intake: no job is
claimed any more, jobs in flight finish (up to ``--shutdown-timeout``
seconds), and the command exits 0.  Queued jobs stay in the database for the
other workers.  A job still running at the deadline keeps its lease until it
expires, and then another worker runs it again: the command exits 1.  A
second signal stops at once (exit 1), as it does in Celery.

With ``--processes``, the parent only supervises: it forwards the first
signal to its children as SIGTERM, and exits 0 when all of them drained.
A child whose parent dies drains too, so no orphan claims jobs unsupervised.
A child that dies on its own (a crash, ``kill -9``, the OOM killer) stops the
others and the command exits 1, so the process manager (systemd, Kubernetes)
restarts the whole set; the dead child's jobs run again after their leases.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from multiprocessing.connection import wait
from types import FrameType
from typing import Any, Protocol

from jobqueue.vocabulary import Handler, JobQueueError

__all__ = [
    "Closable",
    "WorkerOptions",
    "add_arguments",
    "load_handlers",
    "on_stop_signals",
    "options_from_args",
    "run",
    "run_one",
    "serve",
    "supervise",
]

logger = logging.getLogger(__name__)

#: The signals that start a graceful shutdown.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

#: The longest the main thread waits in one go, in seconds.  The race it
#: prevents: Python runs signal handlers in the main thread, but the kernel may
#: hand a process's signal to any thread; handed to a worker thread, it only
#: sets a flag that the main thread reads when its wait ends, which for
#: ``close()`` is up to ``shutdown_timeout`` later (a second signal that did
#: not stop at once).  So the main thread waits in slices, and close() runs in
#: a thread of its own.  Blocking the signals in the queue's threads instead
#: would leak into the handlers' subprocesses: a child started by a handler
#: inherits the mask, and ignores SIGTERM.
_SIGNAL_SLICE = 0.1

#: Seconds the parent allows a child beyond its shutdown_timeout: the
#: interpreter's start-up and the queue's close (its connections) take time too.
EXIT_GRACE = 10.0


class Closable(Protocol):
    """What ``serve`` needs of a queue: ``close()`` stops intake and waits for jobs in flight."""

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """The command's options, checked.  Plain data: it crosses to spawned children."""

    postgres_url: str
    handlers: str  # "package.module:NAME"
    workers: int
    queue: str
    processes: int
    shutdown_timeout: float
    lease_timeout: float
    log_level: int = logging.WARNING


OpenQueue = Callable[[WorkerOptions, Mapping[str, Handler]], Closable]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--postgres-url",
        required=True,
        metavar="URL",
        help="libpq URI or key=value string; keep the password in ~/.pgpass or PGPASSWORD",
    )
    parser.add_argument(
        "--handlers",
        required=True,
        metavar="MODULE:NAME",
        help="a mapping of handler names to callables, e.g. myapp.tasks:HANDLERS",
    )
    parser.add_argument(
        "--workers", type=int, default=4, metavar="N", help="threads per process (default 4)"
    )
    parser.add_argument(
        "--queue", default="default", metavar="NAME", help="queue name (default: default)"
    )
    parser.add_argument(
        "--processes", type=int, default=1, metavar="P", help="worker processes (default 1)"
    )
    parser.add_argument(
        "--shutdown-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds in-flight jobs get to finish after SIGTERM (default 30)",
    )
    parser.add_argument(
        "--lease-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds before a dead worker's job runs elsewhere (default 30)",
    )


def options_from_args(args: argparse.Namespace) -> WorkerOptions:
    """The checked options; ``ValueError`` names the option that is wrong."""
    if not args.postgres_url.strip():
        raise ValueError("--postgres-url must not be empty")
    if not args.queue:
        raise ValueError("--queue must not be empty")
    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    if args.processes < 1:
        raise ValueError(f"--processes must be >= 1, got {args.processes}")
    if not args.shutdown_timeout >= 0:  # also refuses nan
        raise ValueError(f"--shutdown-timeout must be >= 0, got {args.shutdown_timeout}")
    if not args.lease_timeout > 0:
        raise ValueError(f"--lease-timeout must be > 0, got {args.lease_timeout}")
    return WorkerOptions(
        postgres_url=args.postgres_url,
        handlers=args.handlers,
        workers=args.workers,
        queue=args.queue,
        processes=args.processes,
        shutdown_timeout=args.shutdown_timeout,
        lease_timeout=args.lease_timeout,
        log_level=logging.getLogger().getEffectiveLevel(),
    )


def load_handlers(spec: str) -> Mapping[str, Handler]:
    """Import ``package.module:NAME`` and check it maps handler names to callables.

    Raises ``ValueError`` (or ``TypeError``) naming ``--handlers`` and what is wrong.
    """
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        raise ValueError(f"--handlers must look like package.module:NAME, got {spec!r}")
    try:
        found: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"--handlers: cannot import {module_name!r}: {exc}") from exc
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise ValueError(f"--handlers: {module_name!r} has no {attribute!r}") from None
    if not isinstance(found, Mapping):
        raise TypeError(f"--handlers: {spec} must be a mapping, got {type(found).__name__}")
    if not found:
        raise ValueError(f"--handlers: {spec} is empty")
    for name, handler in found.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"--handlers: {spec} names must be non-empty str, got {name!r}")
        if not callable(handler):
            raise TypeError(f"--handlers: {spec}[{name!r}] is not callable")
    return found


def open_postgres_queue(options: WorkerOptions, handlers: Mapping[str, Handler]) -> Closable:
    """The shared queue this process works on, with ``options.workers`` threads."""
    from jobqueue.final import Config, JobQueue

    settings: dict[str, Any] = {
        "postgres_url": options.postgres_url,
        "queue_name": options.queue,
        "lease_timeout": options.lease_timeout,
    }
    config = Config(
        num_workers=options.workers,
        shutdown_timeout=options.shutdown_timeout,
        handlers=handlers,
        **settings,
    )
    return JobQueue(config)


def serve(options: WorkerOptions, stop: threading.Event, open_queue: OpenQueue) -> None:
    """Open the queue, run its jobs until ``stop`` is set, then drain and close it."""
    handlers = load_handlers(options.handlers)
    queue = open_queue(options, handlers)
    logger.info(
        "process %d: %d workers on queue %r, handlers %s",
        os.getpid(),
        options.workers,
        options.queue,
        ", ".join(sorted(handlers)),
    )
    try:
        while not stop.wait(_SIGNAL_SLICE):
            pass
        logger.info("process %d: draining (up to %ss)", os.getpid(), options.shutdown_timeout)
    finally:
        _close_in_slices(queue)
    logger.info("process %d: stopped", os.getpid())


def _close_in_slices(queue: Closable) -> None:
    """``queue.close()`` in a thread of its own, while this thread waits in slices
    (``_SIGNAL_SLICE`` says why); raises what ``close()`` raised, as a call would."""
    closed: Future[None] = Future()

    def close() -> None:
        try:
            queue.close()
        except BaseException as exc:
            closed.set_exception(exc)
        else:
            closed.set_result(None)

    closer = threading.Thread(target=close, name="jobqueue-worker-close")
    closer.start()
    while closer.is_alive():
        closer.join(_SIGNAL_SLICE)
    closed.result()


def still_running() -> int:
    """Threads other than this one that would keep the interpreter from exiting."""
    me = threading.current_thread()
    return sum(t is not me and not t.daemon and t.is_alive() for t in threading.enumerate())


@contextlib.contextmanager
def on_stop_signals(first: Callable[[], None], second: Callable[[], None]) -> Iterator[None]:
    """Call ``first`` on the first SIGTERM or SIGINT, and ``second`` on any later one."""
    fired = False

    def handle(signum: int, frame: FrameType | None) -> None:
        nonlocal fired
        if fired:
            second()
            return
        fired = True
        first()
        _say(
            logging.WARNING,
            f"{signal.Signals(signum).name}: stopping intake, jobs in flight finish",
        )

    previous = {signum: signal.signal(signum, handle) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _say(level: int, message: str) -> None:
    """Log ``message`` from a signal handler, or write it to stderr if logging cannot.

    A handler runs in the main thread between two of its steps, and that
    thread may be in the middle of writing a log line itself: the stream's
    buffer then refuses the handler's line ("reentrant call").  The message
    must not turn into an exception that stops the handler halfway.
    """
    try:
        logger.log(level, "%s", message)
    except RuntimeError:
        os.write(2, f"{logging.getLevelName(level)} {__name__}: {message}\n".encode())


def _exit_now() -> None:
    try:
        _say(logging.ERROR, "second signal: exiting without waiting for jobs in flight")
        with contextlib.suppress(RuntimeError):  # as in _say: a line may be half written
            logging.shutdown()
    finally:
        os._exit(1)  # the worker threads are not daemons: only this leaves them behind


def run_one(
    options: WorkerOptions,
    open_queue: OpenQueue = open_postgres_queue,
    parent_sentinel: int | None = None,
) -> int:
    """One worker process, in this process: 0 if it drained, 1 if jobs were left running.

    With ``parent_sentinel`` (a spawned child's), it drains when the parent dies.
    """
    stop = threading.Event()
    try:
        with on_stop_signals(stop.set, _exit_now):
            if parent_sentinel is not None:
                # Watched only once the handlers are in: a parent killed while this
                # child starts must not meet SIGTERM's default action (exit, no drain).
                watcher = threading.Thread(
                    target=_drain_when_orphaned, args=(parent_sentinel,), daemon=True
                )
                watcher.start()
            serve(options, stop, open_queue)
    except JobQueueError as exc:  # the server is unreachable, the schema is newer...
        raise SystemExit(f"jobqueue worker: {exc}") from None
    if still_running():
        # close() gave up after shutdown_timeout; the leases bring these jobs back.
        logger.error("jobs still running after --shutdown-timeout; their leases will expire")
        logging.shutdown()
        os._exit(1)
    return 0


def _child(options: WorkerOptions, number: int, open_queue: OpenQueue) -> None:
    """A spawned worker process.  Only the parent's SIGTERM stops it."""
    # A terminal's Ctrl-C reaches the whole process group: let the parent
    # decide, or this child would take the parent's SIGTERM as a second signal.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=options.log_level,
        format=f"%(levelname)s %(name)s[{number}:%(process)d]: %(message)s",
    )
    parent = multiprocessing.parent_process()
    sys.exit(run_one(options, open_queue, None if parent is None else parent.sentinel))


def _drain_when_orphaned(parent_sentinel: int) -> None:
    """If the parent dies (kill -9), drain as if it had sent SIGTERM: no orphan works on."""
    wait([parent_sentinel])
    logger.warning("the parent process is gone")
    os.kill(os.getpid(), signal.SIGTERM)


def supervise(options: WorkerOptions, open_queue: OpenQueue = open_postgres_queue) -> int:
    """Spawn ``options.processes`` workers; 0 if every one of them drained.

    ``open_queue`` must be a module-level function: it reaches the spawned
    children by its importable name.
    """
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(target=_child, args=(options, n, open_queue), name=f"jobqueue-worker-{n}")
        for n in range(options.processes)
    ]
    stopped = threading.Event()
    wake_read, wake_write = os.pipe()  # how a signal handler wakes wait() below

    def stop() -> None:
        stopped.set()
        os.write(wake_write, b"x")

    def kill_children() -> None:
        for child in children:
            if child.is_alive():
                child.kill()
        _say(logging.ERROR, "second signal: killed the worker processes")

    try:
        with on_stop_signals(stop, kill_children):
            for child in children:
                child.start()
            logger.info("started %d worker processes", len(children))
            ready = wait([wake_read, *(child.sentinel for child in children)])
            if wake_read not in ready:
                # Its sentinel (a pipe) closes before the kernel can report its exit:
                # join() waits for that, where is_alive() could still say True.
                dead = next(child for child in children if child.sentinel in ready)
                dead.join()
                logger.error("%s exited with %s; stopping the others", dead.name, dead.exitcode)
            for child in children:
                if child.is_alive():
                    child.terminate()  # SIGTERM: the child drains
            deadline = time.monotonic() + options.shutdown_timeout + EXIT_GRACE
            for child in children:
                child.join(max(0.0, deadline - time.monotonic()))
                if child.is_alive():
                    logger.error("%s did not stop in time; killing it", child.name)
                    child.kill()
                    child.join()
    finally:
        os.close(wake_read)
        os.close(wake_write)
    # -SIGTERM: stopped before it installed its handler, so before it claimed a job.
    clean = (0, -signal.SIGTERM)
    return 0 if stopped.is_set() and all(child.exitcode in clean for child in children) else 1


def run(args: argparse.Namespace) -> int:
    # As ``python -m`` does: the handlers' module is usually the user's own code.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        options = options_from_args(args)
        load_handlers(options.handlers)  # fail here, before any process starts
    except (ValueError, TypeError) as exc:
        raise SystemExit(f"jobqueue worker: {exc}") from None
    if options.processes == 1:
        return run_one(options)
    return supervise(options)
