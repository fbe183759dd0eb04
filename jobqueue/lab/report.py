"""``jobqueue report``: run the scenarios on every stage and show them side by side.

What ``make report`` runs.  It measures, it does not assert: each scenario of
``jobqueue.lab.scenarios`` runs against naive, improved and final, and the table
shows what happened next to what ``jobqueue/gaps.py`` expects.  The
performance panel times every stage and ``ThreadPoolExecutor`` in the same
run, with ``jobqueue.lab.measure``.  The exit status is 1 if any cell disagrees
with the gap table.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console, Group
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from jobqueue import gaps
from jobqueue.lab import scenarios
from jobqueue.lab.gaps_table import render_observed
from jobqueue.lab.scenarios import performance, processes
from jobqueue.lab.scenarios.base import load_average, machine_info

__all__ = ["add_arguments", "run"]

#: ``--scenario`` value that selects the performance panel.
PERFORMANCE = "performance"
#: Width of the exported SVG, in columns: the table fits without wrapping figures.
SVG_WIDTH = 150


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stage",
        action="append",
        choices=gaps.STAGES,
        metavar="NAME",
        help=f"run only this stage (repeatable; one of {', '.join(gaps.STAGES)})",
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=[*scenarios.SCENARIOS, PERFORMANCE],
        metavar="KEY",
        help=f"run only this scenario (repeatable): {', '.join(scenarios.SCENARIOS)}, "
        f"or {PERFORMANCE} for the performance panel",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes: a few seconds, for tests and a first look",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--svg", type=Path, metavar="FILE", help="also save the report as SVG")


def run(args: argparse.Namespace) -> int:
    stages = tuple(s for s in gaps.STAGES if not args.stage or s in args.stage)
    chosen = tuple(k for k in scenarios.SCENARIOS if not args.scenario or k in args.scenario)
    with_performance = not args.scenario or PERFORMANCE in args.scenario
    sizes = scenarios.QUICK if args.quick else scenarios.STANDARD
    perf_sizes = performance.QUICK if args.quick else performance.STANDARD
    targets = _perf_targets(stages)
    machine_before = machine_info()
    started = time.monotonic()

    progress = Progress(
        TextColumn("{task.description:<40}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    total = len(chosen) * len(stages)
    with_postgres = processes.KEY in chosen and "final" in stages
    total += with_postgres
    postgres_skipped: str | None = None
    if with_performance:
        total += performance.steps(perf_sizes, targets)
    outcomes: list[scenarios.Outcome] = []
    perf: performance.Performance | None = None
    with progress, _quiet_library(args.verbose):
        task = progress.add_task("scenarios", total=total)
        for key in chosen:
            for stage in stages:
                progress.update(task, description=f"{key} on {stage}")
                outcomes.append(scenarios.run(stage, key, sizes))
                progress.advance(task)
        if with_postgres:
            progress.update(task, description=f"{processes.KEY} on {gaps.POSTGRES}")
            got = processes.on_postgres(sizes)
            if isinstance(got, str):
                postgres_skipped = got
            else:
                outcomes.append(got)
            progress.advance(task)
        if with_performance:

            def step(description: str) -> None:
                progress.update(task, description=f"performance: {description}")
                progress.advance(task)

            perf = performance.measure_all(perf_sizes, targets, step)
    seconds = time.monotonic() - started
    machine = {**machine_before, "load_after": load_average()}

    renderables = _render(
        outcomes,
        perf,
        machine=machine,
        seconds=seconds,
        quick=sizes is scenarios.QUICK,
        command=_command(args),
    )
    if postgres_skipped is not None:
        skip = f"The {gaps.POSTGRES} column was skipped: {postgres_skipped}"
        renderables.insert(-1, Text(skip, style="yellow"))
    Console().print(*renderables)
    if args.svg is not None:
        recorder = Console(record=True, width=SVG_WIDTH, file=io.StringIO())
        recorder.print(*renderables)
        args.svg.parent.mkdir(parents=True, exist_ok=True)
        recorder.save_svg(str(args.svg), title="jobqueue report")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "command": _command(args),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine,
            "seconds": round(seconds, 2),
            "agree": all(o.agrees for o in outcomes),
            "postgres_skipped": postgres_skipped,
            "scenarios": [o.as_dict() for o in outcomes],
            "performance": perf.as_dict() if perf is not None else None,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0 if all(o.agrees for o in outcomes) else 1


def _perf_targets(stages: tuple[str, ...]) -> tuple[str, ...]:
    """The performance targets for the chosen stages, always with the baseline."""
    return tuple(
        t for t in performance.TARGETS if t == performance.BASELINE or t.split("-", 1)[0] in stages
    )


@contextmanager
def _quiet_library(verbose: bool) -> Iterator[None]:
    """Hide the library's log lines while scenarios run: they fail jobs on purpose."""
    library = logging.getLogger("jobqueue")
    previous = library.level
    if not verbose:
        library.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        library.setLevel(previous)


