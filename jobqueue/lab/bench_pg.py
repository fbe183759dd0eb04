"""``jobqueue bench --postgres``: final on PostgreSQL beside PgQueuer and procrastinate.

Everything runs on one throwaway cluster (``pgcluster``), at the server's
defaults (``synchronous_commit=on``, ``fsync=on``), each measurement in a
fresh database, the three queues one after another.  How each queue is driven
is in ``bench_pg_targets``.  The figures:

- **end to end**: N no-op jobs are enqueued first (in bulk where the queue
  has a bulk call), then P worker processes, spawned and imported, get the
  go: jobs/s is N over the time from the go to the last job's end, so it
  includes each worker's connect and start;
- **enqueue**: one producer, one job per call, no workers running;
- **latency**: one idle worker process, jobs enqueued one at a time at a
  steady rate; enqueue call to handler start, p50 and p99;
- **CPU-bound**: our store only, a handler of pure Python (about 10 ms):
  one process with 1 and 2 threads, against 2 processes with 1 thread.

The machine's load average is noted beside each figure: these runs share the
CPUs with the server, and with anything else running.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

from rich.console import Console

from jobqueue.lab import bench_pg_targets as targets
from jobqueue.lab.bench_pg_targets import OURS, TARGETS, THREADS, Shared
from jobqueue.lab.machine import load_average
from jobqueue.lab.pgcluster import PgCluster, PgUnavailable, find_bindir

__all__ = ["FULL", "QUICK", "Sizes", "check", "run"]

RUN_TIMEOUT = 600.0  # seconds one measurement may take before it is reported as timed out


@dataclass(frozen=True, slots=True)
class Sizes:
    drain_jobs: int
    drain_processes: tuple[int, ...]
    enqueue_jobs: int
    latency_rate: float  # jobs/s, steady
    latency_jobs: int
    cpu_jobs: int
    cpu_seconds: float  # per CPU-bound job


# CPU-bound jobs of 10 ms: long enough that a job's two round trips to the
# server (claim, completion), which release the GIL, do not decide the figure.
FULL = Sizes(5_000, (1, 2, 4), 2_000, 100.0, 500, 400, 0.010)
QUICK = Sizes(200, (1, 2), 100, 50.0, 20, 40, 0.001)


def check() -> dict[str, str]:
    """Why each target cannot run here (empty when all can); ``SystemExit`` if none can."""
    try:
        find_bindir()
    except PgUnavailable as exc:
        raise SystemExit(f"jobqueue bench --postgres: {exc}") from None
    import importlib.util

    if importlib.util.find_spec("psycopg") is None:
        raise SystemExit(
            "jobqueue bench --postgres: needs psycopg: pip install 'jobqueue[postgres]'"
        )
    return {t: why for t in TARGETS if (why := targets.installed(t)) is not None}


def _load() -> float:
    """The 1-minute load average (lab/machine.py reads it), NaN where there is none."""
    load = load_average()
    return math.nan if load is None else load


class Bench:
    """One cluster; a fresh database per measurement."""

    def __init__(self, cluster: PgCluster, sizes: Sizes) -> None:
        self.cluster = cluster
        self.sizes = sizes
        self._databases = 0
        self.context = multiprocessing.get_context("spawn")
        self.cpu_loops = _calibrate(sizes.cpu_seconds)

    def fresh(self, target: str) -> str:
        import psycopg

        self._databases += 1
        name = f"bench{self._databases}"
        with psycopg.connect(self.cluster.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        url = self.cluster.url_for(name)
        targets.install(target, url)
        return url

    def _shared(self, expected: int, delays: int = 1) -> Shared:
        c = self.context
        return Shared(
            ready=c.Semaphore(0),
            go=c.Event(),
            first=c.Event(),
            done=c.Value("q", 0),
            expected=expected,
            finished=c.Event(),
            end=c.Value("d", 0.0),
            delays=c.Array("d", max(1, delays)),
            cpu_loops=self.cpu_loops,
        )

    def _start(self, target: str, url: str, processes: int, threads: int, shared: Shared) -> Any:
        procs = [
            self.context.Process(target=targets.work, args=(target, url, threads, shared))
            for _ in range(processes)
        ]
        for proc in procs:
            proc.start()
        for _ in procs:
            if not shared.ready.acquire(timeout=RUN_TIMEOUT):
                raise RuntimeError("a worker process did not start")
        return procs

    @staticmethod
    def _stop(procs: list[Any]) -> None:
        for proc in procs:
            proc.kill()  # the figures are taken: nothing left to drain
        for proc in procs:
            proc.join()

    def drain(self, target: str, kind: str, count: int, processes: int, threads: int) -> float:
        """Jobs/s: ``count`` pre-filled jobs, from the go to the last job's end."""
        url = self.fresh(target)
        targets.prefill(target, url, kind, count)
        shared = self._shared(count)
        procs = self._start(target, url, processes, threads, shared)
        try:
            began = time.monotonic()
            shared.go.set()
            if not shared.finished.wait(RUN_TIMEOUT):
                raise TimeoutError(f"{shared.done.value} of {count} jobs in {RUN_TIMEOUT:g} s")
            return count / (float(shared.end.value) - began)
        finally:
            self._stop(procs)

    def enqueue(self, target: str) -> float:
        """Jobs/s enqueued one at a time, by one producer, with no worker running."""
        url = self.fresh(target)
        count = self.sizes.enqueue_jobs
        return count / targets.produce(target, url, "noop", count)

    def latency(self, target: str) -> dict[str, float]:
        """Enqueue-to-start delays, in seconds, at a steady rate, one idle worker process."""
        url = self.fresh(target)
        count = self.sizes.latency_jobs
        shared = self._shared(count + 1, delays=count)
        procs = self._start(target, url, 1, targets.THREADS, shared)
        try:
            shared.go.set()
            targets.produce(target, url, "noop", 1)  # warm-up: the worker is listening
            if not shared.first.wait(RUN_TIMEOUT):
                raise TimeoutError("the warm-up job did not run")
            targets.produce(target, url, "latency", count, self.sizes.latency_rate)
            if not shared.finished.wait(RUN_TIMEOUT):
                raise TimeoutError(f"{shared.done.value - 1} of {count} jobs ran")
            delays = sorted(shared.delays[:count])
        finally:
            self._stop(procs)
        return {
            "p50": statistics.median(delays),
            "p99": delays[min(count - 1, round(0.99 * (count - 1)))],
            "max": delays[-1],
        }


