"""``jobqueue report``: run the scenarios on every stage and show them side by side.

What ``make report`` runs.  It measures, it does not assert: each scenario of
``jobqueue.lab.scenarios`` runs against naive, improved and final, and the table
shows what happened next to what ``jobqueue/gaps.py`` expects.  The
performance panel times every stage and ``ThreadPoolExecutor`` in the same
run, with the bench's own code at smaller sizes (``scenarios.performance``),
and says what each column means.  The exit status is 1 if any cell disagrees
with the gap table.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from jobqueue import gaps
from jobqueue.lab import scenarios
from jobqueue.lab.gaps_table import SOLVED, UNSOLVED, render_observed
from jobqueue.lab.machine import describe, finished, machine_info
from jobqueue.lab.scenarios import performance, processes
from jobqueue.lab.terminal import output_file, progress_bar, save_svg

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
    parser.add_argument(
        "--json", type=output_file, metavar="FILE", help="also write the results as JSON"
    )
    parser.add_argument(
        "--svg", type=output_file, metavar="FILE", help="also save the report as SVG"
    )


def run(args: argparse.Namespace) -> int:
    stages = tuple(s for s in gaps.STAGES if not args.stage or s in args.stage)
    chosen = tuple(k for k in scenarios.SCENARIOS if not args.scenario or k in args.scenario)
    with_performance = not args.scenario or PERFORMANCE in args.scenario
    sizes = scenarios.QUICK if args.quick else scenarios.STANDARD
    perf_sizes = performance.QUICK if args.quick else performance.STANDARD
    targets = _perf_targets(stages)
    machine = machine_info()
    started = time.monotonic()

    progress = progress_bar()
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
            before = len(outcomes)

            def step(done: int, label: str) -> None:
                progress.update(task, completed=before + done, description=f"performance: {label}")

            perf = performance.measure_all(perf_sizes, targets, step)
    seconds = time.monotonic() - started
    machine = finished(machine)

    renderables: list[RenderableType] = _render(
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
    Console().print(Group(*renderables))  # a Group: one renderable a line
    if args.svg is not None:
        save_svg(renderables, args.svg, width=SVG_WIDTH, title="jobqueue report")
    if args.json is not None:
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
) -> list[RenderableType]:
    parts: list[RenderableType] = []
    if outcomes:
        parts.append(render_observed(outcomes))
        parts.append(_agreement(outcomes))
    if perf is not None:
        parts.append(_performance_panel(perf))
    parts.append(
        Text(
            f"{command}: {'quick sizes; ' if quick else ''}took {seconds:.1f} s "
            f"on {describe(machine)}",
            style="grey50",
        )
    )
    return parts


def _agreement(outcomes: list[scenarios.Outcome]) -> Text:
    """How many cells agree with the gap table, out of how many: in words, not only colour."""
    disagree = [o for o in outcomes if not o.agrees]
    agreed = f"{len(outcomes) - len(disagree)} of {len(outcomes)} cells agree with jobqueue/gaps.py"
    if not disagree:
        return Text(f"{SOLVED} {agreed}.", style="bold green")
    return Text(
        f"{UNSOLVED} {agreed}; these DISAGREE: "
        + ", ".join(f"{o.scenario} on {o.stage}" for o in disagree),
        style="bold white on red",
    )


def _performance_panel(perf: performance.Performance) -> Panel:
    s = perf.sizes
    # Short headings, explained in the notes below: the table fits 80 columns.
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("target", no_wrap=True)
    table.add_column("jobs/s", justify="right", no_wrap=True)
    table.add_column("vs pool", justify="right", no_wrap=True)
    table.add_column("p50", justify="right", no_wrap=True)
    table.add_column("p99", justify="right", no_wrap=True)
    table.add_column("B/job", justify="right", no_wrap=True)
    for r in perf.rows:
        table.add_row(
            r.target,
            _fmt(r.jobs_per_second, "{:,.0f}"),
            "baseline" if r.target == performance.BASELINE else _fmt(r.vs_threadpool, "{:.2f}x"),
            _fmt(r.p50_ms, "{:.2f} ms"),
            _fmt(r.p99_ms, "{:.2f} ms"),
            _fmt(r.bytes_per_job, "{:,.0f}"),
        )
    notes = [
        f"jobs/s: {s.throughput_jobs:,} no-op jobs through {s.workers} workers, first enqueue "
        f"to last completion; the median of {s.repetitions} "
        f"run{'s' if s.repetitions != 1 else ''}.",
        "vs pool: jobs/s divided by ThreadPoolExecutor's in the same repetition (the median "
        "of those ratios); above 1.00x is faster than the pool.",
        "p50, p99: the wait from enqueue to handler start that half of the jobs, and 99 in "
        f"100, stayed within; {s.latency_jobs:,} jobs paced at {s.latency_rate:,.0f} jobs/s.",
        "B/job: bytes the queue itself holds per waiting job (tracemalloc), "
        f"{s.memory_jobs:,} jobs queued; the caller's Job and payload are not counted.",
        "final-durable-interval: final with its log on disk, at the default fsync policy: "
        "each enqueue is written to the log before it returns (it survives kill -9), and "
        "fsync runs about once a second (a power loss may take that last second).",
    ]
    if any(r.target == "naive" for r in perf.rows):
        notes.append(
            "naive is often the fastest: it has no bound to check, no priorities, no retry "
            "and no bookkeeping. It does less, and loses jobs for it (see the table above)."
        )
    notes += [
        "One run on this machine, in this process: `make bench` takes the careful figures.",
    ]
    errors = [
        Text(f"{r.target}: not measured: {r.error}", style="red") for r in perf.rows if r.error
    ]
    return Panel(
        Group(table, *errors, *(Text(n, style="grey50") for n in notes)),
        title="Performance, measured side by side",
        expand=False,
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
