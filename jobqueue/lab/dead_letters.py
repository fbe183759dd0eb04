"""``jobqueue dead`` and ``jobqueue requeue``: the dead letters of a job log.

``dead PATH`` only reads, like ``inspect``: safe on the log of a running queue.
``requeue PATH ID...`` writes a ``requeued`` record per job, so the next
queue opened on the log runs them again with their attempts reset.  It needs
the log to itself: while a queue has it open, it is refused (use
``JobQueue.requeue`` in that process instead).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from jobqueue.final.log import JobLog
from jobqueue.final.log.files import is_locked
from jobqueue.final.log.replay import Finished, read_log
from jobqueue.lab.terminal import fail, no_such, non_negative_int, printable, seconds_cell
from jobqueue.vocabulary import PersistenceError, Status

__all__ = ["add_dead_arguments", "add_requeue_arguments", "run_dead", "run_requeue"]

_IN_USE = (
    "{path}: a queue has this log open; requeue from that process "
    "(JobQueue.requeue), or close it first"
)


def add_dead_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="the log file (Config.persist_path)")
    parser.add_argument(
        "--limit",
        type=non_negative_int,
        default=100,
        metavar="N",
        help="list up to N dead jobs, newest first (default 100)",
    )


def add_requeue_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="the log file (Config.persist_path), no queue using it")
    parser.add_argument("ids", nargs="+", metavar="ID", help="ids of dead jobs to queue again")


def run_dead(args: argparse.Namespace) -> int:
    if not os.path.exists(args.path):
        return fail("dead", no_such(args.path))
    try:
        found = read_log(args.path, history_limit=sys.maxsize)
    except PersistenceError as exc:
        return fail("dead", str(exc))
    dead = _dead(list(found.state.history.values()))
    table = Table(title=f"dead jobs ({min(args.limit, len(dead))} of {len(dead)}), newest first")
    for name in ("id", "priority", "attempts", "handler", "payload", "failed", "error"):
        table.add_column(name, justify="right" if name in ("attempts", "payload") else "left")
    now = time.time()
    for done in dead[: args.limit]:
        assert done.job is not None
        assert done.failed_at is not None
        table.add_row(
            escape(printable(done.id)),
            done.job.priority.name,
            str(done.attempts),
            escape(printable(done.job.handler or "(default)")),
            f"{len(done.job.payload)} B",
            seconds_cell(now - done.failed_at, ".0f") + " ago",
            escape(printable(done.error or "")),
        )
    Console().print(table)
    return 0


def run_requeue(args: argparse.Namespace) -> int:
    path = args.path
    if not os.path.exists(path):
        return fail("requeue", no_such(path))
    if is_locked(path):  # JobLog would refuse too; this says what to do instead
        return fail("requeue", _IN_USE.format(path=path))
    try:
        log = JobLog(path, history=sys.maxsize)  # keeps every finished job it finds
    except PersistenceError as exc:
        in_use = "in use by another open queue" in str(exc)
        return fail("requeue", _IN_USE.format(path=path) if in_use else str(exc))
    missing: list[str] = []
    try:
        stored = {s.job.id: s for s in log.recover()}
        for job_id in args.ids:
            found = stored.get(job_id)
            if found is None or found.status is not Status.FAILED or found.failed_at is None:
                missing.append(job_id)
                continue
            log.requeued(replace(found.job, attempts=0))
            print(f"requeued {printable(job_id)}")
    except PersistenceError as exc:
        return fail("requeue", str(exc))
    finally:
        log.close()
    for job_id in missing:
        print(f"jobqueue requeue: {printable(job_id)}: not a dead job in {path}", file=sys.stderr)
    return 1 if missing else 0


def _dead(history: list[Finished]) -> list[Finished]:
    """The dead jobs that keep their payload, newest first."""
    return [
        x
        for x in reversed(history)
        if x.status is Status.FAILED and x.job is not None and x.failed_at is not None
    ]