def _calibrate(seconds: float) -> int:
    """Loop iterations of the CPU-bound handler that take about ``seconds`` here.

    The fastest of five tries: on a busy machine the others measure the load.
    """
    loops = 200_000
    fastest = float("inf")
    for _ in range(5):
        began = time.perf_counter()
        total = 0
        for i in range(loops):
            total += i * i
        fastest = min(fastest, time.perf_counter() - began)
    return max(1, round(loops * seconds / fastest))


def _measure(what: str, target: str, step: Callable[[], object]) -> dict[str, Any]:
    row: dict[str, Any] = {"section": what, "target": target, "load_before": _load()}
    try:
        row["value"] = step()
        row["status"] = "ok"
    except Exception as exc:  # a row says why it has no figure; the others still run
        row["status"] = "error"
        row["reason"] = f"{type(exc).__name__}: {exc}"
    row["load_after"] = _load()
    return row


def measure_all(
    bench: Bench, skipped: dict[str, str], repeat: int, progress: Any
) -> list[dict[str, Any]]:
    """Every figure ``repeat`` times, the targets' order reversed on every other
    repetition (none is always first, on a cold server), then the medians."""
    sizes = bench.sizes
    runs: list[dict[str, Any]] = []
    skipped_rows = [
        {"section": "all", "target": target, "status": "skipped", "reason": why}
        for target, why in skipped.items()
    ]

    def add(row: dict[str, Any], **extra: Any) -> None:
        row.update(extra)
        runs.append(row)
        progress(row)

    for rep in range(repeat):
        live = [t for t in TARGETS if t not in skipped]
        if rep % 2:
            live.reverse()
        for processes in sizes.drain_processes:
            for target in live:
                step = partial(bench.drain, target, "noop", sizes.drain_jobs, processes, THREADS)
                add(_measure("drain", target, step), processes=processes, jobs=sizes.drain_jobs)
        for target in live:
            step = partial(bench.enqueue, target)
            add(_measure("enqueue", target, step), jobs=sizes.enqueue_jobs)
        for target in live:
            timed = partial(bench.latency, target)
            add(
                _measure("latency", target, timed), rate=sizes.latency_rate, jobs=sizes.latency_jobs
            )
        for processes, threads in ((1, 1), (1, 2), (2, 1)) if OURS in live else ():
            step = partial(bench.drain, OURS, "cpu", sizes.cpu_jobs, processes, threads)
            extra = {"processes": processes, "threads": threads, "jobs": sizes.cpu_jobs}
            add(_measure("cpu", OURS, step), **extra)
    return skipped_rows + medians(runs)


