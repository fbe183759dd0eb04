"""``jobqueue report``: run the scenarios on every stage and show them side by side.

What ``make report`` runs.  It measures, it does not assert: each scenario of
``jobqueue.lab.scenarios`` runs against naive, improved and final, and the table
shows what happened next to what ``jobqueue/gaps.py`` expects.  The
performance panel times every stage and ``ThreadPoolExecutor`` in the same
run, with the bench's own code at smaller sizes (``scenarios.performance``),
and says what each column means.  The exit status is 1 if any cell disagrees
with the gap table.

``--from-json FILE`` measures nothing: it draws a report saved by ``--json``
again, with the same code, so ``make docs`` can redraw docs/report.svg from
docs/report.json without changing a figure the pages quote.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from jobqueue import gaps
from jobqueue.lab import scenarios
from jobqueue.lab.gaps_table import SOLVED, UNSOLVED, render_observed
from jobqueue.lab.machine import describe, finished, machine_info
from jobqueue.lab.scenarios import performance, processes
from jobqueue.lab.terminal import fail, no_such, output_file, progress_bar, save_svg

__all__ = ["Report", "add_arguments", "run"]

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
    parser.add_argument(
        "--from-json",
        type=Path,
        metavar="FILE",
        help="measure nothing: draw again a report saved with --json (with --svg, redraw its SVG)",
    )


@dataclass(frozen=True, slots=True)
class Report:
    """One measuring run: what ``--json`` writes, and what ``--from-json`` reads back."""

    command: str  # the command that measured, e.g. "jobqueue report --json docs/report.json"
    created: str  # when it measured, ISO 8601 in UTC
    machine: Mapping[str, Any]  # jobqueue.lab.machine's record, load average after included
    seconds: float  # how long the measuring took
    outcomes: tuple[scenarios.Outcome, ...]
    perf: performance.Performance | None  # None when the panel was left out
    postgres_skipped: str | None = None  # why the PostgreSQL column is missing, if it is

    @property
    def quick(self) -> bool:
        return "--quick" in self.command.split()

    @property
    def agree(self) -> bool:
        return all(o.agrees for o in self.outcomes)

    def as_dict(self) -> dict[str, object]:
        return {
            "command": self.command,
            "created": self.created,
            "machine": dict(self.machine),
            "seconds": round(self.seconds, 2),
            "agree": self.agree,
            "postgres_skipped": self.postgres_skipped,
            "scenarios": [o.as_dict() for o in self.outcomes],
            "performance": self.perf.as_dict() if self.perf is not None else None,
        }

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> Report:
        """The report ``as_dict`` wrote; KeyError, TypeError or ValueError if it is not one.

        What ``as_dict`` derives (each cell's verdict, whether it agrees) is not
        read back but derived again from jobqueue/gaps.py: :func:`_stale` says
        where that no longer gives what the file records.
        """
        perf = document["performance"]
        return cls(
            command=str(document["command"]),
            created=str(document["created"]),
            machine=dict(document["machine"]),
            seconds=float(document["seconds"]),
            outcomes=tuple(_outcome(d) for d in document["scenarios"]),
            perf=None if perf is None else _performance(perf),
            postgres_skipped=document.get("postgres_skipped"),  # older files lack it
        )


def run(args: argparse.Namespace) -> int:
    if args.from_json is not None:
        return _redraw(args)
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
    report = Report(
        command=_command(args),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        machine=finished(machine),
        # Rounded as --json saves it, so a redraw shows the same duration.
        seconds=round(time.monotonic() - started, 2),
        outcomes=tuple(outcomes),
        perf=perf,
        postgres_skipped=postgres_skipped,
    )
    _show(report, args.svg)
    if args.json is not None:
        args.json.write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    return 0 if report.agree else 1


def _redraw(args: argparse.Namespace) -> int:
    """``--from-json``: show a saved report, and save its SVG, without measuring anything."""
    measuring = [
        option
        for option, given in (
            ("--quick", args.quick),
            ("--stage", args.stage),
            ("--scenario", args.scenario),
            ("--json", args.json),
        )
        if given
    ]
    if measuring:
        fail("report", f"--from-json measures nothing: it takes no {', '.join(measuring)}")
        return 2  # a usage error, like argparse's
    path: Path = args.from_json
    try:
        document = json.loads(path.read_text())
        report = Report.from_dict(document)
    except FileNotFoundError:
        return fail("report", no_such(path))
    except OSError as exc:
        return fail("report", f"cannot read {path}: {exc.strerror}")
    except (KeyError, TypeError, ValueError) as exc:
        return fail("report", f"{path} is not a report saved with --json: {exc}")
    stale = _stale(document, report.as_dict())
    if stale:
        # Drawn as it stands, the table would put today's verdicts beside old
        # figures: a picture nobody measured.  Measuring again is the only fix.
        return fail(
            "report",
            f"{path} no longer draws what it records ({'; '.join(stale)}): "
            f"jobqueue/gaps.py or the report changed since; measure again with {report.command}",
        )
    _show(report, args.svg)
    return 0 if report.agree else 1


def _stale(recorded: Mapping[str, Any], derived: Mapping[str, Any]) -> list[str]:
    """Where ``derived`` (a saved report read back and written again) differs from the file."""
    if recorded.get("scenarios") != derived["scenarios"]:
        cells = [
            f"{got['scenario']} on {got['stage']}"
            for was, got in zip(recorded["scenarios"], derived["scenarios"], strict=True)
            if was != got
        ]
        return [f"cell {cell} differs" for cell in cells]
    return [f"{key} differs" for key in recorded if recorded[key] != derived.get(key)]


def _outcome(cell: Mapping[str, Any]) -> scenarios.Outcome:
    """A cell of ``--json``'s "scenarios", back as the Outcome that wrote it."""
    return scenarios.Outcome(
        scenario=cell["scenario"],
        gap_key=cell["gap"],
        stage=cell["stage"],
        solved=cell["solved"],
        figure=cell["figure"],
        data=cell["data"],
        seconds=cell["seconds"],
        error=cell["error"],
    )


#: How ``Performance.as_dict`` words its sizes, one pattern per setting.  The
#: workers are not a size (measure.WORKERS): _stale catches a file that
#: used other workers, since writing the sizes back must give the same words.
_SETTINGS = {
    "throughput": re.compile(
        r"(?P<throughput_jobs>\d+) no-op jobs, \d+ workers, median of (?P<repetitions>\d+)"
    ),
    "latency": re.compile(r"(?P<latency_jobs>\d+) jobs paced at (?P<latency_rate>[\d.e+]+) jobs/s"),
    "memory": re.compile(r"per waiting job, (?P<memory_jobs>\d+) jobs"),
}


def _performance(panel: Mapping[str, Any]) -> performance.Performance:
    """The "performance" of ``--json``, back as the Performance that wrote it."""
    found: dict[str, str] = {}
    for key, pattern in _SETTINGS.items():
        match = pattern.search(panel["settings"][key])
        if match is None:
            raise ValueError(f"unreadable {key} setting: {panel['settings'][key]!r}")
        found.update(match.groupdict())
    sizes = performance.PerfSizes(
        throughput_jobs=int(found["throughput_jobs"]),
        repetitions=int(found["repetitions"]),
        latency_rate=float(found["latency_rate"]),
        latency_jobs=int(found["latency_jobs"]),
        memory_jobs=int(found["memory_jobs"]),
    )
    rows = tuple(
        performance.TargetFigures(
            target=r["target"],
            jobs_per_second=r["jobs_per_second"],
            vs_threadpool=r["vs_threadpool"],
            p50_ms=r["p50_ms"],
            p99_ms=r["p99_ms"],
            bytes_per_job=r["bytes_per_job"],
            error=r["error"],
        )
        for r in panel["rows"]
    )
    return performance.Performance(rows, sizes)


def _show(report: Report, svg: Path | None) -> None:
    """Print ``report``, and save it as SVG: the one drawing of a measured or a saved run."""
    renderables = _render(report)
    Console().print(Group(*renderables))  # a Group: one renderable a line
    if svg is not None:
        save_svg(renderables, svg, width=SVG_WIDTH, title="jobqueue report")


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


def _render(report: Report) -> list[RenderableType]:
    parts: list[RenderableType] = []
    if report.outcomes:
        parts.append(render_observed(report.outcomes))
        parts.append(_agreement(report.outcomes))
    if report.perf is not None:
        parts.append(_performance_panel(report.perf))
    if report.postgres_skipped is not None:
        skip = f"The {gaps.POSTGRES} column was skipped: {report.postgres_skipped}"
        parts.append(Text(skip, style="yellow"))
    parts.append(
        Text(
            f"{report.command}: {'quick sizes; ' if report.quick else ''}"
            f"took {report.seconds:.1f} s on {describe(report.machine)}",
            style="grey50",
        )
    )
    return parts


def _agreement(outcomes: tuple[scenarios.Outcome, ...]) -> Text:
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
