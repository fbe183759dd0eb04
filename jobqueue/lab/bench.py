"""``jobqueue bench``: the realistic profile and where its time goes, throughput, latency,
memory, scaling and group commit, side by side.

Every stage and ThreadPoolExecutor run in one process, one run, interleaved,
so their ratios compare like with like.  What is measured, and how, is in
``measure.py`` (the profile's in ``measure_profile.py``); what runs and in
which order in ``bench_plan.py``; how the repetitions become medians and
ratios in ``bench_summary.py``.  This module
only renders: a progress bar while it runs, tables at the end, and with
``--json`` the same figures as data.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from jobqueue.lab import bench_plan
from jobqueue.lab.bench_plan import FULL, QUICK, SECTIONS, Step
from jobqueue.lab.bench_summary import goals, summarize
from jobqueue.lab.machine import describe, finished, machine_info
from jobqueue.lab.terminal import output_file, positive_int, progress_bar

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", metavar="FILE", type=output_file, help="also write the figures here"
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes: checks that it runs, measures nothing"
    )
    parser.add_argument(
        "--repeat",
        type=positive_int,
        default=3,
        metavar="N",
        help="repetitions per figure (default 3)",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=SECTIONS,
        metavar="SECTION",
        help=f"run only this section (repeatable): {', '.join(SECTIONS)}",
    )
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="final on PostgreSQL against PgQueuer and procrastinate, on a throwaway server",
    )


def run(args: argparse.Namespace) -> int:
    if args.postgres:
        from jobqueue.lab import bench_pg

        return bench_pg.run(args)
    sizes = QUICK if args.quick else FULL
    sections = args.only or SECTIONS
    console = Console()
    machine = machine_info()
    console.print(f"[bold]jobqueue bench[/] on {describe(machine)}")
    steps = bench_plan.plan(sizes, args.repeat, sections)
    began = time.perf_counter()
    with progress_bar() as progress:
        task = progress.add_task("starting", total=len(steps))

        def before(done: int, step: Step) -> None:
            label = f"rep {step.rep + 1}/{args.repeat}  {step.label}"
            progress.update(task, completed=done, description=label)

        outcomes = bench_plan.execute(steps, before)
    seconds = time.perf_counter() - began
    summary = summarize(outcomes)
    checked = goals(summary)
    machine = finished(machine)
    for table in render(summary, checked):
        console.print(table)
    for reason in _reasons(summary):
        console.print(f"[yellow]{reason}[/]")
    console.print(f"{len(steps)} measurements in {seconds:.0f} s, {args.repeat} repetitions.")
    if args.json is not None:
        report = {
            "command": shlex.join(["jobqueue", *sys.argv[1:]]),
            "machine": machine,
            "repeat": args.repeat,
            "quick": args.quick,
            "sizes": dataclasses.asdict(sizes),
            "seconds": seconds,
            "sections": summary,
            "goals": checked,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        console.print(f"figures written to {args.json}")
    failed = any(o.error is not None for o in outcomes.values())
    return 1 if failed else 0


def _reasons(summary: dict[str, Any]) -> list[str]:
    """Why rows have no figures: each reason once, with the targets it stopped."""
    reasons: dict[str, dict[str, None]] = {}
    for section in summary.values():
        for row in section["rows"]:
            if row.get("reason"):
                # The reason starts with the target's name: group the targets by the rest.
                reason = row["reason"].removeprefix(f"{row['target']}: ")
                reasons.setdefault(reason, {})[row["target"]] = None
    return [f"{', '.join(targets)}: {reason}" for reason, targets in reasons.items()]


# -- tables ----------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}"


def _rate(value: float) -> str:
    return f"{value:,.0f}"


def _times(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x"


def _table(title: str, *columns: str, left: int = 1) -> Table:
    """A table that fits 80 columns: no vertical rules, and long cells fold, never cut.

    The first ``left`` columns are text, the rest figures (right-aligned).  The
    first, the target's name, is never broken: the others give way to it.
    """
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for i, column in enumerate(columns):
        table.add_column(
            column, justify="left" if i < left else "right", overflow="fold", no_wrap=i == 0
        )
    return table


def render(summary: dict[str, Any], checked: list[dict[str, Any]]) -> list[Table]:
    """One rich table per section that ran, then the goals."""
    tables = []
    if "realistic" in summary:
        tables += _realistic_tables(summary["realistic"])
    if "profile" in summary:
        tables.append(_profile_table(summary["profile"]["rows"]))
    if "throughput" in summary:
        tables.append(_throughput_table(summary["throughput"]["rows"]))
    if "latency" in summary:
        tables.append(_latency_table(summary["latency"]["rows"]))
    if "memory" in summary:
        tables.append(_memory_table(summary["memory"]["rows"]))
    if "scaling" in summary:
        tables.append(_scaling_table(summary["scaling"]["rows"]))
    if "group-commit" in summary:
        tables.append(_group_table(summary["group-commit"]["rows"]))
    if any(goal["met"] is not None for goal in checked):
        tables.append(_goals_table(checked))
    return tables


def _span(spread: dict[str, float] | None, shown: str = "{:.2f}") -> str:
    """A spread across repetitions, as min-max."""
    if spread is None:
        return ""
    return f"{shown.format(spread['min'])}-{shown.format(spread['max'])}"


def _realistic_tables(section: dict[str, Any]) -> list[Table]:
    """The headline: a handler counting under a shared lock, priorities mixed."""
    table = _table(
        "Realistic profile: 4 workers, one producer, HIGH/MEDIUM/LOW mixed, a handler "
        "counting completions under a shared lock (the pool runs the same)",
        *("target", "batch", "k jobs/s", "min-max", "x pool", "min-max", "x mem"),
        left=2,
    )
    for row in section["rows"]:
        how = "-" if row["batch"] == 1 else str(row["batch"])
        if row["status"] != "ok":
            table.add_row(row["target"], how, f"[yellow]{row['status']}[/]")
            continue
        table.add_row(
            row["target"],
            how,
            f"{row['jobs_per_second'] / 1e3:.1f}",
            _span({k: v / 1e3 for k, v in row["spread"].items()}, "{:.1f}"),
            _times(row.get("vs_threadpool")),
            _span(row.get("vs_threadpool_spread"), "{:.1f}"),
            _times(row.get("vs_final_in_memory")),
        )
    table.caption = (
        "batch -: enqueue per job; n: enqueue_many, n jobs a call; floor: lab/floor.py, "
        "a queue with none of final's features, floor+features: with its fairness, status "
        "and metrics (measuring sticks, not stages); "
        "x pool: over the pool's single submits, x mem: over final in memory at the same "
        "batch size, each the median of the ratios within one repetition; min-max: the "
        "spread across repetitions"
    )
    paced = _table(
        "Realistic latency: enqueue to handler start, paced producer (ms)",
        *("target", "rate", "reached", "p50", "p99", "p99 min-max"),
    )
    for row in section["latency"]:
        if row["status"] != "ok":
            paced.add_row(row["target"], _rate(row["rate"]), f"[yellow]{row['status']}[/]")
            continue
        paced.add_row(
            row["target"],
            _rate(row["rate"]),
            _rate(row["achieved_rate"]),
            _ms(row["p50"]),
            _ms(row["p99"]),
            _span({k: v * 1e3 for k, v in row["p99_spread"].items()}, "{:.3f}"),
        )
    return [table, paced]


#: The profile table's rows: (label, the row's figure, digits).
_PROFILE_ROWS = (
    ("serial: intake, enqueue (µs)", "intake_us", 1),
    ("  of which GC (µs)", "intake_gc_us", 1),
    ("serial: intake, enqueue_many (µs)", "batch_intake_us", 1),
    ("serial: run, 4 workers (µs)", "run_us", 1),
    ("serial: run, 1 worker (µs)", "run_one_worker_us", 1),
    ("serial: intake + run (µs)", "serial_us", 1),
    ("the goal leaves (µs)", "budget_us", 1),
    ("contended: wall (µs)", "wall_us", 1),
    ("contended: CPU (µs)", "cpu_us", 1),
    ("contended: GC (µs)", "gc_us", 1),
    ("voluntary switches", "voluntary_per_job", 2),
    ("involuntary switches", "involuntary_per_job", 2),
    ("producer: enqueue (µs)", "producer_us", 1),
    ("producer: off CPU (µs)", "producer_off_cpu_us", 1),
    ("producer: sleeps", "producer_sleeps_per_job", 2),
    ("producer: preempted", "producer_preempted_per_job", 2),
)

#: Short column heads: the longest target name would not leave room for three columns.
_PROFILE_HEADS = {"final": "final", "final-durable-interval": "durable", "threadpool": "pool"}


def _profile_table(rows: list[dict[str, Any]]) -> Table:
    """Where the time goes: one column per target, a figure per row, its spread below."""
    table = _table(
        "Where the time goes (realistic profile, per job)",
        "per job",
        *(_PROFILE_HEADS.get(row["target"], row["target"]) for row in rows),
    )
    for label, name, digits in _PROFILE_ROWS:
        cells = []
        for row in rows:
            if row["status"] != "ok":
                cells.append(f"[yellow]{row['status']}[/]" if name == "intake_us" else "")
            elif name not in row:
                cells.append("-")
            else:
                shown = f"{{:.{digits}f}}"
                spread = _span(row[f"{name}_spread"], shown)
                cells.append(f"{shown.format(row[name])}\n[dim]{spread}[/]")
        table.add_row(label, *cells)
    batch = next((row["batch"] for row in rows if "batch" in row), 100)
    factors = ", ".join(
        f"{_PROFILE_HEADS.get(row['target'], row['target'])} {row['goal_x_pool']:g}x"
        for row in rows
        if "goal_x_pool" in row
    )
    table.caption = (
        "durable: final-durable-interval. Each figure is the median over repetitions, "
        "its min-max below. Serial: the queue's code with no thread competing. Intake: "
        "the producer hands every job over while each worker is held in a first job "
        "waiting on an Event (so none takes a job or is woken); run: the held workers "
        "drain them once released, the producer idle (1 worker: the same with one "
        f"worker, no contention at all). enqueue_many: batches of {batch}. GC: time in "
        "the garbage collector, which walks the queued backlog. The goal leaves: "
        f"1/(goal x the pool's contended rate), the time per job the goal ({factors}) "
        "allows. Contended: the realistic run itself, every thread at once; CPU: user+sys "
        "time of all threads. A voluntary context switch is a thread going to sleep "
        "(waiting for the GIL, a lock, a wake-up, the disk); an involuntary one, the "
        "kernel taking the CPU from a thread that could run. Producer: its enqueue loop; "
        "off CPU: wall minus its own CPU time, the time it waited for the GIL, a lock "
        "or a free CPU; sleeps, preempted: its own voluntary and involuntary switches."
    )
    return table


def _throughput_table(rows: list[dict[str, Any]]) -> Table:
    table = _table(
        "Throughput (second table): no-op jobs, all MEDIUM, 4 workers, first enqueue to "
        "last completion",
        *("target", "jobs", "jobs/s", "min-max", "x pool", "x in\nmemory"),
    )
    for row in rows:
        if row["status"] != "ok":
            table.add_row(row["target"], "", f"[yellow]{row['status']}[/]")
            continue
        runs = row["runs"]
        table.add_row(
            row["target"],
            f"{row['jobs']:,}",
            _rate(row["jobs_per_second"]),
            f"{_rate(min(runs))}-{_rate(max(runs))}",
            _times(row.get("vs_threadpool")),
            _times(row.get("vs_final_in_memory")),
        )
    table.caption = (
        "x pool: jobs/s over ThreadPoolExecutor's; x in memory: over final without a log; "
        "each the median of the ratios within one repetition"
    )
    return table


def _latency_table(rows: list[dict[str, Any]]) -> Table:
    table = _table(
        "Latency: enqueue to handler start, 4 workers (ms)",
        *("target", "rate", "reached", "pacing", "switch", "p50", "p99", "max"),
    )
    for row in rows:
        switch = row.get("switch_interval")
        head = [
            row["target"],
            _rate(row["rate"]),
            _rate(row["achieved_rate"]) if row["status"] == "ok" else "",
            "sleeps" if row["pacing"] == "sleep" else "[bold]spins[/]",
            "" if switch is None else f"{switch * 1e3:g} ms",
        ]
        if row["status"] != "ok":
            table.add_row(*head, f"[yellow]{row['status']}[/]")
            continue
        table.add_row(*head, _ms(row["p50"]), _ms(row["p99"]), _ms(row["max"]))
    table.caption = (
        "reached: the rate the producer managed; pacing: it sleeps between jobs, or spins "
        "(holding the GIL); switch: sys.getswitchinterval() during the run"
    )
    return table


def _memory_table(rows: list[dict[str, Any]]) -> Table:
    table = _table(
        "Memory: per waiting job (tracemalloc), and RSS under a flood",
        *("target", "bytes/job", "flood accepted", "RSS before", "RSS growth"),
    )
    for row in rows:
        per_job = (
            f"{row['bytes_per_job']:,.0f}"
            if "bytes_per_job" in row
            else f"[yellow]{row.get('traced_status', '')}[/]"
        )
        if "flood_offered" in row:
            flood = [
                f"{row['flood_accepted']:,} of {row['flood_offered']:,}",
                f"{row['rss_before'] / 1e6:.1f} MB",
                f"{row['rss_growth'] / 1e6:+.1f} MB",
            ]
        else:
            flood = [f"[yellow]{row.get('flood_status', '')}[/]", "", ""]
        table.add_row(row["target"], per_job, *flood)
    return table


def _scaling_table(rows: list[dict[str, Any]]) -> Table:
    workers = sorted({r["workers"] for r in rows})
    table = _table(
        "Scaling: jobs/s by number of workers (cpu: 0.1 ms of Python; io: 1 ms sleep)",
        *("target", "handler", *map(str, workers)),
        left=2,
    )
    grid: dict[tuple[str, str], dict[int, str]] = {}
    for row in rows:
        cell = _rate(row["jobs_per_second"]) if row["status"] == "ok" else "n/a"
        grid.setdefault((row["target"], row["handler"]), {})[row["workers"]] = cell
    for (target, kind), cells in sorted(grid.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        table.add_row(target, kind, *(cells.get(count, "") for count in workers))
    return table


def _group_table(rows: list[dict[str, Any]]) -> Table:
    table = _table(
        "Group commit: concurrent producers on a durable queue",
        *("target", "producers", "jobs/s", "x 1 producer"),
    )
    for row in rows:
        if row["status"] != "ok":
            table.add_row(row["target"], str(row["producers"]), f"[yellow]{row['status']}[/]")
            continue
        table.add_row(
            row["target"],
            str(row["producers"]),
            _rate(row["jobs_per_second"]),
            _times(row.get("vs_one_producer")),
        )
    return table


def _goals_table(checked: list[dict[str, Any]]) -> Table:
    table = _table("Goals", "goal", "measured", "met")
    # The reasons in "met" are sentences: the goal wraps too, to leave them room.
    table.columns[0].no_wrap = False
    table.columns[0].overflow = "fold"
    table.columns[0].ratio = 2
    table.columns[1].no_wrap = True
    table.columns[2].justify = "left"  # words, not a figure
    table.columns[2].ratio = 3
    for goal in checked:
        value = goal["measured"]
        if value is None:
            shown = "not measured"
        elif goal["unit"] == "s":
            shown = f"{_ms(value)} ms"
        elif goal["unit"] == "x":
            shown = _times(value)
        else:
            shown = f"{_rate(value)} {goal['unit']}"
        met = {None: "", True: "[green]yes[/]", False: "[red]no[/]"}[goal["met"]]
        if goal.get("note"):
            met += f" ({goal['note']})"
        if goal.get("why"):
            met += f": {goal['why']}"
        table.add_row(goal["goal"], shown, met)
    return table