def _key(row: dict[str, Any]) -> tuple[object, ...]:
    return row["section"], row["target"], row.get("processes"), row.get("threads")


def medians(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per figure: the median of its runs, with every run and load kept.

    A figure with a failed run reports the failure: a median that hides one
    would be a figure of a different experiment.
    """
    grouped: dict[tuple[object, ...], list[dict[str, Any]]] = {}
    for row in runs:
        grouped.setdefault(_key(row), []).append(row)
    rows = []
    for group in grouped.values():
        failed = [r for r in group if r["status"] != "ok"]
        row = dict(failed[0] if failed else group[0])
        row["loads"] = [r["load_after"] for r in group]
        row["load_after"] = max(row["loads"])
        if not failed:
            values = [r["value"] for r in group]
            row["runs"] = values
            if isinstance(values[0], dict):
                row["value"] = {k: statistics.median(v[k] for v in values) for k in values[0]}
            else:
                row["value"] = statistics.median(values)
        rows.append(row)
    return rows


# -- the command -------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    """``jobqueue bench --postgres``: check, measure, render."""
    if args.only:
        raise SystemExit("jobqueue bench: --only does not apply with --postgres")
    skipped = check()
    sizes = QUICK if args.quick else FULL  # --json's directory: checked by its argparse type
    console = Console()
    console.print(
        f"[bold]jobqueue bench --postgres[/] on {os.cpu_count()} CPUs, "
        f"load average {_load():.2f}, server defaults (synchronous_commit=on)"
    )

    def progress(row: dict[str, Any]) -> None:
        what = f"{row['section']} {row['target']}"
        if "processes" in row:
            what += f", {row['processes']} processes"
        if "threads" in row and row["section"] == "cpu":
            what += f" x {row['threads']} threads"
        shown = row.get("reason") or _show(row)
        print(f"  {what}: {shown} (load {row['load_after']:.2f})", file=sys.stderr, flush=True)

    began = time.monotonic()
    with PgCluster() as cluster:
        version = _server_version(cluster.url)
        bench = Bench(cluster, sizes)
        rows = measure_all(bench, skipped, args.repeat, progress)
    seconds = time.monotonic() - began
    from jobqueue.lab import bench_pg_render

    for table in bench_pg_render.tables(rows):
        console.print(table)
    console.print(f"PostgreSQL {version}; {seconds:.0f} s.")
    if args.json is not None:
        report = {
            "command": shlex.join(["jobqueue", *sys.argv[1:]]),
            "cpus": os.cpu_count(),
            "postgres": version,
            "settings": {"synchronous_commit": "on"},
            "sizes": asdict(sizes),
            "repeat": args.repeat,
            "seconds": seconds,
            "rows": rows,
            "ratios": bench_pg_render.ratios(rows),
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        console.print(f"figures written to {args.json}")
    return 1 if any(row["status"] == "error" for row in rows) else 0


def _show(row: dict[str, Any]) -> str:
    value = row.get("value")
    if isinstance(value, dict):
        return ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in value.items())
    return f"{value:,.0f} jobs/s" if value is not None else row["status"]


def _server_version(url: str) -> str:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        assert row is not None
        return str(row[0])
