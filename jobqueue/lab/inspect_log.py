"""``jobqueue inspect`` and ``jobqueue check``: look at a job log, change nothing.

Both only read: they take no lock, repair nothing and create no file, so they
are safe on the log of a running queue (whose last line may then be caught
mid-write: that shows as a torn last line).

The log does not record that a job started (a job in flight at a crash is
re-run like a queued one), so ``inspect`` shows running jobs as queued.

``check`` exits 0 for a log a queue would open (a torn last line is tolerated:
the queue sets it aside), 1 for a damaged or unreadable one.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from jobqueue.final.log.files import is_locked
from jobqueue.final.log.replay import Replay, read_log, scan
from jobqueue.lab.terminal import fail, no_such, non_negative_int, printable, seconds_cell
from jobqueue.vocabulary import PersistenceError, Priority, Status

__all__ = ["add_check_arguments", "add_inspect_arguments", "run_check", "run_inspect"]

_LIVE = (Status.QUEUED, Status.RETRYING)
_MAX_REPORTED = 20  # damaged lines listed by check
_ADVICE = ": run `jobqueue check` on it"  # how replay's message for a damaged line ends


def add_inspect_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="the log file (Config.persist_path)")
    parser.add_argument(
        "--jobs",
        type=non_negative_int,
        default=20,
        metavar="N",
        help="list up to N live jobs (default 20; 0: none)",
    )


def add_check_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="the log file (Config.persist_path)")


def run_inspect(args: argparse.Namespace) -> int:
    console = Console()
    found = _read(args.path)
    if found is None:
        return 1
    state = found.state
    console.print(_summary(args.path, found))
    table = Table(title="live jobs by status and priority (running jobs show as queued)")
    table.add_column("status")
    for priority in Priority:
        table.add_column(priority.name, justify="right")
    table.add_column("total", justify="right", style="bold")
    for status in _LIVE:
        counts = [
            sum(1 for x in state.live.values() if x.status is status and x.job.priority is p)
            for p in Priority
        ]
        table.add_row(status.value, *map(str, counts), str(sum(counts)))
    table.add_row("oldest wait", *_oldest_waits(found), "", style="dim")
    console.print(table)
    finished = {s: sum(1 for x in state.history.values() if x.status is s) for s in Status}
    console.print(
        f"history: {finished[Status.COMPLETED]} completed, {finished[Status.FAILED]} failed, "
        f"{finished[Status.CANCELLED]} cancelled"
        + (" (`jobqueue dead` lists the failed)" if finished[Status.FAILED] else "")
    )
    if args.jobs > 0 and state.live:
        console.print(_jobs_table(found, args.jobs))
    return 0


def run_check(args: argparse.Namespace) -> int:
    console = Console()
    try:
        with open(args.path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return fail("check", no_such(args.path))
    except OSError as exc:
        return fail("check", f"cannot read {args.path}: {exc.strerror}")
    damaged = list(scan(data))
    try:
        found = read_log(args.path)
    except PersistenceError as exc:
        # The library's message ends by advising `jobqueue check`: this is it.
        console.print(f"[red]damaged:[/] {escape(str(exc).removesuffix(_ADVICE))}")
        for lineno, offset, reason in damaged[:_MAX_REPORTED]:
            end = data.find(b"\n", offset)
            excerpt = data[offset : end if end >= 0 else len(data)][:100]
            console.print(f"  line {lineno} (byte {offset}): {escape(reason)}")
            console.print(f"    {escape(repr(excerpt))}")
        if len(damaged) > _MAX_REPORTED:
            console.print(f"  ... and {len(damaged) - _MAX_REPORTED} more damaged lines")
        return 1
    console.print(_summary(args.path, found))
    if found.torn:
        console.print(
            f"[yellow]torn last line[/] {found.torn_line} (byte {found.good_bytes}, "
            f"{len(found.torn)} bytes): {escape(found.torn_reason)}.  Tolerated: the next "
            "queue to open this log moves it to PATH.torn-* and truncates the log before it."
        )
    else:
        console.print("[green]ok[/]: every record is intact")
    return 0


def _read(path: str) -> Replay | None:
    """The log at ``path``, or None once the error is on stderr."""
    if not os.path.exists(path):
        fail("inspect", no_such(path))
        return None
    try:
        return read_log(path, history_limit=sys.maxsize)
    except PersistenceError as exc:
        fail("inspect", str(exc))
        return None


def _summary(path: str, found: Replay) -> str:
    state = found.state
    lock = "; [yellow]in use by an open queue[/]" if is_locked(path) else ""
    return (
        f"{escape(path)}: {found.good_bytes} bytes, {found.records} records, "
        f"{len(state.live)} live jobs, {len(state.history)} finished{lock}"
    )


def _jobs_table(found: Replay, limit: int) -> Table:
    live = sorted(
        found.state.live.values(),
        key=lambda x: (_LIVE.index(x.status), x.job.priority),
    )
    table = Table(title=f"live jobs ({min(limit, len(live))} of {len(live)})")
    for name in ("id", "status", "priority", "attempts", "handler", "payload", "age", "due in"):
        table.add_column(name, justify="right" if name in ("attempts", "payload") else "left")
    now = time.time()
    for x in live[:limit]:
        due = "" if x.retry_at is None else seconds_cell(x.retry_at - now, ".1f")
        table.add_row(
            escape(printable(x.job.id)),
            x.status.value,
            x.job.priority.name,
            str(x.job.attempts),
            escape(printable(x.job.handler or "(default)")),
            f"{len(x.job.payload)} B",
            seconds_cell(now - x.job.created, ".0f"),
            due,
        )
    return table


def _oldest_waits(found: Replay) -> list[str]:
    """Per priority, how long its oldest queued job has waited, by its ``created`` time."""
    now = time.time()
    oldest: dict[Priority, float] = {}
    for x in found.state.live.values():
        if x.status is Status.QUEUED:
            p = x.job.priority
            oldest[p] = min(oldest.get(p, x.job.created), x.job.created)
    return [
        seconds_cell(max(0.0, now - oldest[p]), ".0f") if p in oldest else "-" for p in Priority
    ]