def _render(
    outcomes: list[scenarios.Outcome],
    perf: performance.Performance | None,
    *,
    machine: dict[str, object],
    seconds: float,
    quick: bool,
    command: str,
) -> list[object]:
    parts: list[object] = []
    if outcomes:
        parts.append(render_observed(outcomes))
        disagree = [o for o in outcomes if not o.agrees]
        if disagree:
            summary = Text(
                f"{len(disagree)} of {len(outcomes)} cells DISAGREE with jobqueue/gaps.py: "
                + ", ".join(f"{o.scenario} on {o.stage}" for o in disagree),
                style="bold white on red",
            )
        else:
            summary = Text(
                f"All {len(outcomes)} cells agree with jobqueue/gaps.py.", style="bold green"
            )
        parts.append(summary)
    if perf is not None:
        parts.append(_performance_panel(perf))
    load = machine["load_before"], machine["load_after"]
    parts.append(
        Text(
            f"{command}: {'quick sizes; ' if quick else ''}took {seconds:.1f} s "
            f"on {machine['cpu']}, {machine['cpus']} CPUs, Python {machine['python']}; "
            f"load average {load[0]} before, {load[1]} after",
            style="grey50",
        )
    )
    return parts


def _performance_panel(perf: performance.Performance) -> Panel:
    s = perf.sizes
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("target", no_wrap=True)
    table.add_column(f"jobs/s\n(no-op, {s.workers} workers)", justify="right")
    table.add_column("vs\nThreadPool", justify="right")
    table.add_column(f"latency p50\n@ {s.latency_rate:,.0f}/s", justify="right")
    table.add_column(f"latency p99\n@ {s.latency_rate:,.0f}/s", justify="right")
    table.add_column("memory per\nqueued job", justify="right")
    for r in perf.rows:
        table.add_row(
            r.target,
            _fmt(r.jobs_per_second, "{:,.0f}"),
            _fmt(r.vs_threadpool, "{:.2f}x"),
            _fmt(r.p50_ms, "{:.2f} ms"),
            _fmt(r.p99_ms, "{:.2f} ms"),
            _fmt(r.bytes_per_job, "{:,.0f} B"),
        )
    note = Text(
        f"Throughput: {s.throughput_jobs:,} jobs, median of {s.repetitions}. "
        f"Latency: enqueue to handler start, {s.latency_jobs:,} jobs. "
        "Memory: tracemalloc, what the queue adds per waiting job. "
        "One run on this machine, in this process: `make bench` takes the careful figures.",
        style="grey50",
    )
    errors = [
        Text(f"{r.target}: not measured: {r.error}", style="red") for r in perf.rows if r.error
    ]
    return Panel(
        Group(table, *errors, note), title="Performance, measured side by side", expand=False
    )


def _fmt(value: float | None, pattern: str) -> str:
    return "n/a" if value is None else pattern.format(value)


def _command(args: argparse.Namespace) -> str:
    words = ["jobqueue", "report"]
    if args.quick:
        words.append("--quick")
    for stage in args.stage or ():
        words += ["--stage", stage]
    for key in args.scenario or ():
        words += ["--scenario", key]
    if args.json is not None:
        words += ["--json", str(args.json)]
    if args.svg is not None:
        words += ["--svg", str(args.svg)]
    return " ".join(words)
